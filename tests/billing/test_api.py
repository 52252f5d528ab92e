"""Plans, limits, quotas, credits, quotes, keys and Stripe webhooks end to end through the HTTP API,
on SQLite and PostgreSQL. Jobs are completed through the queue (no engine work) except where the
image itself is checked."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from solvent.accounts import create_key, create_org, rotate_key
from solvent.billing import Pricing, set_plan
from solvent.billing.payments import sign
from solvent.billing.pricing import CostClass
from solvent.config import Settings
from solvent.jobs import QueueLimits
from solvent.jobs.registry import create_worker
from solvent.root import build_app
from solvent.workers import declaration
from solvent.workers.local import LocalBackend
from tests.harness import ThreadServer, make_services

SECRET = "whsec_test_secret"
ONE_CREDIT = Pricing({"tiny": CostClass(1000, 64 * 64, 20)})  # a 64×64, 20-step image costs exactly 1 credit


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from solvent.root import build_engine

    return build_engine(Settings(home=tmp_path_factory.mktemp("engine-home")))


class App:
    def __init__(self, db, tmp_path, engine, pricing=ONE_CREDIT):
        self.services = make_services(db, tmp_path, limits=QueueLimits(lease_seconds=30), pricing=pricing,
                                      stripe_webhook_secret=SECRET)
        self.app = build_app(self.services)
        self.client = TestClient(self.app)
        self.worker, _ = create_worker(db, name="idle")
        LocalBackend(self.services, self.worker.id).hello(declaration(engine))  # serves solvent-tiny, runs nothing

    def org(self, plan="community", credits=0, **key_caps):
        org = create_org(self.services.db, f"org-{plan}", plan_id=plan)
        if credits:
            self.services.billing.ledger.purchase(org.id, credits * 1000, f"setup:{org.id}")
        key = create_key(self.services.db, org.id, "k", ("generate", "read", "admin"), **key_caps)
        return org.id, {"Authorization": f"Bearer {key[1]}"}, key[0]

    def post(self, headers, **body):
        return self.client.post("/api/jobs", headers=headers, json={"prompt": "a red circle", "steps": 20, **body})

    def run_all(self):
        """Complete every queued job as a worker would (one image per requested image)."""
        q = self.services.queue
        while (job := q.lease(self.worker.id)) is not None:
            n = job.params.get("batch_size", 1)
            q.complete(job.id, self.worker.id, {"images": [{"id": f"img_{job.id}_{i}", "index": i, "seed": i, "width": 64,
                                                       "height": 64} for i in range(n)], "usage": {}})

    def balance(self, headers):
        return self.client.get("/api/billing/balance", headers=headers).json()

    def webhook(self, event, secret=SECRET, t=None, tamper=False):
        raw = json.dumps(event).encode()
        sig = sign(raw, secret, t)
        if tamper:
            raw = raw.replace(b"1000", b"9000")
        return self.client.post("/api/billing/stripe/webhook", content=raw,
                                headers={"Stripe-Signature": sig, "Content-Type": "application/json"})


@pytest.fixture
def app(db, tmp_path, engine):
    return App(db, tmp_path, engine)


def test_free_plan_daily_quota_then_429(app, db):
    set_plan(db, "community", daily_images=3, concurrent_jobs=10)
    org, h, _ = app.org("community")
    for _ in range(3):
        r = app.post(h)
        assert r.status_code == 201, r.text
        assert r.json()["commercial_use"] is False  # a free plan is non-commercial, and says so
    r = app.post(h)
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["code"] == "daily_quota" and err["limit"] == 3 and err["used"] == 3
    assert 0 < int(r.headers["Retry-After"]) <= 86_400
    app.run_all()
    assert app.post(h).status_code == 429  # finished images still count against today's quota
    assert app.balance(h)["by_source_mc"]["allowance"] == 10_000 - 3_000  # 3 × 1 credit of the free 10


def test_free_plan_credits_run_out_then_402(app, db):
    set_plan(db, "community", included_mc=2_000, concurrent_jobs=10)
    org, h, _ = app.org("community")
    assert app.post(h).status_code == 201
    assert app.post(h).status_code == 201
    r = app.post(h)
    assert r.status_code == 402
    err = r.json()["error"]
    assert err["code"] == "insufficient_credits" and err["field"] == "credits"
    assert (err["price_mc"], err["balance_mc"]) == (1_000, 0) and "solvent credits" in err["top_up"]


def test_concurrency_and_rpm_limits_429(app, db):
    _, h, _ = app.org("community")
    assert app.post(h).status_code == 201
    r = app.post(h)  # community allows 1 job in flight
    assert r.status_code == 429 and r.json()["error"]["field"] == "concurrent_jobs" and r.headers["Retry-After"]
    set_plan(db, "payg", rpm=2)
    _, h2, _ = app.org("payg", credits=100)
    assert app.post(h2).status_code == 201
    app.run_all()
    assert app.post(h2).status_code == 201
    app.run_all()
    r = app.post(h2)
    assert r.status_code == 429 and r.json()["error"]["field"] == "rpm"
    assert 1 <= int(r.headers["Retry-After"]) <= 61


def test_plan_and_key_caps_403_naming_the_cap(app, db):
    _, h, _ = app.org("community")
    r = app.post(h, steps=60)
    assert r.status_code == 403 and r.json()["error"]["field"] == "steps" and r.json()["error"]["limit"] == 50
    set_plan(db, "payg", max_pixels=64 * 64, allowed_models=["other-model"])
    _, h2, _ = app.org("payg", credits=100)
    r = app.post(h2, width=128, height=128)
    assert r.status_code == 403 and r.json()["error"]["cap"] == "max_pixels" and "16384" in r.json()["error"]["message"]
    r = app.post(h2)
    assert r.status_code == 403 and r.json()["error"]["field"] == "model"
    set_plan(db, "payg", max_pixels=1024 * 1024, allowed_models=None)
    _, h3, _ = app.org("payg", credits=100, max_steps=10, credit_cap_mc=1_500, cap_period="day")
    r = app.post(h3)
    assert r.status_code == 403 and "API key" in r.json()["error"]["message"]
    for _ in range(3):  # 0.5 credit each: 1.5 spent, the key's daily cap
        assert app.post(h3, steps=10).status_code == 201
        app.run_all()
    r = app.post(h3, steps=10)
    assert r.status_code == 402 and r.json()["error"]["code"] == "key_cap_reached"


def test_quote_is_a_dry_run(app, db):
    org, h, _ = app.org("payg", credits=3)
    r = app.client.post("/api/quote", headers=h, json={"steps": 20, "batch_size": 2, "width": 128, "height": 64})
    assert r.status_code == 200, r.text
    q = r.json()
    assert (q["price_mc"], q["per_image_mc"], q["balance_mc"], q["admissible"]) == (4_000, 2_000, 3_000, False)
    assert q["problems"][0]["code"] == "insufficient_credits"
    assert app.client.get("/api/jobs", headers=h).json()["jobs"] == []
    assert app.balance(h)["available_mc"] == 3_000


def test_capture_on_success_release_on_failure_and_cancel(app, db):
    org, h, _ = app.org("payg", credits=10)
    a = app.post(h, batch_size=2).json()
    assert a["price_mc"] == 2_000 and app.balance(h)["held_mc"] == 2_000
    app.run_all()
    b = app.post(h).json()
    assert app.client.post(f"/api/jobs/{b['id']}/cancel", headers=h).json()["state"] == "canceled"
    c = app.post(h).json()
    job = app.services.queue.lease(app.worker.id)
    app.services.queue.fail(job.id, app.worker.id, "engine_error", "boom")
    bal = app.balance(h)
    assert (bal["available_mc"], bal["held_mc"]) == (8_000, 0)
    kinds = [t["kind"] for t in app.client.get("/api/billing/statement", headers=h).json()["transactions"]]
    assert kinds == ["purchase", "reserve", "capture", "reserve", "release", "reserve", "release"]
    csv_text = app.client.get("/api/billing/statement", params={"format": "csv"}, headers=h).text
    assert csv_text.splitlines()[0].startswith("created_at,txn_id,kind,account,amount_mc") and c["id"] in csv_text


def test_grant_is_used_first_and_reported_as_given_away(app, db):
    org, h, _ = app.org("payg", credits=5)
    admin_org, admin_h, _ = app.org("enterprise")
    with app.services.db.session() as s:  # make the second org the operator's, and its key an operator key
        from solvent.storage.models import ApiKey, Organisation

        s.get(Organisation, admin_org).operator = True
        for k in s.query(ApiKey).filter(ApiKey.org_id == admin_org):
            k.scopes = ["generate", "read", "admin", "operator"]
    r = app.client.post(f"/api/admin/orgs/{org}/grants", headers=h, json={"credits": 3, "purpose": "research"})
    assert r.status_code == 403  # an organisation cannot grant itself credits
    r = app.client.post(f"/api/admin/orgs/{org}/grants", headers=admin_h, json={"credits": 3, "purpose": "research"})
    assert r.status_code == 200, r.text
    app.post(h, batch_size=2)
    app.run_all()
    bal = app.balance(h)
    assert bal["by_source_mc"] == {"grants": 1_000, "allowance": 0, "paid": 5_000}
    gid = r.json()["grant_id"]
    assert app.client.get("/api/admin/given-away", headers=admin_h).json()["given_away_mc"] == {f"grant:{gid}": 2_000}
    assert app.client.get("/api/billing/grants", headers=h).json()["grants"][0]["remaining_mc"] == 1_000
    assert app.client.get(f"/api/billing/balance?org={org}", headers=admin_h).json()["available_mc"] == 6_000
    assert app.client.get(f"/api/billing/balance?org={admin_org}", headers=h).status_code == 403
    csv_text = app.client.get(f"/api/admin/orgs/{org}/statement", params={"format": "csv"}, headers=admin_h).text
    assert csv_text.count("grant:") >= 2
    orgs = {o["id"]: o for o in app.client.get("/api/admin/orgs", headers=admin_h).json()["orgs"]}
    assert orgs[org]["plan"] == "payg" and app.client.get("/api/admin/orgs", headers=h).status_code == 403
    assert app.client.get("/api/admin/users", headers=admin_h).status_code == 200


def test_expired_revoked_and_rotated_keys(app, db):
    org, h, key = app.org("payg", credits=5)
    new, secret = rotate_key(db, key.id)
    assert app.client.get("/api/billing/balance", headers=h).status_code == 401
    assert app.client.get("/api/billing/balance", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    short, s2 = create_key(db, org, "short", expires_at=datetime.now(UTC) + timedelta(seconds=1))
    time.sleep(1.2)
    r = app.client.get("/api/billing/balance", headers={"Authorization": f"Bearer {s2}"})
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


# ----------------------------------------------------------------------------------------------
# Stripe webhooks: signed payloads built here (valid, tampered, stale, replayed)
# ----------------------------------------------------------------------------------------------


def checkout(org, event_id="evt_1", credits=1000):
    return {"id": event_id, "type": "checkout.session.completed", "data": {"object": {
        "id": "cs_1", "client_reference_id": org, "payment_status": "paid", "amount_total": credits,
        "customer": "cus_1", "metadata": {"credits": str(credits)}}}}


def test_stripe_checkout_adds_credits_once(app, db):
    org, h, _ = app.org("payg")
    r = app.webhook(checkout(org))
    assert r.status_code == 200 and r.json()["credits"] == 1000
    assert app.balance(h)["available_mc"] == 1_000_000
    assert app.webhook(checkout(org)).json()["duplicate"] is True  # redelivered: nothing changes
    assert app.balance(h)["available_mc"] == 1_000_000
    r = app.webhook(checkout(org, "evt_2"), tamper=True)
    assert r.status_code == 401 and r.json()["error"]["code"] == "bad_signature"
    r = app.webhook(checkout(org, "evt_3"), t=int(time.time()) - 3600)  # a replay of an old delivery
    assert r.status_code == 401 and "replay" in r.json()["error"]["message"]
    r = app.webhook(checkout(org, "evt_4"), secret="whsec_wrong")
    assert r.status_code == 401
    r = app.client.post("/api/billing/stripe/webhook", content=b"{}")
    assert r.status_code == 401 and r.json()["error"]["field"] == "stripe-signature"
    assert app.balance(h)["available_mc"] == 1_000_000


def test_stripe_subscription_changes_plan_mid_job_without_double_charge(app, db):
    org, h, _ = app.org("community")
    start = int(datetime.now(UTC).timestamp()) - 60
    invoice = {"id": "evt_inv", "type": "invoice.paid", "data": {"object": {
        "customer": "cus_9", "metadata": {"org_id": org, "plan": "professional"},
        "lines": {"data": [{"period": {"start": start, "end": start + 30 * 86400}}]}}}}
    r = app.webhook(invoice)
    assert r.status_code == 200 and r.json()["plan"] == "professional"
    bal = app.balance(h)
    assert bal["plan"] == "professional" and bal["by_source_mc"]["allowance"] == 1_000_000
    job = app.post(h, batch_size=2).json()
    assert job["commercial_use"] is True
    deleted = {"id": "evt_del", "type": "customer.subscription.deleted",
               "data": {"object": {"customer": "cus_9", "status": "canceled"}}}
    assert app.webhook(deleted).json()["plan"] == "community"
    app.run_all()  # the job admitted under Professional finishes after the downgrade
    done = app.client.get(f"/api/jobs/{job['id']}", headers=h).json()
    assert done["state"] == "succeeded" and done["commercial_use"] is True
    statement = app.client.get("/api/billing/statement", headers=h).json()["transactions"]
    assert [t["kind"] for t in statement].count("capture") == 1
    assert app.balance(h)["plan"] == "community"


# ----------------------------------------------------------------------------------------------
# The race over real HTTP: 50 concurrent requests of 1 credit against a balance of 10
# ----------------------------------------------------------------------------------------------


def test_race_50_requests_balance_10_over_http(app, db):
    set_plan(db, "payg", concurrent_jobs=100, rpm=1000)
    org, h, _ = app.org("payg", credits=10)
    http = ThreadServer(app.app)
    port = http.port
    codes: list[int] = []
    barrier = threading.Barrier(50)

    def one():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            barrier.wait()
            codes.append(c.post("/api/jobs", headers=h, json={"prompt": "x", "steps": 20}).status_code)

    try:
        threads = [threading.Thread(target=one) for _ in range(50)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        http.stop()
    assert codes.count(201) == 10 and codes.count(402) == 40, sorted(codes)
    app.run_all()
    bal = app.balance(h)
    assert (bal["available_mc"], bal["held_mc"]) == (0, 0)
    kinds = [x["kind"] for x in app.client.get("/api/billing/statement", headers=h).json()["transactions"]]
    assert kinds.count("capture") == 10 and kinds.count("reserve") == 10


def test_commercial_use_and_licence_in_the_image_metadata(app, db, engine):
    """A real worker makes the images: the non-commercial plan and the model's licence are in them."""
    import io

    from PIL import Image

    from solvent.generation import parse_infotext, read_metadata
    from solvent.workers import WorkerLoop

    w, _ = create_worker(db, name="real")
    loop = WorkerLoop(engine, LocalBackend(app.services, w.id), declaration(engine), poll=0.05)
    t = threading.Thread(target=loop.run, daemon=True)
    t.start()
    try:
        for plan, credits, expected in (("community", 0, "no (non-commercial plan)"), ("payg", 10, "yes")):
            _, h, _ = app.org(plan, credits=credits)
            job = app.post(h, steps=4).json()
            while job["state"] not in ("succeeded", "failed", "canceled"):
                time.sleep(0.1)
                job = app.client.get(f"/api/jobs/{job['id']}", headers=h).json()
            assert job["state"] == "succeeded", job
            assert job["license"] == "Apache-2.0" and job["commercial_use"] is (plan != "community")
            png = app.client.get(job["images"][0]["url"], headers=h).content
            text, meta = read_metadata(png)
            info = parse_infotext(text)
            assert info["Commercial use"] == expected and info["License"] == "Apache-2.0"
            assert meta["params"]["terms"]["commercial_use"] is (plan != "community")
            assert Image.open(io.BytesIO(png)).size == (64, 64)
    finally:
        loop.stop()
        t.join(timeout=30)
