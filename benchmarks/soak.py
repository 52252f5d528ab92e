"""Soak: a bounded mixed load, honest and hostile, against `solvent serve` with its in-process worker.

    python benchmarks/soak.py [--seconds 60] [--clients 8]

Every client loops over a mix until the time is up: native job creation (2 steps, 64 px), A1111
txt2img (waits for the image), job and gallery listings, PNG-info, and the hostile requests of issue
#20 (oversized bodies, deep JSON, a decompression bomb, wrong passwords). It reports requests per
second, median and p99 latency per kind, how many answers were 429 and 5xx, and the server's resident
memory at the start (after a warm-up) and at the end, as a ratio (flat memory is the goal). Loopback
only; the run stops by itself.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service import Server  # noqa: E402  (same folder)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.service.test_hostile import bomb  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def small_png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def requests_mix(base: str, h: dict) -> list[tuple[str, dict]]:
    png = small_png()
    return [
        ("job", dict(method="POST", url=f"{base}/api/jobs", json={"prompt": "a red circle", "steps": 2})),
        ("a1111", dict(method="POST", url=f"{base}/sdapi/v1/txt2img",
                       json={"prompt": "a blue square", "steps": 2, "width": 64, "height": 64})),
        ("list", dict(method="GET", url=f"{base}/api/jobs?limit=20")),
        ("gallery", dict(method="GET", url=f"{base}/api/images?limit=24")),
        ("png-info", dict(method="POST", url=f"{base}/sdapi/v1/png-info", json={"image": png})),
        ("oversized", dict(method="POST", url=f"{base}/api/jobs", content=b"x" * (49 * 1024 * 1024),
                           headers={**h, "Content-Type": "application/json"})),
        ("deep-json", dict(method="POST", url=f"{base}/v1/images/generations", content="[" * 50_000 + "]" * 50_000,
                           headers={**h, "Content-Type": "application/json"})),
        ("bomb", dict(method="POST", url=f"{base}/sdapi/v1/img2img",
                      json={"prompt": "x", "init_images": [base64.b64encode(bomb()).decode()]})),
        ("bad-login", dict(method="POST", url=f"{base}/api/auth/login",
                           json={"email": "admin@solvent.localhost", "password": "not the password"})),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="how long the load runs (default 60)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="solvent-soak-"))
    server = Server(home)
    try:
        server.wait_ready()
        mix = requests_mix(server.base, server.headers)
        with httpx.Client(headers=server.headers, timeout=120) as c:  # warm-up: model loaded, first image made
            for _, req in mix[:2]:
                c.request(**req)
        start_rss = rss_mb(server.proc.pid)
        latencies: dict[str, list[float]] = defaultdict(list)
        codes: dict[int, int] = defaultdict(int)
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def client(offset: int) -> None:
            with httpx.Client(headers=server.headers, timeout=120) as c:
                i = offset
                while time.monotonic() < stop_at:
                    kind, req = mix[i % len(mix)]
                    i += 1
                    t0 = time.perf_counter()
                    try:
                        status = c.request(**req).status_code
                    except httpx.TransportError:
                        status = 599  # the server closed the connection (counted as a failure)
                    with lock:
                        latencies[kind].append(time.perf_counter() - t0)
                        codes[status] += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        end_rss = rss_mb(server.proc.pid)
        total = sum(codes.values())
        out = {
            "seconds": round(wall, 1), "clients": args.clients, "requests": total,
            "requests_per_second": round(total / wall, 1),
            "status_codes": dict(sorted(codes.items())),
            "429s": codes.get(429, 0), "5xx": sum(n for c, n in codes.items() if c >= 500),
            "rss_mb_start": round(start_rss, 1), "rss_mb_end": round(end_rss, 1),
            "rss_ratio_end_to_start": round(end_rss / start_rss, 3),
            "latency_ms": {k: {"n": len(v), "p50": round(1000 * statistics.median(v), 1),
                               "p99": round(1000 * sorted(v)[min(len(v) - 1, int(0.99 * len(v)))], 1)}
                           for k, v in sorted(latencies.items())},
        }
        print(json.dumps(out, indent=2))
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
