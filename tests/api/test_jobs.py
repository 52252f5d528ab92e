"""The native API in-process (FastAPI's TestClient) on SQLite and PostgreSQL, with a real in-process worker."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from solvent.accounts import create_key, create_org, revoke_key
from solvent.config import Settings
from solvent.generation import parse_infotext
from solvent.jobs import QueueLimits
from solvent.jobs.registry import create_worker
from solvent.root import build_app
from solvent.workers import WorkerLoop, declaration
from solvent.workers.local import LocalBackend
from solvent.workers.remote import HttpBackend
from tests.harness import make_services


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from solvent.root import build_engine

    return build_engine(Settings(home=tmp_path_factory.mktemp("engine-home")))


class Harness:
    def __init__(self, db, tmp_path, engine, **limits):
        self.services = make_services(db, tmp_path, limits=QueueLimits(lease_seconds=5, **limits), lease_seconds=5)
        billing = self.services.billing
        self.client = TestClient(build_app(self.services))
        self.engine = engine
        # Queue and API semantics are tested here; plans and credits in tests/billing.
        org_a, org_b = create_org(db, "A", plan_id="enterprise"), create_org(db, "B", plan_id="enterprise")
        self.org_a, self.org_b = org_a.id, org_b.id
        for org in (org_a, org_b):
            billing.ledger.purchase(org.id, 10**9, f"test:{org.id}")
        self.key_a = create_key(db, org_a.id, "a")[1]
        self.key_b = create_key(db, org_b.id, "b")[1]
        self.loops: list[tuple[WorkerLoop, threading.Thread]] = []

    def h(self, key=None, **extra):
        return {"Authorization": f"Bearer {key or self.key_a}", **extra}

    def start_worker(self, batch: int = 1, remote: bool = False):
        """An in-process worker: on the database directly, or (remote) over the worker API with its token."""
        w, token = create_worker(self.services.db, name="test")
        backend = LocalBackend(self.services, w.id)
        if remote:
            backend = HttpBackend("http://testserver", token)
            backend.client = TestClient(self.client.app, headers={"Authorization": f"Bearer {token}"})
        loop = WorkerLoop(self.engine, backend, declaration(self.engine), poll=0.05, lease_seconds=5, batch=batch)
        t = threading.Thread(target=loop.run, daemon=True)
        t.start()
        self.loops.append((loop, t))
        deadline = time.time() + 10
        while not self.client.get("/readyz").status_code == 200 and time.time() < deadline:
            time.sleep(0.05)

    def announce_models(self):
        """Declare the engine's models without running a worker (jobs stay queued)."""
        w, _ = create_worker(self.services.db, name="idle")
        LocalBackend(self.services, w.id).hello(declaration(self.engine))

    def wait(self, job_id, key=None, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.client.get(f"/api/jobs/{job_id}", headers=self.h(key)).json()
            if job["state"] in ("succeeded", "failed", "canceled"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {job}")

    def close(self):
        for loop, t in self.loops:
            loop.stop()
            t.join(timeout=30)


@pytest.fixture
def api(db, tmp_path, engine):
    h = Harness(db, tmp_path, engine)
    yield h
    h.close()


def png_b64(w=64, h=64, colour=(200, 20, 20), mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, (w, h), colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("remote", [False, True], ids=["local", "worker-api"])
def test_a_batching_worker_runs_compatible_jobs_in_one_call_and_shares_its_cost(api, remote):
    from solvent.storage.models import JobCost

    api.announce_models()  # queue first, so the worker finds the whole batch waiting
    post = lambda body: api.client.post("/api/jobs", headers=api.h(), json=body).json()["id"]  # noqa: E731
    same = {"steps": 100, "width": 64, "height": 64, "seed": 3}
    ids = [post({**same, "prompt": p}) for p in ("a red circle", "a blue ring", "a green star")]
    other = post({**same, "steps": 8, "prompt": "a red circle"})  # different steps: its own call
    api.start_worker(batch=3, remote=remote)
    deadline = time.time() + 60
    while api.client.get(f"/api/jobs/{ids[1]}", headers=api.h()).json()["state"] != "running":
        assert time.time() < deadline
        time.sleep(0.02)
    assert api.client.post(f"/api/jobs/{ids[1]}/cancel", headers=api.h()).status_code == 200  # mid-batch
    jobs = [api.wait(i) for i in ids]
    assert [j["state"] for j in jobs] == ["succeeded", "canceled", "succeeded"], jobs
    batch = jobs[0]["usage"]["batch"]
    assert batch["requests"] == 3 and jobs[2]["usage"]["batch"]["id"] == batch["id"] and not jobs[1]["images"]
    assert api.wait(other)["usage"].get("batch") is None
    with api.services.db.session() as s:
        rows = [s.get(JobCost, i) for i in ids]
    # One call, three jobs: each has its share of the call's time, and the shares add up to the call.
    assert {r.batch_id for r in rows} == {batch["id"]}
    assert sum(r.device_ms for r in rows) == batch["device_ms"] > 0
    assert [r.images for r in rows] == [1, 0, 1] and rows[1].state == "canceled"


def test_a_batch_that_runs_out_of_memory_is_retried_in_smaller_batches(api, monkeypatch):
    from solvent.errors import OutOfMemory

    api.announce_models()
    ids = [api.client.post("/api/jobs", headers=api.h(), json={"prompt": p, "steps": 4, "seed": 1}).json()["id"]
           for p in ("a red circle", "a blue ring", "a green star")]
    calls: list[int] = []
    real = api.engine.generate_batch

    def out_of_memory_once(reqs, **kw):  # a GPU's out-of-memory error, which this machine cannot produce
        calls.append(len(reqs))
        if len(calls) == 1:
            raise OutOfMemory("the device ran out of memory for a batch of 3.", field="batch_size", value=3)
        return real(reqs, **kw)

    monkeypatch.setattr(api.engine, "generate_batch", out_of_memory_once)
    api.start_worker(batch=3)
    jobs = [api.wait(i) for i in ids]
    assert [j["state"] for j in jobs] == ["succeeded"] * 3 and all(j["attempts"] == 2 for j in jobs)
    assert calls == [3] and api.loops[0][0].batch == 1  # retried one by one: the worker batches less from now on


def test_create_run_fetch(api):
    api.start_worker()
    r = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "a red circle", "seed": 5, "steps": 4,
                                                             "batch_size": 2})
    assert r.status_code == 201, r.text
    job = api.wait(r.json()["id"])
    assert job["state"] == "succeeded" and [i["seed"] for i in job["images"]] == [5, 6]
    assert job["usage"]["steps_run"] == 4 and job["usage"]["images"] == 2
    img = api.client.get(job["images"][1]["url"], headers=api.h())
    assert img.headers["content-type"] == "image/png"
    params = parse_infotext(Image.open(io.BytesIO(img.content)).info["parameters"])
    assert params["prompt"] == "a red circle" and params["Seed"] == "6"
    for fmt, mime in (("webp", "image/webp"), ("jpeg", "image/jpeg")):
        r = api.client.get(job["images"][0]["url"], params={"format": fmt}, headers=api.h())
        assert r.headers["content-type"] == mime and Image.open(io.BytesIO(r.content)).size == (64, 64)


def test_event_stream(api):
    api.start_worker()
    job = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "steps": 8}).json()
    events = []
    with api.client.stream("GET", f"/api/jobs/{job['id']}/events", headers=api.h()) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
    assert events[-1] == "result"
    assert set(events) <= {"queued", "progress", "preview", "result"}


def test_img2img_and_inpaint_by_json_and_multipart(api):
    api.start_worker()
    r = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "steps": 4, "init_image": png_b64(),
                                                             "strength": 0.5})
    assert r.json()["mode"] == "img2img"
    assert api.wait(r.json()["id"])["state"] == "succeeded"
    files = {"init_image": ("i.png", base64.b64decode(png_b64()), "image/png"),
             "mask": ("m.png", base64.b64decode(png_b64(colour=255, mode="L")), "image/png")}
    r = api.client.post("/api/jobs", headers=api.h(), data={"prompt": "x", "steps": "4"}, files=files)
    assert r.status_code == 201, r.text
    assert r.json()["mode"] == "inpaint" and api.wait(r.json()["id"])["state"] == "succeeded"


def test_idempotency_key(api):
    api.announce_models()
    a = api.client.post("/api/jobs", headers=api.h(**{"Idempotency-Key": "abc"}), json={"prompt": "x"})
    b = api.client.post("/api/jobs", headers=api.h(**{"Idempotency-Key": "abc"}), json={"prompt": "x"})
    assert (a.status_code, b.status_code) == (201, 200) and a.json()["id"] == b.json()["id"]
    other = api.client.post("/api/jobs", headers=api.h(api.key_b, **{"Idempotency-Key": "abc"}), json={"prompt": "x"})
    assert other.json()["id"] != a.json()["id"]  # keys are per organisation


def test_tenant_isolation(api):
    api.start_worker()
    job = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "steps": 2}).json()
    done = api.wait(job["id"])
    image_url = done["images"][0]["url"]
    for path in (f"/api/jobs/{job['id']}", image_url, f"/api/jobs/{job['id']}/events"):
        r = api.client.get(path, headers=api.h(api.key_b))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api.client.post(f"/api/jobs/{job['id']}/cancel", headers=api.h(api.key_b)).status_code == 404
    assert api.client.get("/api/jobs", headers=api.h(api.key_b)).json()["jobs"] == []


def test_auth(api):
    api.announce_models()
    assert api.client.get("/api/jobs").status_code == 401
    r = api.client.get("/api/jobs", headers=api.h("sk-solvent-nope"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    key, secret = create_key(api.services.db, api.org_a, "reader", ("read",))
    r = api.client.post("/api/jobs", headers=api.h(secret), json={"prompt": "x"})
    assert r.status_code == 403 and "generate" in r.json()["error"]["message"]
    revoke_key(api.services.db, key.id)
    r = api.client.get("/api/jobs", headers=api.h(secret))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body, status, field",
    [
        ('{"prompt": "x"', 400, "body"),
        ("[1, 2]", 400, "body"),
        ('{"prompt": "x", "steps": "many"}', 422, "steps"),
        ('{"prompt": "x", "colour": "red"}', 422, "colour"),
        ('{"prompt": "x", "steps": 0}', 422, "steps"),
        ('{"prompt": "x", "seed": 99999999999}', 422, "seed"),
        ('{"prompt": "x", "width": 65}', 422, "width"),
        ('{"prompt": "x", "model": "sdxl-nope"}', 404, "model"),
        ('{"prompt": "x", "sampler": "K_NOPE"}', 422, "sampler"),
        ('{"prompt": "x", "init_image": "@@@"}', 400, "init_image"),
        ('{"prompt": "x", "mask": "AAAA"}', 422, "mask"),
        ('{"prompt": "' + "red " * 400 + '"}', 422, "prompt"),
        ('{"prompt": "x", "loras": [{"name": "a", "weight": 99}]}', 422, "loras.0.weight"),
    ],
)
def test_bad_input_is_a_clear_4xx(api, body, status, field):
    api.announce_models()
    r = api.client.post("/api/jobs", headers=api.h(**{"Content-Type": "application/json"}), content=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"]
    assert api.client.get("/api/jobs", headers=api.h()).json()["jobs"] == []  # nothing half-created


def test_mask_size_mismatch_and_oversized_body(api):
    api.announce_models()
    r = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "init_image": png_b64(),
                                                             "mask": png_b64(32, 32, 255, "L")})
    assert r.status_code == 400 and r.json()["error"]["field"] == "mask"
    r = api.client.post("/api/jobs", headers=api.h(**{"Content-Type": "application/json",
                                                      "Content-Length": str(100 * 1024 * 1024)}), content=b"{}")
    assert r.status_code in (400, 413)


def test_cancel_list_and_paging(api):
    api.announce_models()
    ids = [api.client.post("/api/jobs", headers=api.h(), json={"prompt": str(i)}).json()["id"] for i in range(5)]
    r = api.client.post(f"/api/jobs/{ids[0]}/cancel", headers=api.h())
    assert r.json()["state"] == "canceled"
    page1 = api.client.get("/api/jobs", params={"limit": 3}, headers=api.h()).json()
    page2 = api.client.get("/api/jobs", params={"limit": 3, "cursor": page1["next_cursor"]}, headers=api.h()).json()
    assert [j["id"] for j in page1["jobs"] + page2["jobs"]] == ids[::-1] and page2["next_cursor"] is None
    queued = api.client.get("/api/jobs", params={"state": "queued"}, headers=api.h()).json()["jobs"]
    assert len(queued) == 4 and all(j["queue_position"] is None for j in queued)
    assert api.client.get(f"/api/jobs/{ids[4]}", headers=api.h()).json()["queue_position"] == 3


def test_cancel_running_job_stops_between_steps(api):
    api.start_worker()
    job = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "steps": 150}).json()
    deadline = time.time() + 30
    while api.client.get(f"/api/jobs/{job['id']}", headers=api.h()).json()["state"] != "running":
        assert time.time() < deadline
        time.sleep(0.05)
    api.client.post(f"/api/jobs/{job['id']}/cancel", headers=api.h())
    done = api.wait(job["id"])
    assert done["state"] == "canceled" and done["images"] == []


def test_back_pressure_429_with_retry_after(db, tmp_path, engine):
    h = Harness(db, tmp_path, engine, max_queued_per_org=2)
    h.announce_models()
    for _ in range(2):
        assert h.client.post("/api/jobs", headers=h.h(), json={"prompt": "x"}).status_code == 201
    r = h.client.post("/api/jobs", headers=h.h(), json={"prompt": "x"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.json()["error"]["code"] == "queue_full"


def test_models_health_metrics(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 503  # no worker yet
    api.start_worker()
    assert api.client.get("/readyz").json()["workers"] == 1
    models = api.client.get("/api/models", headers=api.h()).json()
    assert models[0]["id"] == "solvent-tiny" and models[0]["native_resolution"] == 64
    job = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "steps": 2}).json()
    api.wait(job["id"])
    text = api.client.get("/metrics").text
    assert 'solvent_jobs{state="succeeded"} 1.0' in text
    assert "solvent_job_latency_seconds_count" in text and "solvent_worker_busy_seconds_total" in text
    assert json.loads(api.client.get("/openapi.json").text)["paths"]["/api/jobs"]
