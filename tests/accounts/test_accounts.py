"""People through the HTTP API on SQLite and PostgreSQL: sign-up, sessions with CSRF, lockout, members and
roles, invitations, key management and rotation, the audit log."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from solvent.billing import ensure_plans
from solvent.config import Settings
from solvent.root import assemble, build_app
from solvent.storage import LocalImageStore
from tests.harness import make_services

PW = "correct horse battery"


def make_client(db, tmp_path, secure=False):
    services = make_services(db, tmp_path, cookie_secure=secure, trusted_proxies=["testclient"])
    return TestClient(build_app(services))


@pytest.fixture
def client(db, tmp_path):
    return make_client(db, tmp_path)


def signup(client, email="ann@example.com", pw=PW):
    """Sign up (an answer that says nothing about the address), then log in as the studio does."""
    r = client.post("/api/auth/signup", json={"email": email, "password": pw, "name": "Ann"})
    assert r.status_code == 202, r.text
    r = client.post("/api/auth/login", json={"email": email, "password": pw})
    assert r.status_code == 200, r.text
    return r.json()


def test_signup_session_cookie_and_csrf(client):
    out = signup(client)
    assert client.cookies.get("solvent_session") and client.cookies.get("solvent_csrf") == out["csrf_token"]
    me = client.get("/api/me").json()
    assert me["user"]["email"] == "ann@example.com" and me["role"] == "owner" and me["org"]["plan"] == "community"
    r = client.post("/api/keys", json={"name": "ci"})  # a write with the cookie but no CSRF token
    assert r.status_code == 403 and r.json()["error"]["field"] == "x-csrf-token"
    r = client.post("/api/keys", json={"name": "ci"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    r = client.post("/api/keys", json={"name": "ci"}, headers={"X-CSRF-Token": out["csrf_token"]})
    assert r.status_code == 201 and r.json()["secret"].startswith("sk-solvent-")
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": out["csrf_token"]}).status_code == 200
    client.cookies.clear()
    assert client.get("/api/me").status_code == 401


def test_cookies_are_httponly_and_secure_by_default(db, tmp_path):
    c = make_client(db, tmp_path, secure=True)
    c.post("/api/auth/signup", json={"email": "sec@example.com", "password": PW})
    r = c.post("/api/auth/login", json={"email": "sec@example.com", "password": PW})
    cookies = r.headers.get_list("set-cookie")
    session = next(x for x in cookies if x.startswith("solvent_session="))
    assert "HttpOnly" in session and "Secure" in session and "SameSite=lax" in session
    assert "HttpOnly" not in next(x for x in cookies if x.startswith("solvent_csrf="))


def test_duplicate_and_bad_signups(client):
    first = client.post("/api/auth/signup", json={"email": "ann@example.com", "password": PW})
    r = client.post("/api/auth/signup", json={"email": "ANN@example.com", "password": "another password"})
    assert r.status_code == first.status_code == 202 and r.json() == first.json()  # the address's account is not told
    assert client.post("/api/auth/login", json={"email": "ann@example.com", "password": "another password"}
                       ).status_code == 401  # and the second sign-up changed nothing
    r = client.post("/api/auth/signup", json={"email": "not-an-email", "password": PW})
    assert r.status_code == 422 and r.json()["error"]["field"] == "email"
    r = client.post("/api/auth/signup", json={"email": "b@example.com", "password": "short"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "password"


def test_wrong_passwords_back_off_without_locking_out_the_owner(client, monkeypatch):
    from solvent.accounts import throttle

    signup(client)
    client.cookies.clear()
    attacker = {"X-Forwarded-For": "203.0.113.9"}  # the test client's peer is trusted, like a proxy
    for _ in range(throttle.PAIR_RULE.free):
        r = client.post("/api/auth/login", json={"email": "ann@example.com", "password": "wrong password!"},
                        headers=attacker)
        assert r.status_code == 401 and r.json()["error"]["message"] == "wrong email or password."
    r = client.post("/api/auth/login", json={"email": "ann@example.com", "password": "wrong password!"}, headers=attacker)
    assert r.status_code == 401  # the failure that starts the back-off
    r = client.post("/api/auth/login", json={"email": "ann@example.com", "password": PW}, headers=attacker)
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_attempts" and int(r.headers["Retry-After"]) > 0
    # The owner, from their own address, still gets in: the stranger's failures slowed only the stranger.
    assert client.post("/api/auth/login", json={"email": "ann@example.com", "password": PW}).status_code == 200
    # An unknown email costs the same argon2 verification as a known one (no timing oracle).
    calls = []
    real = throttle._hasher

    class Spy:
        def verify(self, h, p):
            calls.append(h)
            return real.verify(h, p)

    monkeypatch.setattr(throttle, "_hasher", Spy())
    r = client.post("/api/auth/login", json={"email": "nobody@example.com", "password": PW})
    assert r.status_code == 401 and r.json()["error"]["message"] == "wrong email or password." and len(calls) == 1


def test_invitations_roles_and_members(db, tmp_path):
    owner, bob = make_client(db, tmp_path), make_client(db, tmp_path)
    csrf = signup(owner)["csrf_token"]
    h = {"X-CSRF-Token": csrf}
    r = owner.post("/api/org/invitations", json={"email": "bob@example.com", "role": "member"}, headers=h)
    assert r.status_code == 201
    token = r.json()["token"]
    r = bob.post("/api/invitations/accept", json={"token": token, "email": "eve@example.com", "password": PW})
    assert r.status_code == 403 and r.json()["error"]["field"] == "email"  # someone else's invitation
    r = bob.post("/api/invitations/accept", json={"token": token, "email": "bob@example.com", "password": PW})
    assert r.status_code == 200, r.text
    bh = {"X-CSRF-Token": r.json()["csrf_token"]}
    assert bob.get("/api/me").json()["role"] == "member"
    assert bob.post("/api/invitations/accept", json={"token": token, "email": "bob@example.com",
                                                     "password": PW}).status_code == 409
    assert bob.post("/api/org/invitations", json={"email": "c@example.com"}, headers=bh).status_code == 403
    assert bob.get("/api/keys").status_code == 403
    members = owner.get("/api/org/members").json()["members"]
    bob_id = next(m["user_id"] for m in members if m["email"] == "bob@example.com")
    owner_id = next(m["user_id"] for m in members if m["role"] == "owner")
    assert owner.put(f"/api/org/members/{bob_id}", json={"role": "admin"}, headers=h).status_code == 200
    assert bob.get("/api/keys").status_code == 200
    r = bob.put(f"/api/org/members/{owner_id}", json={"role": "member"}, headers=bh)
    assert r.status_code == 403  # an admin cannot demote an owner
    r = owner.put(f"/api/org/members/{owner_id}", json={"role": "member"}, headers=h)
    assert r.status_code == 409  # the last owner stays
    assert owner.delete(f"/api/org/members/{bob_id}", headers=h).status_code == 200
    assert bob.get("/api/me").status_code == 401  # removed: the session no longer opens the organisation
    actions = [e["action"] for e in owner.get("/api/audit").json()["events"]]
    for a in ("user.created", "login", "invitation.created", "invitation.accepted", "member.role",
              "member.removed"):
        assert a in actions, (a, actions)


def test_keys_rotate_revoke_expire_and_caps(client):
    h = {"X-CSRF-Token": signup(client)["csrf_token"]}
    r = client.post("/api/keys", headers=h, json={"name": "bot", "scopes": ["generate"], "max_steps": 10, "rpm": 5})
    key = r.json()
    assert key["max_steps"] == 10 and key["rpm"] == 5
    r = client.post("/api/keys", headers=h, json={"scopes": ["operator"]})
    assert r.status_code == 403  # an organisation cannot mint platform-operator keys
    r = client.post("/api/keys", headers=h, json={"rpm": -1})
    assert r.status_code == 422 and r.json()["error"]["field"] == "rpm"
    r = client.post(f"/api/keys/{key['id']}/rotate", headers=h)
    assert r.status_code == 201 and r.json()["rotated_from"] == key["id"] and r.json()["max_steps"] == 10
    new_secret = r.json()["secret"]
    api = TestClient(client.app)
    assert api.get("/api/me", headers={"Authorization": f"Bearer {key['secret']}"}).status_code == 401
    assert api.get("/api/me", headers={"Authorization": f"Bearer {new_secret}"}).status_code == 200
    listed = client.get("/api/keys").json()["keys"]
    assert all("secret" not in k for k in listed) and len(listed) == 2
    client.post(f"/api/keys/{r.json()['id']}/revoke", headers=h)
    assert api.get("/api/me", headers={"Authorization": f"Bearer {new_secret}"}).status_code == 401
    actions = [e["action"] for e in client.get("/api/audit").json()["events"]]
    assert {"key.created", "key.rotated", "key.revoked"} <= set(actions)


def test_password_change_signs_out_other_sessions_and_signup_can_be_closed(db, tmp_path):
    a = make_client(db, tmp_path)
    out = signup(a)
    b = make_client(db, tmp_path)  # a second browser, signed in as the same person
    assert b.post("/api/auth/login", json={"email": "ann@example.com", "password": PW}).status_code == 200
    csrf = {"X-CSRF-Token": out["csrf_token"]}
    r = a.post("/api/auth/password", json={"current_password": "wrong one!", "new_password": "a new passphrase"},
               headers=csrf)
    assert r.status_code == 401 and r.json()["error"]["field"] == "current_password"
    r = a.post("/api/auth/password", json={"current_password": PW, "new_password": "short"}, headers=csrf)
    assert r.status_code == 422 and r.json()["error"]["field"] == "password"
    r = a.post("/api/auth/password", json={"current_password": PW, "new_password": "a new passphrase"}, headers=csrf)
    assert r.status_code == 200
    assert a.get("/api/me").status_code == 200  # this session stays
    assert b.get("/api/me").status_code == 401  # the other one is signed out
    assert b.post("/api/auth/login", json={"email": "ann@example.com", "password": PW}).status_code == 401
    assert b.post("/api/auth/login", json={"email": "ann@example.com", "password": "a new passphrase"}
                  ).status_code == 200
    ensure_plans(db)
    closed = TestClient(build_app(assemble(Settings(home=tmp_path / "h2", cookie_secure=False, allow_signup=False),
                                            db, images=LocalImageStore(tmp_path / "i2"))))
    assert closed.get("/api/auth/options").json()["signup"] is False
    r = closed.post("/api/auth/signup", json={"email": "bob@example.com", "password": PW})
    assert r.status_code == 403 and r.json()["error"]["field"] == "signup"
