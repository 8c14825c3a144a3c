"""Live runs of strategy configurations (issue 8, §5): docs/strategies.md, "Live runs"."""
