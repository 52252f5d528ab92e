"""Fault injection: SIGKILL the server during admission, during completion and during a Stripe webhook;
restart it; every balance equals its legs, and no job is lost or charged twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
from sqlalchemy import func, select

from solvent.billing.credits import verify_balances
from solvent.billing.payments import sign
from solvent.storage import Database
from solvent.storage.models import CreditHold, CreditTxn, Job
from tests.harness import env_for, free_port, solvent, stop, wait_http

SECRET = "whsec_faults"


def start(env, port):
    server = solvent("serve", "--port", str(port), "--no-worker", env=env, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90)
    return server


def kill(server):
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def books_agree(db: Database) -> None:
    assert verify_balances(db) == []
    with db.session() as s:
        jobs = s.scalars(select(Job)).all()
        holds = {h.job_id: h for h in s.scalars(select(CreditHold))}
        for job in jobs:  # every admitted job holds exactly its price, once; no hold without a job
            assert job.id in holds and holds[job.id].amount_mc == job.params["price_mc"], job.id
            if job.state in ("succeeded", "failed", "canceled"):
                assert holds[job.id].state in ("captured", "released"), (job.id, holds[job.id].state)
        assert set(holds) <= {j.id for j in jobs}


def test_sigkill_during_admission_completion_and_webhook_loses_and_doubles_nothing(tmp_path):
    home = tmp_path / "server"
    env = env_for(home, SOLVENT_STRIPE_WEBHOOK_SECRET=SECRET, SOLVENT_LEASE_SECONDS="3",
                  SOLVENT_MAX_QUEUED_PER_ORG="1000")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(env, port)
    worker = None
    try:
        key = (home / "admin-key.txt").read_text().strip()
        h = {"Authorization": f"Bearer {key}"}
        out = subprocess.run([sys.executable, "-m", "solvent.cli.main", "workers", "create"], env=env,
                             capture_output=True, text=True, check=True).stdout
        subprocess.run([sys.executable, "-m", "solvent.cli.main", "plans", "set", "enterprise",
                        "concurrent_jobs=100000", "rpm=100000"], env=env, check=True, capture_output=True)
        token = out.split("token (shown once): ")[1].split()[0]
        org = httpx.get(f"{base}/api/me", headers=h).json()["org"]["id"]
        db = Database(f"sqlite:///{home / 'solvent.db'}")

        # 1. Admission: four clients create jobs with idempotency keys while the server is killed.
        sent: list[str] = []
        stop_flag = threading.Event()

        def admit(k: int) -> None:
            with httpx.Client(timeout=10) as c:
                for i in range(1000):
                    if stop_flag.is_set():
                        return
                    ik = f"c{k}-{i}"
                    try:
                        c.post(f"{base}/api/jobs", headers={**h, "Idempotency-Key": ik},
                               json={"prompt": "a ring", "steps": 2})
                        sent.append(ik)
                    except httpx.TransportError:
                        sent.append(ik)  # may or may not have been admitted: retried below
                        return

        # A declared worker makes the model servable; the real one starts after the restart.
        httpx.post(f"{base}/api/worker/hello", headers={"Authorization": f"Bearer {token}"}, json={
            "models": [{"id": "solvent-tiny", "family": "tiny", "native_resolution": 64, "default_steps": 20,
                        "default_cfg": 2.0, "default_sampler": "dpmpp_2m"}]})
        clients = [threading.Thread(target=admit, args=(k,)) for k in range(4)]
        for t in clients:
            t.start()
        time.sleep(0.7)
        kill(server)
        stop_flag.set()
        for t in clients:
            t.join()
        books_agree(db)
        server = start(env, port)
        for ik in sent:  # the clients retry: each key is one job, however often it is sent
            r = httpx.post(f"{base}/api/jobs", headers={**h, "Idempotency-Key": ik},
                           json={"prompt": "a ring", "steps": 2}, timeout=30)
            assert r.status_code in (200, 201), r.text
        with db.session() as s:
            n_jobs = s.scalar(select(func.count()).select_from(Job))
        assert n_jobs == len(set(sent)) and n_jobs > 0
        books_agree(db)

        # 2. Completion: a remote worker runs the jobs; the server is killed while they complete.
        wenv = env_for(tmp_path / "worker")
        worker = solvent("worker", "--server", base, "--token", token, "--poll", "0.1", env=wenv)
        deadline = time.time() + 120
        while time.time() < deadline:
            with db.session() as s:
                if s.scalar(select(func.count()).select_from(Job).where(Job.state == "succeeded")) >= 2:
                    break
            time.sleep(0.2)
        kill(server)
        books_agree(db)
        server = start(env, port)
        deadline = time.time() + 300
        while time.time() < deadline:
            with db.session() as s:
                if not s.scalar(select(func.count()).select_from(Job).where(Job.state.in_(("queued", "running")))):
                    break
            time.sleep(0.5)
        with db.session() as s:
            states = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        assert states == {"succeeded": n_jobs}, states  # none lost
        books_agree(db)  # … and each captured exactly once

        # 3. A Stripe webhook: the server is killed as the event arrives; Stripe delivers it again.
        event = {"id": "evt_fault", "type": "checkout.session.completed",
                 "data": {"object": {"client_reference_id": org, "metadata": {"credits": "500"}}}}
        payload = json.dumps(event).encode()
        headers = {"Stripe-Signature": sign(payload, SECRET), "Content-Type": "application/json"}
        hit = threading.Thread(target=lambda: _post_quietly(f"{base}/api/billing/stripe/webhook", payload, headers))
        hit.start()
        time.sleep(0.05)
        kill(server)
        hit.join()
        server = start(env, port)
        for _ in range(2):  # Stripe retries until it gets a 2xx; a replay must change nothing
            r = httpx.post(f"{base}/api/billing/stripe/webhook", content=payload,
                           headers={**headers, "Stripe-Signature": sign(payload, SECRET)}, timeout=30)
            assert r.status_code == 200, r.text
        with db.session() as s:
            purchases = s.scalars(select(CreditTxn).where(CreditTxn.kind == "purchase")).all()
        assert [p.amount_mc for p in purchases] == [500_000]
        books_agree(db)
        db.dispose()
    finally:
        if worker is not None:
            stop(worker)
        stop(server)


def _post_quietly(url: str, payload: bytes, headers: dict) -> None:
    try:
        httpx.post(url, content=payload, headers=headers, timeout=10)
    except httpx.TransportError:
        pass
