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
    assert up.returncode == 0 and "revision 0010" in up.stdout
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


def test_orgs_plans_credits_grants_users_audit(tmp_path):
    home = tmp_path / "h"
    made = run(home, "orgs", "create", "acme", "--plan", "payg", "--key")
    assert made.returncode == 0, made.stderr
    org = made.stdout.split()[1]
    assert "sk-solvent-" in made.stdout
    assert run(home, "credits", "adjust", org, "12.5", "--idempotency-key", "t1").returncode == 0
    again = run(home, "credits", "adjust", org, "12.5", "--idempotency-key", "t1")
    assert "already applied" in again.stdout and "12.500" in again.stdout  # a retried top-up adds nothing
    g = run(home, "credits", "grant", org, "100", "--purpose", "research", "--expires", "2099-01-01")
    assert g.returncode == 0 and "112.500" in g.stdout
    grant_id = g.stdout.split()[1].rstrip(":")
    bad = run(home, "credits", "adjust", org, "-50")
    assert bad.returncode == 2 and "below zero" in bad.stderr
    bad = run(home, "credits", "adjust", org, "1.0005")
    assert bad.returncode == 2 and "3 decimals" in bad.stderr
    statement = run(home, "credits", "statement", org).stdout.splitlines()
    assert statement[0].startswith("created_at,txn_id,kind,account,amount_mc") and len(statement) == 5
    assert run(home, "grants", "revoke", org, grant_id).returncode == 0
    assert '"available_mc": 12500' in run(home, "credits", "balance", org).stdout
    assert run(home, "plans", "set", "payg", "rpm=7", "allowed_models=[\"solvent-tiny\"]").returncode == 0
    plans = run(home, "plans", "list").stdout
    assert "payg" in plans and "  7 " in plans
    bad = run(home, "plans", "set", "payg", "rpm=-1")
    assert bad.returncode == 2 and "`rpm`" in bad.stderr
    assert run(home, "orgs", "set-plan", org, "professional").returncode == 0
    assert "professional" in run(home, "orgs", "list").stdout
    u = run(home, "users", "create", "ann@example.com", "--password", "correct horse battery")
    assert u.returncode == 0 and "ann@example.com" in run(home, "users", "list").stdout
    assert "user.created" in run(home, "audit").stdout


def test_migrations_build_exactly_the_models(db):
    """Alembic's autogenerate finds nothing to add, drop or alter after `upgrade head` (both databases)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from solvent.storage.models import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diff == [], diff


def test_worker_batch_flag_is_checked_and_documented(tmp_path):
    bad = run(tmp_path / "h", "worker", "--server", "http://127.0.0.1:9", "--token", "t", "--batch", "0")
    assert bad.returncode == 2 and "`--batch` must be a whole number from 1 to 16 but is '0'" in bad.stderr
    helped = run(tmp_path / "h", "serve", "--help")
    assert "--batch N" in helped.stdout and "one device call" in " ".join(helped.stdout.split())
