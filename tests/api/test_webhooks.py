"""Job webhooks against a live server and a real receiver on 127.0.0.1: signed with the organisation's secret and
timestamped, retried with back-off while the receiver fails (the same event id each time), every attempt logged
on the job, given up after the attempts run out, refused at admission for private and metadata addresses."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from solvent.jobs.webhooks import record_in, sign, verify
from solvent.storage.models import WebhookDelivery
from tests.api.compat.test_clients import Live
from tests.harness import ThreadServer, wait_job


class Receiver:
    """Answers 500 to the first `fail` POSTs of each path, then 200; keeps what it got."""

    def __init__(self):
        self.got: list[tuple[str, dict, bytes]] = []
        self.fail: dict[str, int] = {}

        async def hook(request):
            body = await request.body()
            path = request.url.path
            self.got.append((path, dict(request.headers), body))
            left = self.fail.get(path, 0)
            if left:
                self.fail[path] = left - 1
                return Response("try later", status_code=500)
            return Response("ok")

        self.http = ThreadServer(Starlette(routes=[Route("/{name}", hook, methods=["POST"])]))

    def posts(self, path: str) -> list[tuple[dict, bytes]]:
        return [(h, b) for p, h, b in self.got if p == path]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("hooks"), outbound_allow_hosts=["127.0.0.1"], webhook_backoff_seconds=0.05,
                  webhook_attempts=4)
    server.h = {"Authorization": f"Bearer {server.key}"}
    server.receiver = Receiver()
    yield server
    server.receiver.http.stop()
    server.close()


def _webhook_done(live, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{live.base}/api/jobs/{job_id}", headers=live.h).json()
        if job["webhook"] and job["webhook"]["state"] in ("delivered", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"the webhook of {job_id} did not finish: {job['webhook']}")


def test_a_job_webhook_is_signed_retried_and_logged(live):
    url = f"{live.receiver.http.base}/flaky"
    live.receiver.fail["/flaky"] = 2
    r = httpx.post(f"{live.base}/api/jobs", headers=live.h, json={"prompt": "a red circle", "steps": 4,
                                                                 "webhook_url": url})
    assert r.status_code == 201, r.text
    assert r.json()["webhook"]["state"] in ("waiting", "pending")
    job = _webhook_done(live, r.json()["id"])
    hook = job["webhook"]
    assert hook["state"] == "delivered" and hook["attempts"] == 3 and hook["url"] == url
    assert [a["status"] for a in hook["log"]] == [500, 500, 200]
    posts = live.receiver.posts("/flaky")
    assert len(posts) == 3 and len({h["solvent-webhook-id"] for h, _ in posts}) == 1  # one event, retried
    secret = httpx.get(f"{live.base}/api/webhooks/secret", headers=live.h).json()["secret"]
    assert secret.startswith("whsec_")
    for headers, body in posts:
        assert verify(secret, headers["solvent-signature"], body)
        assert not verify(secret, headers["solvent-signature"], body + b" ")  # tampered
    event = json.loads(posts[-1][1])
    assert event["type"] == "job.succeeded" and event["id"] == hook["id"] and event["data"]["id"] == job["id"]
    assert event["data"]["images"][0]["url"].startswith("/api/images/") and "webhook_url" in event["data"]["params"]


def test_an_upscale_and_a_failed_receiver(live):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, "PNG")
    url = f"{live.receiver.http.base}/down"
    live.receiver.fail["/down"] = 100
    r = httpx.post(f"{live.base}/api/upscale", headers=live.h, json={
        "image": base64.b64encode(buf.getvalue()).decode(), "upscaler": "lanczos", "webhook_url": url})
    assert r.status_code == 201, r.text
    job = _webhook_done(live, r.json()["id"])
    assert job["webhook"]["state"] == "failed" and job["webhook"]["attempts"] == 4  # SOLVENT_WEBHOOK_ATTEMPTS
    times = [a["at"] for a in job["webhook"]["log"]]
    assert times == sorted(times) and len(live.receiver.posts("/down")) == 4


@pytest.mark.parametrize("url", ["http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
                                 "http://0x0a000001/x", "ftp://example.com/x", "http://[::1]/x",
                                 "http://192.168.0.10/x"])  # (127.0.0.1 itself is allowed here, for the receiver)
def test_private_and_odd_webhook_urls_are_refused_at_admission(live, url):
    r = httpx.post(f"{live.base}/api/jobs", headers=live.h, json={"prompt": "x", "webhook_url": url})
    assert r.status_code == 422 and r.json()["error"]["field"] == "webhook_url", r.text


def test_signatures_expire_and_the_secret_rotates(live):
    body = b'{"id":"evt"}'
    old = httpx.get(f"{live.base}/api/webhooks/secret", headers=live.h).json()["secret"]
    stale = sign(old, int(time.time()) - 3600, body)
    assert not verify(old, stale, body) and verify(old, sign(old, int(time.time()), body), body)
    new = httpx.post(f"{live.base}/api/webhooks/secret/rotate", headers=live.h).json()["secret"]
    assert new != old and not verify(new, sign(old, int(time.time()), body), body)
    _, reader = live.new_org("payg")
    r = httpx.get(f"{live.base}/api/webhooks/secret", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 200 and r.json()["secret"] != new  # each organisation its own


def test_a_delivery_is_recorded_once_per_job(live):
    db = live.services.db
    r = httpx.post(f"{live.base}/api/jobs", headers=live.h, json={"prompt": "x", "steps": 2,
                                                                 "webhook_url": f"{live.receiver.http.base}/once"})
    job_id = wait_job(live.base, live.key, r.json()["id"])["id"]
    with db.session() as s:
        from solvent.storage.models import Job

        record_in(s, s.get(Job, job_id))  # a second end of the same job (a replayed completion)
    with db.session() as s:
        from sqlalchemy import func, select

        assert s.scalar(select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.job_id == job_id)) == 1
