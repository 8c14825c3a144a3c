"""The AI engine (docs/ai.md): market-structure models built on numpy, SciPy, scikit-learn and TA-Lib.

Every model here is either fitted to data (the regime classifier, whose coefficients ship as
JSON next to the code and are reproduced by its training function) or a measured detector
(chart patterns by peak detection, candlestick patterns from TA-Lib), with its error rates
measured in the tests rather than asserted.
"""
