"""Start-up time and memory of an API-only server (`solvent serve --no-worker`), and what one admission loads.

Runs the real command in a fresh home, times it until `/healthz` answers, reads its resident memory
(VmRSS) after start and after admitting one job (a worker declares `solvent-tiny` over the worker API,
so admission runs in full: prompt tokens counted, credits reserved), and reports whether torch was
mapped into the process. Medians of `--runs` starts.

    python benchmarks/startup.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _torch_mapped(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def one_run() -> dict:
    home = Path(tempfile.mkdtemp(prefix="solvent-startup-"))
    env = {**os.environ, "SOLVENT_HOME": str(home), "SOLVENT_DB_URL": f"sqlite:///{home / 'db.sqlite'}"}
    # The worker token is made before the server starts (its own short process; not timed).
    out = subprocess.run([sys.executable, "-m", "solvent.cli.main", "workers", "create", "--name", "bench"],
                         env=env, capture_output=True, text=True, check=True).stdout
    token = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("token"))
    port = _port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "solvent.cli.main", "serve", "--no-worker", "--no-studio",
                             "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.perf_counter() - started > 120:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        start_s = time.perf_counter() - started
        rss_start = _rss_mb(proc.pid)
        worker = {"Authorization": f"Bearer {token}"}
        model = {"id": "solvent-tiny", "family": "tiny", "native_resolution": 64, "default_steps": 20}
        httpx.post(f"{base}/api/worker/hello", json={"name": "bench", "models": [model]}, headers=worker,
                   timeout=30).raise_for_status()
        key = (home / "admin-key.txt").read_text().strip()
        r = httpx.post(f"{base}/api/jobs", json={"prompt": "a red circle on a blue background", "model": "solvent-tiny"},
                       headers={"Authorization": f"Bearer {key}"}, timeout=60)
        if r.status_code not in (200, 201, 202):
            raise RuntimeError(f"admission answered {r.status_code}: {r.text[:300]}")
        return {"start_s": start_s, "rss_start_mb": rss_start, "rss_admit_mb": _rss_mb(proc.pid),
                "torch": _torch_mapped(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="server starts to take the median of")
    args = ap.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in ("start_s", "rss_start_mb", "rss_admit_mb")}
    print(f"solvent serve --no-worker, {args.runs} runs (medians)")
    print(f"  start-up to /healthz: {med['start_s']:.2f} s")
    print(f"  RSS after start:      {med['rss_start_mb']:.0f} MB")
    print(f"  RSS after 1 admission:{med['rss_admit_mb']:.0f} MB")
    print(f"  torch loaded:         {', '.join('yes' if r['torch'] else 'no' for r in runs)}")


if __name__ == "__main__":
    main()
