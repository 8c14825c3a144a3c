"""Live trading on real exchanges through ccxt (docs/exchanges.md).

``credentials`` (the API key and secret, encrypted at rest), ``exchange`` (``LiveExchange``:
the one place that talks to ccxt for an account), ``errors`` (ccxt's failures as platform
errors, with "outcome unknown" apart from "rejected"), ``answers`` (the exchange's answers
checked before anything is written), ``accounts`` (binding an account to an exchange) and
``placement`` (an order's way to the exchange, never lost, never sent twice).
"""
