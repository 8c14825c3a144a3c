"""TradePilot: a self-hosted, multi-user trading-bot platform."""

__version__ = "0.1.0"
