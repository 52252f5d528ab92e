"""Service speed, as ratios against baselines measured in the same run.

    python benchmarks/service.py [--runs 5] [--admissions 300] [--skip-postgres]

(a) admission: authenticated job creations per second over HTTP (4 client threads), SQLite and
    PostgreSQL, against `solvent serve --no-worker` with a declared (idle) worker; each admission
    validates, checks the plan's limits, prices and reserves credits, and enqueues;
(b) end-to-end: one solvent-tiny image through HTTP, the queue and the in-process worker, vs a
    bare `Engine.generate` call with the same settings (median of --runs);
(c) throughput: 4 concurrent clients through the server, images per second, vs the bare engine
    run sequentially.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_ADMIN = os.environ.get("SOLVENT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BODY = {"prompt": "a small red circle at the top left on a blue background", "seed": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home: Path, *extra: str, db_url: str | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLVENT_")}
        env.update(SOLVENT_HOME=str(home), HF_HUB_OFFLINE="1", SOLVENT_MAX_QUEUED_PER_ORG="1000000",
                   SOLVENT_MAX_QUEUED_TOTAL="1000000")
        if db_url:
            env["SOLVENT_DATABASE_URL"] = db_url
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-m", "solvent.cli.main", "serve", "--port", str(self.port),
                                      *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        self.key = (home / "admin-key.txt").read_text().strip()
        self.headers = {"Authorization": f"Bearer {self.key}"}
        # Measure the queue and the credit reservation, not the plan's rate limits.
        subprocess.run([sys.executable, "-m", "solvent.cli.main", "plans", "set", "enterprise",
                        "concurrent_jobs=100000000", "rpm=100000000"], env=env, check=True, capture_output=True)

    def declare_idle_worker(self) -> None:
        out = subprocess.run([sys.executable, "-m", "solvent.cli.main", "workers", "create"], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        token = out.split("token (shown once): ")[1].split()[0]
        httpx.post(f"{self.base}/api/worker/hello", headers={"Authorization": f"Bearer {token}"},
                   json={"models": [{"id": "solvent-tiny", "family": "tiny", "native_resolution": 64,
                                     "default_steps": 20, "default_cfg": 4.0, "default_sampler": "dpmpp_2m"}]})

    def wait_ready(self) -> None:
        while httpx.get(f"{self.base}/readyz").status_code != 200:
            time.sleep(0.2)

    def run_job(self, client: httpx.Client) -> None:
        job = client.post(f"{self.base}/api/jobs", headers=self.headers, json=BODY).json()
        with client.stream("GET", f"{self.base}/api/jobs/{job['id']}/events", headers=self.headers,
                           timeout=300) as r:
            for line in r.iter_lines():
                if line.startswith("event: ") and line[7:] in ("result", "failed", "canceled"):
                    assert line[7:] == "result", line
                    return

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def admissions(server: Server, n: int, threads: int = 4) -> float:
    server.declare_idle_worker()
    per = n // threads

    def post() -> None:
        with httpx.Client() as c:
            for _ in range(per):
                r = c.post(f"{server.base}/api/jobs", headers=server.headers, json=BODY)
                assert r.status_code == 201, r.text

    post_warm = httpx.post(f"{server.base}/api/jobs", headers=server.headers, json=BODY)
    assert post_warm.status_code == 201, post_warm.text
    ts = [threading.Thread(target=post) for _ in range(threads)]
    t0 = time.perf_counter()
    [t.start() for t in ts]
    [t.join() for t in ts]
    return per * threads / (time.perf_counter() - t0)


def pg_url() -> tuple[str, callable]:
    from sqlalchemy import create_engine, text

    name = f"solvent_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, drop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--admissions", type=int, default=300)
    p.add_argument("--concurrent-jobs", type=int, default=12, help="jobs in (c), spread over 4 clients")
    p.add_argument("--skip-postgres", action="store_true")
    args = p.parse_args()

    from solvent.config import Settings
    from solvent.engine.device import quiet_libraries
    from solvent.generation import GenerationRequest
    from solvent.root import build_engine

    quiet_libraries()
    tmp = Path(tempfile.mkdtemp(prefix="solvent-bench-"))

    # (a) admission throughput
    rates = {}
    s = Server(tmp / "a-sqlite", "--no-worker")
    try:
        rates["sqlite"] = admissions(s, args.admissions)
    finally:
        s.close()
    if not args.skip_postgres:
        url, drop = pg_url()
        s = Server(tmp / "a-pg", "--no-worker", db_url=url)
        try:
            rates["postgresql"] = admissions(s, args.admissions)
        finally:
            s.close()
            drop()
    print("(a) admission, 4 client threads over HTTP:")
    for k, v in rates.items():
        print(f"    {k:<11} {v:8.1f} jobs/s")

    # (b) end-to-end overhead and (c) concurrent throughput
    engine = build_engine(Settings(home=tmp / "bare"))
    req = GenerationRequest(prompt=BODY["prompt"], seed=BODY["seed"])
    engine.generate(req)
    server = Server(tmp / "e2e")
    try:
        server.wait_ready()
        with httpx.Client() as c:
            server.run_job(c)  # warm-up: loads the model in the server
            bare, served = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                engine.generate(req)
                bare.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                server.run_job(c)
                served.append(time.perf_counter() - t0)
        b, sv = statistics.median(bare), statistics.median(served)
        print(f"(b) one solvent-tiny image, median of {args.runs}: bare engine {b:.3f} s, through HTTP + queue "
              f"{sv:.3f} s, ratio {sv / b:.3f}")

        n = args.concurrent_jobs
        t0 = time.perf_counter()
        for _ in range(n):
            engine.generate(req)
        bare_ips = n / (time.perf_counter() - t0)

        def client(k: int) -> None:
            with httpx.Client() as c:
                for _ in range(k):
                    server.run_job(c)

        ts = [threading.Thread(target=client, args=(n // 4,)) for _ in range(4)]
        t0 = time.perf_counter()
        [t.start() for t in ts]
        [t.join() for t in ts]
        served_ips = (n // 4 * 4) / (time.perf_counter() - t0)
        print(f"(c) {n} images, 4 concurrent clients vs sequential bare engine: {served_ips:.3f} vs "
              f"{bare_ips:.3f} images/s, ratio {served_ips / bare_ips:.3f}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
