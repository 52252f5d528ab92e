"""The house's rules, checked: rooms import only what DESIGN.md allows, with no circles, and the processes
that do not generate never load torch (nor a remote worker the database side)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from benchmarks import imports

HEAVY = ("torch", "diffusers", "transformers")


def _run(code: str, tmp_path) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                            "SOLVENT_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_back_arrows_and_no_circles():
    assert imports.back_arrows() == []
    assert imports.circles() == []


def test_the_check_sees_a_back_arrow(monkeypatch):
    # The same graph with `api` no longer allowed to import `generation` must report those edges.
    table = {**imports.ALLOWED, "api": imports.ALLOWED["api"] - {"generation"}}
    monkeypatch.setattr(imports, "ALLOWED", table)
    assert any(line.startswith("api → generation") for line in imports.back_arrows())


def test_an_api_process_admits_a_job_without_torch(tmp_path):
    """The API, the ledger, billing and the CLI load, and a job is admitted in full (prompt tokens counted,
    credits reserved), and still no torch, diffusers or transformers is imported."""
    got = _run(f"""
        import json, sys
        from fastapi.testclient import TestClient
        import solvent.cli.main, solvent.cli.billing, solvent.cli.ledger, solvent.cli.server
        import solvent.ledger.reports, solvent.ledger.runway, solvent.ledger.focus, solvent.billing
        from solvent.accounts import create_key, create_user
        from solvent.config import Settings
        from solvent.jobs.registry import create_worker, declare
        from solvent.root import build_app, build_services

        services = build_services(Settings(home={str(tmp_path / "home")!r}))
        app = build_app(services, studio=True)
        worker, _ = create_worker(services.db, name="w")
        declare(services.db, worker.id, status="idle", models=[{{"id": "solvent-tiny", "family": "tiny"}}])
        _, org = create_user(services.db, "a@example.com", "a long password 1", "A", org_name="a",
                             plan_id="enterprise")
        services.billing.ledger.grant(org, 10_000_000, purpose="test", key="t")
        _, key = create_key(services.db, org, "k", ("generate", "read"))
        r = TestClient(app).post("/api/jobs", json={{"prompt": "a red circle (on blue:1.2)"}},
                                 headers={{"Authorization": "Bearer " + key}})
        too_long = TestClient(app).post("/api/jobs", json={{"prompt": "red " * 400}},
                                        headers={{"Authorization": "Bearer " + key}})
        print(json.dumps({{"status": r.status_code, "too_long": too_long.json(),
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """, tmp_path)
    assert got["status"] == 201, got
    assert got["too_long"]["error"]["field"] == "prompt" and "400 tokens" in got["too_long"]["error"]["message"]
    assert got["heavy"] == []


def test_solvent_serve_without_a_worker_never_maps_torch(tmp_path):
    """The real command, black-box: started, healthy, an admission refused for lack of a worker, and no
    torch library mapped into the process."""
    from pathlib import Path

    import httpx

    from tests.harness import env_for, free_port, solvent, stop, wait_http

    port = free_port()
    proc = solvent("serve", "--no-worker", "--no-studio", "--port", str(port), env=env_for(tmp_path / "home"))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        key = (tmp_path / "home" / "admin-key.txt").read_text().strip()
        r = httpx.post(f"http://127.0.0.1:{port}/api/jobs", json={"prompt": "a red circle"},
                       headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 404 and r.json()["error"]["field"] == "model"
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libtorch" not in maps and "torch/lib" not in maps
    finally:
        stop(proc)


def test_a_remote_worker_imports_no_database_code(tmp_path):
    got = _run("""
        import json, sys
        import solvent.cli.main, solvent.cli.server
        from solvent.root import build_remote_worker
        loop = build_remote_worker("http://127.0.0.1:9", "token")
        print(json.dumps({"sqlalchemy": "sqlalchemy" in sys.modules,
                          "models": [[m["id"], m.get("kind", "checkpoint")] for m in loop.decl["models"]]}))
        """, tmp_path)
    assert got == {"sqlalchemy": False, "models": [["solvent-tiny", "checkpoint"], ["lanczos", "upscaler"],
                                                   ["solvent-tiny-upscale", "upscaler"]]}
