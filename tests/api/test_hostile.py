"""A hostile client against a live server (real HTTP, a real worker), on SQLite and PostgreSQL.

Each test names the attack and the refusal it must meet, class by class as issue #20 lists them:
privilege escalation, guessing credentials, resource exhaustion, quadratic input, work left behind by
refused requests, names that are paths, 500s from malformed input, and the smaller holes.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
import zlib

import httpx
import pytest
from PIL import Image

from solvent.accounts import create_key, create_user, throttle
from solvent.api.app import housekeeping
from solvent.billing import set_plan
from solvent.billing.payments import sign
from solvent.config import Settings
from solvent.jobs.registry import create_worker
from solvent.root import build_app
from solvent.storage import Database
from solvent.storage.models import ApiKey, Job, Organisation, User
from solvent.workers import WorkerLoop, declaration
from solvent.workers.local import LocalBackend
from tests.conftest import _pg_database
from tests.harness import ThreadServer, make_services

PW = "correct horse battery"
STRIPE = "whsec_hostile"


class Live:
    """A server on a free port with one in-process worker; settings tightened so tests can reach the limits."""

    def __init__(self, tmp, url: str):
        from solvent.root import build_engine

        db = Database(url)
        db.create_all()
        self.services = make_services(
            db, tmp, cookie_secure=False, trusted_proxies=["127.0.0.1"], max_waits_per_org=2,
            protect_docs=True, metrics_token="metrics-secret", stripe_webhook_secret=STRIPE,
            max_request_bytes=4 * 1024 * 1024, max_input_pixels=1024 * 1024, signups_per_hour=3,
            housekeeping_seconds=1, lease_seconds=3)
        self.settings = self.services.settings
        set_plan(db, "payg", concurrent_jobs=8, rpm=1000, max_steps=150)
        self.app = build_app(self.services)
        self.http = ThreadServer(self.app)
        self.base = self.http.base
        engine = build_engine(Settings(home=tmp / "engine"))
        w, _ = create_worker(db, name="w")
        self.worker_id = w.id
        self.loop = WorkerLoop(engine, LocalBackend(self.services, w.id), declaration(engine), poll=0.05)
        self.worker = threading.Thread(target=self.loop.run, daemon=True)
        self.worker.start()
        # The operator: an operator user owning the operator organisation, with an operator key.
        _, self.op_org = create_user(db, "op@example.com", PW, "Op", org_name="operator", plan_id="enterprise",
                                     operator=True)
        self.op_key = create_key(db, self.op_org, "op", ("generate", "read", "admin", "operator"))[1]
        self.n = 0

    def client(self, ip: str | None = None) -> httpx.Client:
        headers = {"X-Forwarded-For": ip} if ip else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def session(self, email: str, ip: str | None = None) -> tuple[httpx.Client, dict]:
        c = self.client(ip)
        r = c.post("/api/auth/login", json={"email": email, "password": PW})
        assert r.status_code == 200, r.text
        return c, {"X-CSRF-Token": r.json()["csrf_token"]}

    def paying_org(self, credits: int = 1000) -> tuple[str, str]:
        self.n += 1
        _, org = create_user(self.services.db, f"payer{self.n}@example.com", PW, org_name=f"payer{self.n}",
                             plan_id="payg")
        if credits:
            self.services.billing.ledger.purchase(org, credits * 1000, f"setup:{org}")
        return org, create_key(self.services.db, org, "k", ("generate", "read", "admin"))[1]

    def close(self):
        self.loop.stop()
        self.worker.join(timeout=30)
        self.http.stop()
        self.services.db.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp / 'solvent.db'}", None
    else:
        url, drop = _pg_database()
    server = Live(tmp, url)
    yield server
    server.close()
    if drop:
        drop()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def png(w=64, h=64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (30, 60, 200)).save(buf, "PNG")
    return buf.getvalue()


def bomb(w=20000, h=20000) -> bytes:
    """A tiny PNG whose header claims w×h pixels (all zeros, compressed to a few hundred bytes)."""
    raw = zlib.compress(b"\x00" * (1 + w) * 64, 9)  # only the first rows: the header is what matters

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def wait_final(live, key, job_id, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{live.base}/api/jobs/{job_id}", headers=bearer(key), timeout=30).json()
        if job["state"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def blobs(live) -> set[str]:
    root = live.settings.home.parent / "images"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# ----------------------------------------------------------------------------------------------
# 1. No privilege escalation
# ----------------------------------------------------------------------------------------------


def test_admin_of_the_operator_org_cannot_rotate_or_revoke_the_operator_key(live):
    db = live.services.db
    owner, h = live.session("op@example.com")
    inv = owner.post("/api/org/invitations", json={"email": "bob@example.com", "role": "admin"}, headers=h).json()
    bob = live.client()
    r = bob.post("/api/invitations/accept", json={"token": inv["token"], "email": "bob@example.com", "password": PW})
    assert r.status_code == 200, r.text
    bh = {"X-CSRF-Token": r.json()["csrf_token"]}
    op_key_id = next(k["id"] for k in bob.get("/api/keys").json()["keys"] if "operator" in k["scopes"])
    # attack: rotate the operator key to receive a fresh operator secret → refused
    r = bob.post(f"/api/keys/{op_key_id}/rotate", headers=bh)
    assert r.status_code == 403 and "operator" in r.json()["error"]["message"]
    assert bob.post(f"/api/keys/{op_key_id}/revoke", headers=bh).status_code == 403
    assert bob.post("/api/keys", json={"scopes": ["operator"]}, headers=bh).status_code == 403
    assert bob.get("/api/admin/queue").status_code == 403  # an admin member is not an operator
    # attack: Bob mints an admin key and uses it to make himself (or anyone) owner → refused
    key = bob.post("/api/keys", json={"name": "bob", "scopes": ["admin"]}, headers=bh).json()
    bob_id = bob.get("/api/me").json()["user"]["id"]
    r = httpx.put(f"{live.base}/api/org/members/{bob_id}", json={"role": "owner"}, headers=bearer(key["secret"]))
    assert r.status_code == 403  # the key acts as Bob (admin), not as an owner
    with db.session() as s:
        assert s.get(ApiKey, key["id"]).created_by == bob_id
    # Lowering Bob to member narrows his key at once; removing him revokes it at once.
    assert owner.put(f"/api/org/members/{bob_id}", json={"role": "member"}, headers=h).status_code == 200
    assert httpx.get(f"{live.base}/api/keys", headers=bearer(key["secret"])).status_code == 403
    assert httpx.get(f"{live.base}/api/images", headers=bearer(key["secret"])).status_code == 200
    assert owner.delete(f"/api/org/members/{bob_id}", headers=h).status_code == 200
    assert httpx.get(f"{live.base}/api/me", headers=bearer(key["secret"])).status_code == 401


def test_operator_power_stays_in_the_operator_org(live):
    # The operator user is invited into a customer organisation as its admin.
    org, key = live.paying_org()
    inv = httpx.post(f"{live.base}/api/org/invitations", json={"email": "op@example.com", "role": "admin"},
                     headers=bearer(key)).json()
    c = live.client()
    r = c.post("/api/invitations/accept", json={"token": inv["token"], "email": "op@example.com", "password": PW})
    assert r.status_code == 200, r.text
    me = c.get("/api/me").json()
    assert me["org"]["id"] == org and "operator" not in me["scopes"] and me["user"]["operator"] is False
    assert c.get("/api/admin/queue").status_code == 403  # a session in another org carries no operator power
    c.post("/api/auth/logout", headers={"X-CSRF-Token": r.json()["csrf_token"]})
    r = c.post("/api/auth/login", json={"email": "op@example.com", "password": PW, "org": live.op_org})
    assert c.get("/api/admin/queue").status_code == 200  # in the operator org it applies


def test_an_org_key_cannot_be_rotated_into_more_than_the_caller_has(live):
    org, key = live.paying_org()
    gen = create_key(live.services.db, org, "gen", ("generate",))[1]
    admin_keys = httpx.get(f"{live.base}/api/keys", headers=bearer(key)).json()["keys"]
    r = httpx.post(f"{live.base}/api/keys/{admin_keys[0]['id']}/rotate", headers=bearer(gen))
    assert r.status_code == 403  # a generate-only key cannot rotate anything


# ----------------------------------------------------------------------------------------------
# 2. Credentials cannot be guessed
# ----------------------------------------------------------------------------------------------


def test_every_password_check_shares_one_back_off(live):
    db = live.services.db
    create_user(db, "guess@example.com", PW, org_name="guess")
    owner, h = live.session("op@example.com")
    inv = owner.post("/api/org/invitations", json={"email": "guess@example.com"}, headers=h).json()
    ip = "198.51.100.7"
    c = live.client(ip)
    for _ in range(throttle.PAIR_RULE.free - 1):  # wrong passwords through the invitation …
        r = c.post("/api/invitations/accept", json={"token": inv["token"], "email": "guess@example.com",
                                                    "password": "wrong wrong wrong"})
        assert r.status_code == 401
    for _ in range(2):  # … and through login count in the same throttle
        assert c.post("/api/auth/login", json={"email": "guess@example.com", "password": "x" * 12}).status_code == 401
    r = c.post("/api/auth/login", json={"email": "guess@example.com", "password": PW})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1  # backed off: not even checked
    # The owner from elsewhere is not locked out.
    assert live.client("192.0.2.55").post("/api/auth/login", json={"email": "guess@example.com",
                                                                   "password": PW}).status_code == 200


def test_signup_is_rate_limited_per_address_and_says_nothing_about_accounts(live):
    c = live.client("203.0.113.77")
    answers = [c.post("/api/auth/signup", json={"email": e, "password": PW})
               for e in ("op@example.com", "new1@example.com", "new2@example.com")]
    assert {r.status_code for r in answers} == {202} and len({r.text for r in answers}) == 1
    r = c.post("/api/auth/signup", json={"email": "new3@example.com", "password": PW})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert live.client("203.0.113.78").post("/api/auth/signup", json={"email": "new3@example.com",
                                                                       "password": PW}).status_code == 202


def test_free_allowance_waits_for_a_verified_address(live, monkeypatch):
    monkeypatch.setattr(live.settings, "require_email_verification", True)
    c = live.client("203.0.113.90")
    assert c.post("/api/auth/signup", json={"email": "verify@example.com", "password": PW}).status_code == 202
    _, h = live.session("verify@example.com")
    c2, _ = live.session("verify@example.com")
    assert c2.get("/api/billing/balance").json()["by_source_mc"]["allowance"] == 0
    mail = next(m for m in reversed(live.services.mailer.sent) if m["To"] == "verify@example.com")
    token = mail.get_content().split("token=")[1].split()[0]
    assert c2.post("/api/auth/verify", json={"token": "forged"}).status_code == 404
    assert c2.post("/api/auth/verify", json={"token": token}).status_code == 200
    assert c2.get("/api/billing/balance").json()["by_source_mc"]["allowance"] > 0
    assert c2.post("/api/auth/verify", json={"token": token}).status_code == 404  # used once


# ----------------------------------------------------------------------------------------------
# 3. One set of input limits for every route
# ----------------------------------------------------------------------------------------------


SHAPES = {"/sdapi/": lambda j: "error" in j or "detail" in j, "/v1/images": lambda j: "error" in j,
          "/v1/models": lambda j: "error" in j, "/v1/": lambda j: "name" in j or "message" in j,
          "/v2beta/": lambda j: "name" in j or "errors" in j, "/": lambda j: "error" in j}


def test_every_route_refuses_an_oversized_body(live):
    big = b"x" * (live.settings.max_request_bytes + 1)
    # Every operation the app serves (its OpenAPI schema), and the routes outside the schema (docs pages).
    routes = [(m.upper(), path) for path, ops in live.app.openapi()["paths"].items() for m in ops]
    routes += [(m, r.path) for r in live.app.routes for m in getattr(r, "methods", ()) if m != "HEAD"]
    assert len(routes) > 50
    with httpx.Client(base_url=live.base, timeout=60) as c:
        for method, path in routes:
            url = path.replace("{", "").replace("}", "")  # any value for path parameters
            r = c.request(method, url, content=big, headers={"Content-Type": "application/json", **bearer(live.op_key)})
            assert r.status_code == 413, (method, path, r.status_code)
            shape = next(v for p, v in SHAPES.items() if path.startswith(p))
            assert shape(r.json()), (path, r.text)


def test_a_chunked_body_is_cut_off_at_the_limit(live):
    def chunks():  # 16 MiB in 256 KiB chunks, no Content-Length: the limit is 4 MiB
        for _ in range(64):
            yield b"x" * (256 * 1024)

    r = httpx.post(f"{live.base}/api/jobs", content=chunks(), headers=bearer(live.op_key), timeout=60)
    assert r.status_code == 413


@pytest.mark.parametrize("body, why", [
    ("[" * 100_000 + "]" * 100_000, "deeper"),
    ('{"seed": ' + "9" * 5000 + "}", "digits"),
    ('{"prompt": "x", "cfg_scale": NaN}', "NaN"),
])
def test_hostile_json_is_refused_before_any_route_reads_it(live, body, why):
    for path in ("/api/jobs", "/sdapi/v1/txt2img", "/v1/images/generations"):
        r = httpx.post(f"{live.base}{path}", content=body, headers={"Content-Type": "application/json",
                                                                     **bearer(live.op_key)}, timeout=60)
        assert r.status_code == 400 and why in r.text, (path, r.text)


def test_decompression_bombs_are_refused_from_the_header_on_every_surface(live):
    b64 = base64.b64encode(bomb()).decode()
    h = bearer(live.paying_org()[1])
    cases = [
        ("post", "/api/jobs", {"json": {"prompt": "x", "init_image": b64}}),
        ("post", "/sdapi/v1/img2img", {"json": {"prompt": "x", "init_images": [b64]}}),
        ("post", "/sdapi/v1/png-info", {"json": {"image": b64}}),
        ("post", "/v1/images/edits", {"files": {"image": ("a.png", bomb(), "image/png")}, "data": {"prompt": "x"}}),
        ("post", "/v1/generation/solvent-tiny/image-to-image",
         {"files": {"init_image": ("a.png", bomb(), "image/png")}, "data": {"text_prompts[0][text]": "x"}}),
    ]
    for method, path, kw in cases:
        r = getattr(httpx, method)(f"{live.base}{path}", headers=h, timeout=60, **kw)
        assert 400 <= r.status_code < 500 and "pixels" in r.text, (path, r.status_code, r.text[:300])


def test_event_streams_and_sync_waits_are_capped_per_org(live):
    org, key = live.paying_org()
    job = httpx.post(f"{live.base}/api/jobs", json={"prompt": "a ring", "steps": 150}, headers=bearer(key)).json()
    with httpx.Client(base_url=live.base, headers=bearer(key), timeout=60) as c:
        streams = [c.stream("GET", f"/api/jobs/{job['id']}/events") for _ in range(2)]
        opened = [s.__enter__() for s in streams]
        assert all(o.status_code == 200 for o in opened)
        r = c.get(f"/api/jobs/{job['id']}/events")
        assert r.status_code == 429 and "SOLVENT_MAX_WAITS_PER_ORG" in r.text
        _, other = live.paying_org()  # another organisation is not affected
        with c.stream("GET", f"/api/jobs/{job['id']}/events", headers=bearer(other)) as s:
            assert s.status_code == 404
        for s in streams:
            s.__exit__(None, None, None)
    httpx.post(f"{live.base}/api/jobs/{job['id']}/cancel", headers=bearer(key))


# ----------------------------------------------------------------------------------------------
# 4. Nothing quadratic, nothing heavy on the event loop
# ----------------------------------------------------------------------------------------------


def test_png_info_with_a_huge_parameters_line_answers(live):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "p\n" + "a" * 400_000)  # the old regex needed minutes for this
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    r = httpx.post(f"{live.base}/sdapi/v1/png-info", json={"image": base64.b64encode(buf.getvalue()).decode()},
                   headers=bearer(live.op_key), timeout=60)
    assert r.status_code == 200 and r.json()["parameters"]["prompt"].startswith("p")


# ----------------------------------------------------------------------------------------------
# 5. Refused work leaves nothing behind
# ----------------------------------------------------------------------------------------------


def test_a_request_refused_for_credits_runs_no_tokeniser_and_stores_no_image(live, monkeypatch):
    from solvent.api import admission

    calls = []
    monkeypatch.setattr(admission, "_check_prompt", lambda *a: calls.append(a))
    org, key = live.paying_org(credits=0)
    with live.services.db.session() as s:
        s.get(Organisation, org).plan_id = "payg"
    before = blobs(live)
    r = httpx.post(f"{live.base}/api/jobs", json={"prompt": "x", "init_image": base64.b64encode(png()).decode()},
                   headers=bearer(key), timeout=60)
    assert r.status_code == 402 and calls == [] and blobs(live) == before


def test_compat_layers_refuse_for_credits_before_decoding(live, monkeypatch):
    from solvent.api.compat import a1111, openai

    decoded = []
    monkeypatch.setattr(a1111, "open_image", lambda *a, **k: decoded.append(a))
    monkeypatch.setattr(openai, "open_image", lambda *a, **k: decoded.append(a))
    org, key = live.paying_org(credits=0)
    init = base64.b64encode(png()).decode()
    r = httpx.post(f"{live.base}/sdapi/v1/img2img", json={"prompt": "x", "init_images": [init]}, headers=bearer(key))
    assert r.status_code == 402, r.text
    r = httpx.post(f"{live.base}/v1/images/edits", files={"image": ("a.png", png(), "image/png")},
                   data={"prompt": "x", "size": "64x64"}, headers=bearer(key))
    # OpenAI answers a lack of credits as 429 `insufficient_quota`, and so does its surface here
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota" and decoded == [], r.text


def test_a_worker_cannot_store_images_for_a_job_it_does_not_hold(live):
    _, token = create_worker(live.services.db, name="intruder")
    org, key = live.paying_org()
    job = httpx.post(f"{live.base}/api/jobs", json={"prompt": "x"}, headers=bearer(key)).json()
    before = blobs(live)
    r = httpx.post(f"{live.base}/api/worker/jobs/{job['id']}/images", content=png(),
                   params={"index": 0, "seed": 1, "width": 64, "height": 64}, headers=bearer(token))
    assert r.status_code == 409 and blobs(live) == before
    wait_final(live, key, job["id"])


def test_inputs_of_finished_jobs_are_collected_after_the_retention(live, monkeypatch):
    org, key = live.paying_org()
    init = base64.b64encode(png()).decode()
    job = httpx.post(f"{live.base}/api/jobs", json={"prompt": "x", "init_image": init, "strength": 0.5, "steps": 4},
                     headers=bearer(key)).json()
    done = wait_final(live, key, job["id"])
    assert done["state"] == "succeeded"
    with live.services.db.session() as s:
        blob = s.get(Job, job["id"]).params["init_image_blob"]
    assert blob in blobs(live)
    monkeypatch.setattr(live.settings, "input_retention_hours", 0)
    housekeeping(live.services)
    with live.services.db.session() as s:
        assert s.get(Job, job["id"]).inputs_collected_at is not None
    assert blob not in blobs(live)


# ----------------------------------------------------------------------------------------------
# 6. Names are names, not paths
# ----------------------------------------------------------------------------------------------


def test_lora_names_are_not_paths_and_errors_do_not_show_the_home(live):
    org, key = live.paying_org()
    for name in ("../../../etc/passwd", "/etc/passwd", "..\\x"):
        r = httpx.post(f"{live.base}/api/jobs", json={"prompt": "x", "loras": [{"name": name}]}, headers=bearer(key))
        assert r.status_code == 422 and r.json()["error"]["field"].startswith("loras"), r.text
    # A LoRA no serving worker has is refused at admission (nothing queued), without saying where LoRAs live.
    r = httpx.post(f"{live.base}/api/jobs", json={"prompt": "x", "loras": [{"name": "ghost"}]}, headers=bearer(key))
    assert r.status_code == 404 and r.json()["error"]["field"] == "loras[0].name" and "ghost" in r.text
    assert str(live.settings.home.parent) not in r.text and "/engine" not in r.text


# ----------------------------------------------------------------------------------------------
# 7. No 500s from input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, body, field", [
    ("/api/jobs", {"prompt": "a (cat:1000) b"}, "prompt"),
    ("/api/jobs", {"prompt": "x", "seed": 2**40}, "seed"),
    ("/api/keys", {"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
    ("/api/admin/orgs/x/credits/adjust", {"credits": 10**17, "idempotency_key": "k"}, "credits"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "width": 4096, "height": 4096}, None),
])
def test_malformed_values_are_4xx_naming_the_field(live, path, body, field):
    key = live.op_key if path.startswith("/api/admin") else live.paying_org()[1]
    r = httpx.post(f"{live.base}{path}", json=body, headers=bearer(key), timeout=60)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
    if field:
        assert field in r.text


@pytest.mark.parametrize("until", ["0001-01-06T00:51:01-22:42", "2030-01-01T00:00:00", "9999-12-31T23:59:59-23:00"])
def test_times_out_of_range_or_without_zone_are_422(live, until):
    # found by the schemathesis run: a year-1 time with a negative offset overflowed on conversion to UTC
    r = httpx.get(f"{live.base}/api/admin/ledger/report", params={"until": until}, headers=bearer(live.op_key))
    assert r.status_code == 422 and r.json()["error"]["field"] == "until", r.text


def test_malformed_prompt_weights_still_generate(live):
    org, key = live.paying_org()
    job = httpx.post(f"{live.base}/api/jobs", json={"prompt": "(cat:1.2.3) on a (mat", "steps": 2},
                     headers=bearer(key)).json()
    assert wait_final(live, key, job["id"])["state"] == "succeeded"


def test_img2img_whose_steps_times_strength_round_to_zero_runs_one_step(live):
    org, key = live.paying_org()
    init = base64.b64encode(png()).decode()
    r = httpx.post(f"{live.base}/sdapi/v1/img2img", json={"prompt": "x", "init_images": [init], "steps": 20,
                                                            "denoising_strength": 0.01}, headers=bearer(key),
                   timeout=120)
    assert r.status_code == 200 and len(r.json()["images"]) == 1, r.text


def test_stripe_events_with_junk_metadata_are_400(live):
    org, _ = live.paying_org()
    event = {"id": "evt_junk", "type": "checkout.session.completed",
             "data": {"object": {"client_reference_id": org, "metadata": {"credits": "lots"}}}}
    payload = json.dumps(event).encode()
    r = httpx.post(f"{live.base}/api/billing/stripe/webhook", content=payload,
                   headers={"Stripe-Signature": sign(payload, STRIPE), "Content-Type": "application/json"})
    assert r.status_code == 400 and "metadata.credits" in r.text


# ----------------------------------------------------------------------------------------------
# 8. Smaller holes
# ----------------------------------------------------------------------------------------------


def test_a1111_n_iter_with_an_idempotency_key_makes_distinct_jobs(live):
    org, key = live.paying_org()
    h = {**bearer(key), "Idempotency-Key": "batch-1"}
    body = {"prompt": "x", "n_iter": 2, "steps": 2, "width": 64, "height": 64, "seed": 5}
    first = httpx.post(f"{live.base}/sdapi/v1/txt2img", json=body, headers=h, timeout=120).json()
    again = httpx.post(f"{live.base}/sdapi/v1/txt2img", json=body, headers=h, timeout=120).json()
    assert len(first["images"]) == 2 and first["images"][0] != first["images"][1]
    assert again["images"] == first["images"]  # the retry replays both jobs, makes no third
    jobs = httpx.get(f"{live.base}/api/jobs", headers=bearer(key)).json()["jobs"]
    assert len(jobs) == 2


def test_generate_only_keys_read_no_balance_account_or_preview(live):
    org, _ = live.paying_org()
    gen = create_key(live.services.db, org, "gen", ("generate",))[1]
    for path in ("/v1/user/balance", "/v1/user/account", "/api/billing/balance", "/api/images"):
        assert httpx.get(f"{live.base}{path}", headers=bearer(gen)).status_code == 403, path
    assert httpx.get(f"{live.base}/sdapi/v1/progress", headers=bearer(gen)).json()["current_image"] is None


def test_docs_and_metrics_need_a_token(live):
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert httpx.get(f"{live.base}{path}").status_code == 401, path
    assert httpx.get(f"{live.base}/metrics", headers=bearer("metrics-secret")).status_code == 200
    org, key = live.paying_org()
    assert httpx.get(f"{live.base}/metrics", headers=bearer(key)).status_code == 403  # not an operator
    assert httpx.get(f"{live.base}/openapi.json", headers=bearer(key)).status_code == 200


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/x", "http://10.1.2.3/x", "http://localhost/x",
                                 "http://0x7f000001/x"])
def test_budget_webhooks_refuse_private_addresses(live, url):
    r = httpx.post(f"{live.base}/api/admin/ledger/budgets", json={"scope": "all", "limit_usd": "10", "webhook_url": url},
                   headers=bearer(live.op_key))
    assert r.status_code == 422 and r.json()["error"]["field"] == "webhook_url", r.text


def test_a_worker_cannot_price_itself(live):
    w, token = create_worker(live.services.db, name="greedy")
    r = httpx.post(f"{live.base}/api/worker/hello", json={"usd_per_hour": "999", "models": []}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["rate"] == "awaits the operator's approval"
    from solvent.ledger.costing import worker_rate
    from solvent.storage.db import utcnow
    from solvent.storage.models import Worker

    with live.services.db.session() as s:
        assert worker_rate(s, s.get(Worker, w.id), utcnow()).micros_per_hour != 999_000_000


def test_a_stale_lease_cannot_complete_and_expired_leases_are_reaped_without_polling(live):
    from solvent.jobs import results
    from solvent.jobs.queue import LeaseLost

    db, queue = live.services.db, live.services.queue
    org, key = live.paying_org()
    ghost, _ = create_worker(db, name="ghost", models=[{"id": "nothing"}])
    job, _ = queue.enqueue(org, "nobody-serves-this", {"prompt": "x"})
    with db.session() as s:  # the ghost holds the job, attempt 1, and its lease has run out
        j = s.get(Job, job.id)
        j.state, j.worker_id, j.attempts, j.lease_expires_at = "running", ghost.id, 1, j.created_at
    with pytest.raises(LeaseLost):
        results.complete(queue, job.id, ghost.id, {}, [], attempt=0)
    deadline = time.monotonic() + 10  # no worker polls for this model; the server's timer reaps it
    while time.monotonic() < deadline:
        with db.session() as s:
            if s.get(Job, job.id).state == "queued":
                break
        time.sleep(0.2)
    with db.session() as s:
        assert s.get(Job, job.id).state == "queued"
    queue.cancel(org, job.id)


def test_admin_idempotency_keys_are_per_organisation(live):
    a, _ = live.paying_org(credits=0)
    b, _ = live.paying_org(credits=0)
    for org in (a, b):
        r = httpx.post(f"{live.base}/api/admin/orgs/{org}/credits/adjust", json={"credits": 5, "idempotency_key": "same"},
                       headers=bearer(live.op_key))
        assert r.status_code == 200 and r.json()["created"] is True, r.text


def test_operator_flag_alone_grants_nothing_outside_the_operator_org(live):
    db = live.services.db
    with db.session() as s:
        u = s.query(User).filter(User.email == "op@example.com").one()
        assert u.operator and s.get(Organisation, live.op_org).operator
    org, key = live.paying_org()
    with db.session() as s:  # a key that says `operator` in a customer org (e.g. minted before this release)
        k = s.query(ApiKey).filter(ApiKey.org_id == org).one()
        k.scopes = ["generate", "read", "admin", "operator"]
    assert httpx.get(f"{live.base}/api/admin/queue", headers=bearer(key)).status_code == 403
