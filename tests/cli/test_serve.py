"""Against live processes: `solvent serve` on a random port, remote `solvent worker`s, SIGKILL mid-job."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import func, select

from solvent.storage import Database, Image
from tests.conftest import _pg_database
from tests.harness import env_for, free_port, solvent, stop, wait_http, wait_job


def test_serve_on_a_fresh_home_and_the_readme_curl(tmp_path):
    home = tmp_path / "fresh"
    port = free_port()
    server = solvent("serve", "--port", str(port), env=env_for(home))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        key_file = home / "admin-key.txt"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        wait_http(f"{base}/readyz")
        # The README's first-image command, run by the real curl.
        out = subprocess.run(
            ["curl", "-s", "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
             "-d", '{"prompt": "a red circle on a blue background"}', f"{base}/api/jobs"],
            capture_output=True, text=True, timeout=30, check=True)
        job = json.loads(out.stdout)
        done = wait_job(base, key, job["id"])
        assert done["state"] == "succeeded"
        png = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {key}", f"{base}{done['images'][0]['url']}"],
                             capture_output=True, timeout=30, check=True).stdout
        assert png.startswith(b"\x89PNG")
        assert httpx.get(f"{base}/docs").status_code == 200
    finally:
        log = stop(server)
    assert "admin API key (shown once" in log and key in log


def test_remote_worker_killed_mid_job_loses_nothing(tmp_path):
    url, drop = _pg_database()
    try:
        env = env_for(tmp_path / "server", SOLVENT_DATABASE_URL=url, SOLVENT_LEASE_SECONDS="3")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = solvent("serve", "--port", str(port), "--no-worker", env=env)
        workers: list[subprocess.Popen] = []
        try:
            wait_http(f"{base}/healthz")
            key = (tmp_path / "server" / "admin-key.txt").read_text().strip()
            tokens = []
            for name, rate in (("a", []), ("b", ["--usd-per-hour", "2.50"])):  # b's rate: the operator's, by token
                out = subprocess.run([sys.executable, "-m", "solvent.cli.main", "workers", "create", "--name", name,
                                      *rate], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
                tokens.append(out.split("token (shown once): ")[1].split()[0])
            wenv = env_for(tmp_path / "worker", SOLVENT_LEASE_SECONDS="3")
            a = solvent("worker", "--server", base, "--token", tokens[0], "--provider", "aws",
                        "--instance-type", "g5.xlarge", "--poll", "0.1", env=wenv, start_new_session=True)
            workers.append(a)
            wait_http(f"{base}/readyz", timeout=90)  # 503 until the worker has checked in
            h = {"Authorization": f"Bearer {key}"}
            job = httpx.post(f"{base}/api/jobs", headers=h, json={"prompt": "a ring", "steps": 150, "seed": 1},
                             timeout=30).json()
            wait_job(base, key, job["id"], states=("running",), timeout=90)
            time.sleep(1.0)
            os.killpg(a.pid, signal.SIGKILL)  # the worker vanishes mid-job
            a.wait()
            b = solvent("worker", "--server", base, "--token", tokens[1], "--poll", "0.1", "--provider", "lambda",
                        "--instance-type", "gpu_1x_a10", "--usd-per-hour", "99", env=wenv)  # asks; not applied
            workers.append(b)
            done = wait_job(base, key, job["id"], timeout=240)
            assert done["state"] == "succeeded", done
            assert done["attempts"] == 2 and len(done["images"]) == 1
            db = Database(url)
            with db.session() as s:
                assert s.scalar(select(func.count()).select_from(Image).where(Image.job_id == job["id"])) == 1
            db.dispose()
            listed = subprocess.run([sys.executable, "-m", "solvent.cli.main", "workers", "list"], env=env,
                                    capture_output=True, text=True, timeout=60).stdout
            assert "aws" in listed
            # The compute ledger priced the finished job at the operator's rate for worker b (not the $99 it
            # asked for), and both workers' uptime.
            r = httpx.get(f"{base}/api/admin/ledger/report", params={"by": "provider"}, headers=h, timeout=30).json()
            lines = {ln["key"]: ln for ln in r["lines"]}
            lam = lines["lambda"]
            assert lam["jobs"] == 1 and lam["images"] == 1 and lam["device_ms"] > 0
            assert lam["cost_micros"] == (lam["device_ms"] * 2_500_000 + 1_800_000) // 3_600_000
            assert lam["uptime_ms"] >= lam["device_ms"] and lines["aws"]["uptime_ms"] > 0
            text = subprocess.run([sys.executable, "-m", "solvent.cli.main", "ledger", "report", "--by", "worker"],
                                  env=env, capture_output=True, text=True, timeout=60, check=True).stdout
            assert "Compute ledger" in text and "total" in text
        finally:
            for w in workers:
                stop(w)
            stop(server)
    finally:
        drop()


@pytest.mark.parametrize("signame", ["SIGTERM"])
def test_a_stopping_worker_finishes_its_job(tmp_path, signame):
    home = tmp_path / "h"
    port = free_port()
    env = env_for(home)
    server = solvent("serve", "--port", str(port), "--no-worker", env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        key = (home / "admin-key.txt").read_text().strip()
        out = subprocess.run([sys.executable, "-m", "solvent.cli.main", "workers", "create"], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        token = out.split("token (shown once): ")[1].split()[0]
        w = solvent("worker", "--server", base, "--token", token, "--poll", "0.1", env=env_for(tmp_path / "w"))
        wait_http(f"{base}/readyz", timeout=90)
        job = httpx.post(f"{base}/api/jobs", headers={"Authorization": f"Bearer {key}"},
                         json={"prompt": "x", "steps": 60}).json()
        wait_job(base, key, job["id"], states=("running",), timeout=90)
        w.send_signal(getattr(signal, signame))
        assert w.wait(timeout=120) == 0
        assert wait_job(base, key, job["id"], timeout=10)["state"] == "succeeded"
        assert "stopped after 1 job" in w.stdout.read()
    finally:
        stop(server)
