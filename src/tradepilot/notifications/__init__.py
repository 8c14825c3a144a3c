"""The notification centre: notifications made from outbox events, settings, quiet hours and
digests, and the channels that deliver them (docs/notifications.md)."""
