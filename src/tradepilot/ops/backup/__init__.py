"""Backup and recovery (the plan's BackupService): encrypted full-database backups with a
verifiable manifest, configuration backup, per-user export, verification, restore under
maintenance mode, scheduled backups with retention. See docs/operations.md."""
