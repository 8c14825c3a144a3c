"""Configuration management (issue 11 §3): typed sections over Settings, safe runtime updates."""
