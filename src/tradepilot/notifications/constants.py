"""Names shared by the notification centre: categories, channels, event types and topics.

Topics and types are constants so that a typo is a NameError, never a silently unheard event.
"""

from __future__ import annotations

# What a notification is about; the settings choose channels per category.
FILLS = "fills"
ORDERS = "orders"
ALERTS = "alerts"
STRATEGIES = "strategies"
SECURITY = "security"
REPORTS = "reports"
DAILY_REPORT = "daily_report"  # the scheduled performance reports (reports.py)
WEEKLY_REPORT = "weekly_report"
CONFIGURABLE = (FILLS, ORDERS, ALERTS, STRATEGIES, SECURITY, REPORTS, DAILY_REPORT, WEEKLY_REPORT)

# Categories without settings: always in the notification centre only.
NOTES = "notes"  # a user's own note
ANNOUNCEMENTS = "announcements"  # an administrator's broadcast
DIGEST = "digest"  # what quiet hours held, merged into one
CATEGORIES = (*CONFIGURABLE, NOTES, ANNOUNCEMENTS, DIGEST)

# Channels. ``in_app`` is the centre itself plus the WebSocket push; the others deliver as jobs.
IN_APP = "in_app"
EMAIL = "email"
TELEGRAM = "telegram"
DISCORD = "discord"
SLACK = "slack"
WEBPUSH = "webpush"
TARGETED = (TELEGRAM, DISCORD, SLACK, WEBPUSH)  # need a destination the user set (notification_target)
CHANNELS = (IN_APP, EMAIL, *TARGETED)

DEFAULT_CHANNELS: dict[str, tuple[str, ...]] = {
    FILLS: (IN_APP,),
    ORDERS: (IN_APP,),
    ALERTS: (IN_APP, EMAIL),
    STRATEGIES: (IN_APP,),
    SECURITY: (IN_APP,),  # identity already mails security alerts itself
    REPORTS: (EMAIL,),
    DAILY_REPORT: (),  # opt in: a mail every day is too much by default
    WEEKLY_REPORT: (EMAIL,),
}

# Categories quiet hours never hold: a security event must reach the user at once.
NEVER_HELD = frozenset({SECURITY})

# The user topic kind and event type of a new notification (the WebSocket ``account`` channel).
TOPIC_KIND = "notifications"
NOTIFICATION_CREATED = "notification.created"

CONSUMER_NAME = "notifications"  # consume_once receipts and the scan cursor
LEASE_NAME = "notifications-consumer"

DELIVER_KIND = "notifications.deliver"  # the delivery job of the targeted channels
TELEGRAM_UPDATES = "telegram-updates"  # consume_once receipts of Telegram update ids; the polling lease
