"""User alerts: price, P&L and risk rules, the tick-driven alert engine, trigger history
(docs/alerts.md). A trigger becomes a notification through the outbox."""
