"""Settings (typed, merge on PUT), the account IP allow-list, and limits."""

from __future__ import annotations

from tests.helpers import bearer, new_user


async def test_settings_defaults_update_and_unknown_keys(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    first = await client.get("/api/users/me/settings", headers=bearer(tokens))
    assert first.status_code == 200 and first.json()["theme"] == "system" and first.json()["limits"] == {}
    put = await client.put("/api/users/me/settings", json={"theme": "dark", "limits": {"open_orders": 5}},
                           headers=bearer(tokens))
    assert put.status_code == 200 and put.json()["theme"] == "dark" and put.json()["locale"] == "en"
    unknown = await client.put("/api/users/me/settings", json={"colour": "red"}, headers=bearer(tokens))
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "colour"
    bad_limit = await client.put("/api/users/me/settings", json={"limits": {"bananas": 1}}, headers=bearer(tokens))
    assert bad_limit.status_code == 422
    after = (await client.get("/api/users/me/settings", headers=bearer(tokens))).json()
    assert after["theme"] == "dark" and after["limits"] == {"open_orders": 5}


async def test_own_limits_only_tighten_the_plan(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    above = await client.put("/api/users/me/settings", json={"limits": {"api_keys": 1000}}, headers=bearer(tokens))
    assert above.status_code == 422 and above.json()["code"] == "limit_above_plan"
    ok = await client.put("/api/users/me/settings", json={"limits": {"api_keys": 1}}, headers=bearer(tokens))
    assert ok.status_code == 200
    limits = (await client.get("/api/users/me/limits", headers=bearer(tokens))).json()
    assert limits["plan"] == "free" and limits["limits"]["api_keys"] == 1 and limits["plan_limits"]["api_keys"] == 3
    assert limits["usage"]["api_keys"] == 0 and limits["resets_at"].endswith("T00:00:00Z")
    await client.post("/api/users/me/api-keys", json={"name": "a", "scopes": ["read"]}, headers=bearer(tokens))
    second = await client.post("/api/users/me/api-keys", json={"name": "b", "scopes": ["read"]}, headers=bearer(tokens))
    assert second.status_code == 409  # the user's own, tighter limit applies
    assert (await client.get("/api/users/me/limits", headers=bearer(tokens))).json()["usage"]["api_keys"] == 1


async def test_account_allow_list_is_enforced_and_cannot_lock_you_out(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    lockout = await client.put("/api/users/me/settings", json={"ip_allowlist": ["198.51.100.0/24"]},
                               headers=bearer(tokens))
    assert lockout.status_code == 422 and lockout.json()["code"] == "allowlist_excludes_current_ip"
    ok = await client.put("/api/users/me/settings", json={"ip_allowlist": ["203.0.113.7/32"]}, headers=bearer(tokens))
    assert ok.status_code == 200 and ok.json()["ip_allowlist"] == ["203.0.113.7/32"]
    assert (await client.get("/api/users/me", headers=bearer(tokens))).status_code == 200


async def test_allow_list_refuses_other_ips(app, client) -> None:  # type: ignore[no-untyped-def]
    import httpx

    _, tokens = await new_user(client)
    await client.put("/api/users/me/settings", json={"ip_allowlist": ["203.0.113.7/32"]}, headers=bearer(tokens))
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 4000)),
                              base_url="http://testserver")
    async with other:
        resp = await other.get("/api/users/me", headers=bearer(tokens))
        assert resp.status_code == 403 and resp.json()["code"] == "ip_not_allowed"
        # a spoofed X-Forwarded-For from an untrusted peer changes nothing
        spoofed = await other.get("/api/users/me", headers={**bearer(tokens), "X-Forwarded-For": "203.0.113.7"})
        assert spoofed.status_code == 403
