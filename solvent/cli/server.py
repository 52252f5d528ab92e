"""`solvent serve`, `solvent worker`, `solvent workers`, `solvent keys`, `solvent db`."""

from __future__ import annotations

import argparse
import os
import signal

from ..config import get_settings
from .common import open_services as _services


def _placement(args: argparse.Namespace, name: str = ""):
    from ..root import Placement

    return Placement(provider=args.provider, region=args.region, instance_type=args.instance_type,
                     name=name or getattr(args, "name", None) or "", commitment=args.commitment,
                     usd_per_hour=args.usd_per_hour)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..root import ADMIN_EMAIL, bootstrap_admin, build_server

    settings = get_settings()
    args.host = args.host or settings.host
    settings.host = args.host  # the "auto" defences (docs, metrics, sign-up verification) follow the bind address
    server = build_server(settings, worker=not args.no_worker, studio=not args.no_studio,
                          placement=_placement(args, "in-process"), batch=args.batch)
    created = bootstrap_admin(server.services)
    server.start_worker()
    url = f"http://{args.host}:{args.port}"
    print(f"Solvent is serving on {url}  (API docs: {url}/docs)")
    print(f"home: {settings.home}   database: {settings.db_url.split('@')[-1]}")
    if created:
        secret, password = created
        print(f"studio: {url}/  sign in as {ADMIN_EMAIL} with password {password}\n"
              f"  (shown once; also in {settings.home / 'admin-password.txt'}, mode 600)")
        print(f"admin API key (shown once; also in {settings.home / 'admin-key.txt'}, mode 600):\n  {secret}")
    else:
        print(f"studio: {url}/  (admin sign-in in {settings.home / 'admin-password.txt'})")
        print(f"admin API key: in {settings.home / 'admin-key.txt'} (or `solvent keys create`)")
    print(f"first image:\n  curl -s -H \"Authorization: Bearer $(cat {settings.home / 'admin-key.txt'})\" "
          f"-H 'Content-Type: application/json' -d '{{\"prompt\": \"a red circle on a blue background\"}}' "
          f"{url}/api/jobs", flush=True)
    http = uvicorn.Server(uvicorn.Config(server.app, host=args.host, port=args.port, log_level=args.log_level))
    try:
        http.run()
    finally:
        server.stop(grace=args.grace)  # the running job finishes, or is handed back to the queue
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from ..root import build_remote_worker

    token = args.token or os.environ.get("SOLVENT_WORKER_TOKEN")
    if not token:
        print("error: `--token` (or SOLVENT_WORKER_TOKEN) is required; create one with `solvent workers create`.")
        return 2
    loop = build_remote_worker(args.server, token, get_settings(), _placement(args), batch=args.batch, poll=args.poll)
    decl, engine = loop.decl, loop.engine
    signals = {"n": 0}

    def on_signal(signum, _frame):
        signals["n"] += 1
        if signals["n"] == 1:
            print("stopping after the current job (signal again to hand it back now)", flush=True)
            loop.stop()
        else:
            loop.abort()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"worker {decl['name']} on {engine.device} serving {', '.join(m['id'] for m in decl['models'])} "
          f"for {args.server}", flush=True)
    loop.run()
    print(f"worker stopped after {loop.jobs_done} job(s)")
    return 0




def cmd_workers_create(args: argparse.Namespace) -> int:
    from ..jobs.registry import create_worker
    from ..ledger.catalog import set_worker_rate

    services = _services()
    w, token = create_worker(services.db, name=args.name or "", provider=args.provider)
    if args.usd_per_hour:
        set_worker_rate(services.db, w.id, args.usd_per_hour, actor="cli", source="set by the operator")
    print(f"worker {w.id}\ntoken (shown once): {token}\nrun: solvent worker --server URL --token {token}")
    return 0


def cmd_workers_approve_rate(args: argparse.Namespace) -> int:
    from ..ledger.catalog import approve_worker_rate
    from ..money import fmt_usd

    p = approve_worker_rate(_services().db, args.worker, actor="cli")
    print(f"worker {args.worker} is now priced at ${fmt_usd(p.micros_per_hour, 4)}/h ({p.source})")
    return 0


def cmd_workers_list(args: argparse.Namespace) -> int:
    from ..jobs.registry import all_workers

    print(f"{'ID':<28} {'NAME':<16} {'PROVIDER':<10} {'STATUS':<8} LAST HEARTBEAT")
    for w in all_workers(_services().db):
        seen = w.last_heartbeat_at.isoformat(timespec="seconds") if w.last_heartbeat_at else "never"
        print(f"{w.id:<28} {w.name[:16]:<16} {w.provider:<10} {w.status:<8} {seen}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from ..accounts import create_key
    from ..storage.models import Organisation

    services = _services()
    org_id = args.org
    if org_id is None:
        with services.db.session() as s:
            org = s.scalar(select(Organisation).order_by(Organisation.created_at))
        if org is None:
            print("error: no organisation yet; run `solvent serve` once or pass --org")
            return 2
        org_id = org.id
    from datetime import UTC, datetime

    expires = datetime.fromisoformat(args.expires) if args.expires else None
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    caps = {k: getattr(args, k) for k in ("credit_cap_mc", "max_pixels", "max_steps", "rpm", "concurrent_jobs")}
    key, secret = create_key(services.db, org_id, args.name or "", tuple(args.scopes.split(",")), expires,
                             cap_period=args.cap_period, **caps)
    print(f"key {key.id} for {org_id} with scopes {','.join(key.scopes)}\nsecret (shown once): {secret}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from ..accounts import rotate_key

    key, secret = rotate_key(_services().db, args.key_id, grace_seconds=args.grace)
    print(f"key {key.id} replaces {args.key_id}" + (f" (which stops in {args.grace} s)" if args.grace else
                                                     " (revoked now)") + f"\nsecret (shown once): {secret}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from ..accounts import list_keys

    print(f"{'ID':<28} {'PREFIX':<20} {'ORG':<28} {'SCOPES':<22} STATE")
    for k in list_keys(_services().db, args.org):
        print(f"{k.id:<28} {k.prefix + '…':<20} {k.org_id:<28} {','.join(k.scopes):<22} "
              f"{'revoked' if k.revoked_at else 'active'}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from ..accounts import revoke_key

    k = revoke_key(_services().db, args.key_id)
    print(f"revoked {k.id} ({k.prefix}…)")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from ..storage import Database
    from ..storage.migrate import current

    settings = get_settings()
    db = Database(settings.db_url)
    db.create_all()
    from ..billing import ensure_plans

    ensure_plans(db)
    print(f"database at revision {current(db)}: {settings.db_url.split('@')[-1]}")
    return 0


def _pricing_args(p) -> None:
    from ..ledger.catalog import COMMITMENTS

    p.add_argument("--commitment", default="on_demand", choices=COMMITMENTS,
                   help="how this machine is paid for; with --provider and --instance-type it picks the catalog price")
    p.add_argument("--usd-per-hour", help="this worker's own rate in USD/hour (overrides the catalog)")
    p.add_argument("--batch", type=_batch, default=1, metavar="N",
                   help="run up to N queued text-to-image jobs with the same model, size, steps, CFG, sampler and "
                        "LoRAs in one device call; they share its cost by their share of the work (default 1)")


def _batch(value: str) -> int:
    import argparse

    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 16:
        raise argparse.ArgumentTypeError(f"`--batch` must be a whole number from 1 to 16 but is {value!r}")
    return n


def add_parsers(sub) -> None:
    s = sub.add_parser("serve", help="run the API and an in-process worker", description="Run Solvent's server.")
    s.add_argument("--host", default=None, help="interface to listen on (default SOLVENT_HOST, else 127.0.0.1); "
                   "beyond loopback, /docs and /metrics need a token and sign-ups a verified e-mail by default")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--no-worker", action="store_true", help="API only; workers join with `solvent worker`")
    s.add_argument("--no-studio", action="store_true", help="API only: do not serve the web studio at /")
    s.add_argument("--provider", default="local", help="where the in-process worker runs (for the ledger)")
    s.add_argument("--region", default="")
    s.add_argument("--instance-type", default="")
    _pricing_args(s)
    s.add_argument("--grace", type=float, default=30, help="seconds a running job may finish on shutdown")
    s.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="run a worker that joins a server over HTTP",
                       description="Run a worker on this machine for a Solvent server.")
    w.add_argument("--server", required=True, help="server URL, e.g. http://10.0.0.5:8000")
    w.add_argument("--token", help="worker token from `solvent workers create` (or SOLVENT_WORKER_TOKEN)")
    w.add_argument("--provider", default="local", help="aws, gcp, coreweave, lambda, azure, onprem, …")
    w.add_argument("--region", default="")
    w.add_argument("--instance-type", default="", help="e.g. g5.xlarge")
    _pricing_args(w)
    w.add_argument("--name", help="worker name (default: host name)")
    w.add_argument("--poll", type=float, default=0.5, help="seconds between polls when idle")
    w.set_defaults(func=cmd_worker)

    ws = sub.add_parser("workers", help="worker tokens", description="Create and list worker tokens.")
    wsub = ws.add_subparsers(dest="workers_command", metavar="ACTION", required=True)
    wc = wsub.add_parser("create", help="create a worker token")
    wc.add_argument("--name")
    wc.add_argument("--provider", default="local")
    wc.add_argument("--usd-per-hour", help="the rate the operator pays for this worker (a remote worker's own "
                    "--usd-per-hour is only a request; see `approve-rate`)")
    wc.set_defaults(func=cmd_workers_create)
    wa = wsub.add_parser("approve-rate", help="apply the USD/hour rate a remote worker asked for")
    wa.add_argument("worker", help="worker id")
    wa.set_defaults(func=cmd_workers_approve_rate)
    wsub.add_parser("list", help="registered workers").set_defaults(func=cmd_workers_list)

    k = sub.add_parser("keys", help="API keys", description="Create, list and revoke API keys.")
    ksub = k.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    kc = ksub.add_parser("create", help="create a key (the secret is shown once)")
    kc.add_argument("--org", help="organisation id (default: the first)")
    kc.add_argument("--name")
    kc.add_argument("--scopes", default="generate,read", help="comma-separated: generate, read, admin, operator")
    kc.add_argument("--expires", help="ISO time after which the key stops working")
    kc.add_argument("--credit-cap-mc", type=int, help="milli-credits the key may spend per --cap-period")
    kc.add_argument("--cap-period", choices=("day", "month"), default="month")
    kc.add_argument("--max-pixels", type=int)
    kc.add_argument("--max-steps", type=int)
    kc.add_argument("--rpm", type=int, help="generation requests per minute")
    kc.add_argument("--concurrent-jobs", type=int)
    kc.set_defaults(func=cmd_keys_create)
    kro = ksub.add_parser("rotate", help="replace a key by a new one with the same scopes and caps")
    kro.add_argument("key_id")
    kro.add_argument("--grace", type=int, default=0, help="seconds the old key keeps working (default 0)")
    kro.set_defaults(func=cmd_keys_rotate)
    kl = ksub.add_parser("list", help="list keys (never their secrets)")
    kl.add_argument("--org")
    kl.set_defaults(func=cmd_keys_list)
    kr = ksub.add_parser("revoke", help="revoke a key")
    kr.add_argument("key_id")
    kr.set_defaults(func=cmd_keys_revoke)

    d = sub.add_parser("db", help="database migrations", description="Database migrations.")
    dsub = d.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    dsub.add_parser("upgrade", help="migrate to the newest schema").set_defaults(func=cmd_db_upgrade)
