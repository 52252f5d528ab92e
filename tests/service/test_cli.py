"""`solvent db`, `keys` and `workers` commands against a real SQLite database."""

import os
import subprocess
import sys


def run(home, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLVENT_")}
    env.update(SOLVENT_HOME=str(home), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "solvent.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_db_keys_workers(tmp_path):
    home = tmp_path / "h"
    up = run(home, "db", "upgrade")
    assert up.returncode == 0 and "revision 0001" in up.stdout
    assert "no organisation yet" in run(home, "keys", "create").stdout
    from solvent.accounts import create_org
    from solvent.storage import Database

    db = Database(f"sqlite:///{home / 'solvent.db'}")
    org = create_org(db, "acme")
    db.dispose()
    made = run(home, "keys", "create", "--name", "ci", "--scopes", "read")
    assert made.returncode == 0, made.stderr
    key_id = made.stdout.split()[1]
    secret = made.stdout.split("secret (shown once): ")[1].strip()
    listed = run(home, "keys", "list").stdout
    assert key_id in listed and org.id in listed and "active" in listed and secret not in listed
    assert run(home, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in run(home, "keys", "list").stdout
    bad = run(home, "keys", "create", "--scopes", "root")
    assert bad.returncode == 2 and "`scopes`" in bad.stderr
    w = run(home, "workers", "create", "--name", "gpu1", "--provider", "lambda")
    assert "wt-solvent-" in w.stdout
    assert "gpu1" in run(home, "workers", "list").stdout
