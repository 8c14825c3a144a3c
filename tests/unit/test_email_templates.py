"""Email templates: every one renders in text and HTML, HTML is escaped, input is checked."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from tradepilot.email.service import TEMPLATES, TEMPLATES_DIR, EmailRenderer, normalise_recipients

CONTEXTS = {
    "welcome": {"name": "Ada", "dashboard_url": "https://tp.example/app"},
    "verify_email": {"name": "Ada", "verify_url": "https://tp.example/verify?t=abc", "expires_hours": 48},
    "password_reset": {"reset_url": "https://tp.example/reset?t=abc", "expires_minutes": 30},
    "security_alert": {"event": "New sign-in", "occurred_at": "2026-01-01T00:00:00Z", "ip": "203.0.113.7",
                       "user_agent": "Firefox"},
    "two_factor_code": {"name": "Ada", "code": "482915", "expires_minutes": 10, "ip": "203.0.113.7"},
    "account_deletion": {"name": "Ada", "state": "scheduled", "occurred_at": "2026-01-01T00:00:00Z",
                         "ip": "203.0.113.7", "scheduled_for": "2026-01-31T00:00:00Z"},
    "trade_notification": {"name": "Ada", "title": "Bought 0.1 BTC/USDT at 60000", "category": "fills",
                           "body": "Bought 0.1 BTC/USDT at 60000 (fee 6 USDT, taker).",
                           "notification_id": "5d2c8f0e", "occurred_at": "2026-01-01T00:00:00Z"},
    "alert_triggered": {"name": "Ada", "title": "Alert: BTC/USDT above 70000", "category": "alerts",
                        "body": "Your alert fired: the value is now 70001.", "notification_id": "9a1b",
                        "occurred_at": "2026-01-01T00:00:00Z"},
    "notification": {"name": "Ada", "title": "While quiet hours were on: 2 notifications", "category": "digest",
                     "body": "- 2026-01-01 23:00 UTC [fills] Bought", "notification_id": "77aa",
                     "occurred_at": "2026-01-02T07:00:00Z"},
    "performance_report": {"name": "Ada", "title": "Weekly performance report: 2026-11-16 – 2026-11-22",
                           "category": "weekly_report", "notification_id": "4c4d",
                           "data": {"currency": "USDT", "equity_start": "10000", "equity_end": "10250.5",
                                    "pnl": "150.5", "net_flows": "100", "return_percent": "1.5",
                                    "max_drawdown_percent": "0.8", "realised_pnl": "120", "trades": 7,
                                    "fees": "3.25", "report_path": "/api/analytics/report?period=7d"}},
}
SWITCHES = {"state", "category", "data"}  # choose the wording (data: checked below), not printed as such


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders(template: str) -> None:
    rendered = EmailRenderer(globals_={"public_url": "https://tp.example"}).render(template, CONTEXTS[template])
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.text.startswith("TradePilot\n==========")  # the shared text layout
    assert "https://tp.example" in rendered.text and "<" not in rendered.text.split("\n")[0]
    assert rendered.html.startswith("<!DOCTYPE html>") and "</html>" in rendered.html
    for key, value in CONTEXTS[template].items():
        if key in SWITCHES:
            continue
        assert str(value) in rendered.text and str(value) in rendered.html


def test_a_missing_or_empty_name_is_greeted_generically() -> None:
    renderer = EmailRenderer()
    for context in ({}, {"name": None}, {"name": ""}):
        rendered = renderer.render("welcome", context)
        assert "Hello there," in rendered.text and "Hello there," in rendered.html and "None" not in rendered.text


def test_html_is_escaped_and_text_is_not() -> None:
    rendered = EmailRenderer().render("security_alert", {"event": "<script>x</script> & more", "occurred_at": "now"})
    assert "&lt;script&gt;x&lt;/script&gt; &amp; more" in rendered.html and "<script>" not in rendered.html
    assert "<script>x</script> & more" in rendered.text
    assert rendered.subject == "Security alert: <script>x</script> & more"


def test_a_missing_variable_is_an_error_not_a_blank() -> None:
    with pytest.raises(UndefinedError):
        EmailRenderer().render("password_reset", {})


def test_template_names_cannot_escape_the_folder() -> None:
    with pytest.raises(ValueError):
        EmailRenderer().render("../secrets", {})


def test_recipients_are_plain_addresses() -> None:
    assert normalise_recipients(" ada@example.com ") == ["ada@example.com"]
    assert normalise_recipients(["a@example.com", "b@example.com"]) == ["a@example.com", "b@example.com"]
    for bad in ("no-at-sign", "a@example.com\nBcc: x@example.com", "A <a@example.com>", "a@example.com, b@x.io"):
        with pytest.raises(ValueError):
            normalise_recipients(bad)
    with pytest.raises(ValueError):
        normalise_recipients([])


def test_every_template_in_the_folder_has_its_three_parts() -> None:
    names = {p.name.split(".")[0] for p in TEMPLATES_DIR.iterdir() if not p.name.startswith("base.")}
    assert set(TEMPLATES) <= names
    for name in names:
        for suffix in (".subject.txt", ".txt", ".html"):
            assert (TEMPLATES_DIR / f"{name}{suffix}").is_file(), f"{name}{suffix} is missing"


def test_the_performance_report_shows_every_figure_and_skips_missing_ratios() -> None:
    context = CONTEXTS["performance_report"]
    renderer = EmailRenderer(globals_={"public_url": "https://tp.example"})
    rendered = renderer.render("performance_report", context)
    for key, value in context["data"].items():  # type: ignore[union-attr]
        assert str(value) in rendered.text and str(value) in rendered.html, key
    assert "https://tp.example/api/analytics/report?period=7d" in rendered.text
    bare = renderer.render("performance_report", {**context, "data": {
        **context["data"], "return_percent": None, "max_drawdown_percent": None}})  # type: ignore[dict-item]
    assert "Return" not in bare.text and "drawdown" not in bare.text and "None" not in bare.html
