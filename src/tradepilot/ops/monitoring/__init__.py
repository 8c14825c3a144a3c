"""Monitoring (issue 11 §1): status, metrics summary, logs, errors, uptime, alert rules, restart."""
