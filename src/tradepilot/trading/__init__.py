"""Trading: accounts, balances and the double-entry ledger; orders, fills and the paper exchange."""
