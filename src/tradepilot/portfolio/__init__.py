"""Portfolio valuation, allocation, rebalancing, optimisation, and performance & risk metrics."""
