"""`solvent orgs`, `solvent plans`, `solvent credits`, `solvent grants`: accounts and money from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from .common import open_services as _services
from .common import parse_when as _when


def cmd_orgs_create(args: argparse.Namespace) -> int:
    from ..accounts import create_key, create_org

    services = _services()
    org = create_org(services.db, args.name, args.plan or services.settings.default_plan)
    print(f"organisation {org.id} ({org.name}) on plan {org.plan_id}")
    if args.key:
        key, secret = create_key(services.db, org.id, "default", ("generate", "read", "admin"))
        print(f"admin key {key.id}; secret (shown once): {secret}")
    return 0


def cmd_orgs_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from ..money import fmt_credits
    from ..storage.models import Organisation

    services = _services()
    with services.db.session() as s:
        orgs = s.scalars(select(Organisation).order_by(Organisation.created_at)).all()
    print(f"{'ID':<28} {'NAME':<20} {'PLAN':<13} {'AVAILABLE':>14} {'HELD':>10}")
    for o in orgs:
        b = services.billing.ledger.balance(o.id)
        print(f"{o.id:<28} {o.name[:20]:<20} {o.plan_id:<13} {b['available']:>14} {fmt_credits(b['held_mc']):>10}")
    return 0


def cmd_orgs_set_plan(args: argparse.Namespace) -> int:
    from ..billing.plans import set_org_plan

    out = set_org_plan(_services().db, args.org, args.plan)
    print(f"{out['org_id']}: plan {out['previous']} → {out['plan']}")
    return 0


def cmd_plans_list(args: argparse.Namespace) -> int:
    from ..billing import list_plans
    from ..money import fmt_credits

    plans = list_plans(_services().db)
    if args.json:
        print(json.dumps([p.to_dict() for p in plans], indent=2))
        return 0
    print(f"{'ID':<13} {'PRICE':>10} {'PER':<6} {'INCLUDED':>12} {'QUOTA/DAY':>9} {'COMM':<5} {'PRIO':>4} "
          f"{'CONC':>4} {'RPM':>5} {'MAX PX':>9} {'STEPS':>5}")
    for p in plans:
        price = "custom" if p.price_micros is None else f"${p.price_micros / 1e6:,.2f}"
        print(f"{p.id:<13} {price:>10} {p.period:<6} {fmt_credits(p.included_mc):>12} "
              f"{p.daily_images if p.daily_images is not None else '-':>9} {'yes' if p.commercial else 'no':<5} "
              f"{p.priority:>4} {p.concurrent_jobs:>4} {p.rpm:>5} {p.max_pixels:>9} {p.max_steps:>5}")
    return 0


def cmd_plans_set(args: argparse.Namespace) -> int:
    from ..billing import set_plan
    from ..errors import ValidationFailed

    fields = {}
    for item in args.fields:
        k, sep, v = item.partition("=")
        if not sep:
            raise ValidationFailed(f"expected FIELD=VALUE but got {item!r}.", field="fields", value=item)
        try:
            fields[k] = json.loads(v)
        except json.JSONDecodeError:
            fields[k] = v  # a bare string (e.g. name=Team)
    p = set_plan(_services().db, args.plan, create=args.create, **fields)
    print(json.dumps(p.to_dict(), indent=2))
    return 0


def _mc(credits: str) -> int:
    from ..money import parse_credits

    return parse_credits(credits)


def cmd_credits_balance(args: argparse.Namespace) -> int:
    print(json.dumps(_services().billing.ledger.balance(args.org), indent=2))
    return 0


def cmd_credits_adjust(args: argparse.Namespace) -> int:
    services = _services()
    txn, created = services.billing.ledger.adjust(args.org, _mc(args.credits),
                                                  f"cli:{args.idempotency_key or uuid.uuid4().hex}", args.memo,
                                                  actor="cli")
    print(f"{'adjusted' if created else 'already applied'}: {txn.id}; available "
          f"{services.billing.ledger.balance(args.org)['available']} credits")
    return 0


def cmd_credits_grant(args: argparse.Namespace) -> int:
    services = _services()
    from ..errors import ValidationFailed

    gpu = args.credits.lower().endswith("h")
    try:
        hours = float(args.credits[:-1]) if gpu else None
    except ValueError as e:
        raise ValidationFailed(f"`credits` {args.credits!r} is not a number of GPU-hours.", field="credits") from e
    g = services.billing.ledger.grant(
        args.org, None if gpu else _mc(args.credits), gpu_hours=hours,
        purpose=args.purpose, starts_at=_when(args.starts), expires_at=_when(args.expires),
        daily_cap_mc=_mc(args.daily_cap) if args.daily_cap else None,
        key=f"cli-grant:{args.idempotency_key}" if args.idempotency_key else None, actor="cli")
    print(f"grant {g.id}: {args.credits}{'' if gpu else ' credits'} to {args.org} ({args.purpose}); available "
          f"{services.billing.ledger.balance(args.org)['available']} credits")
    return 0


def cmd_credits_statement(args: argparse.Namespace) -> int:
    rows = _services().billing.ledger.statement(args.org, _when(args.since))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    from ..billing.credits import statement_csv

    sys.stdout.write(statement_csv(rows))
    return 0


def cmd_credits_refund(args: argparse.Namespace) -> int:
    txn = _services().billing.ledger.refund(args.org, args.job, actor="cli", memo=args.memo)
    print(f"refunded job {args.job}: {txn.id}")
    return 0


def cmd_grants_list(args: argparse.Namespace) -> int:
    print(json.dumps(_services().billing.ledger.grants(args.org), indent=2))
    return 0


def cmd_grants_revoke(args: argparse.Namespace) -> int:
    g = _services().billing.ledger.revoke_grant(args.org, args.grant, actor="cli")
    print(f"revoked grant {g.id} at {g.revoked_at.isoformat()}")
    return 0


def cmd_users_create(args: argparse.Namespace) -> int:
    import getpass

    from ..accounts import create_user

    services = _services()
    password = args.password or getpass.getpass("password (10+ characters): ")
    user, org_id = create_user(services.db, args.email, password, args.name or "", args.org_name,
                               args.plan or services.settings.default_plan, operator=args.operator, actor="cli")
    print(f"user {user.id} ({user.email}) owns organisation {org_id}" + (" [operator]" if args.operator else ""))
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from ..storage.models import Membership, User

    with _services().db.session() as s:
        users = s.scalars(select(User).order_by(User.created_at)).all()
        print(f"{'ID':<28} {'EMAIL':<32} {'OPERATOR':<8} ORGANISATIONS (ROLE)")
        for u in users:
            ms = s.scalars(select(Membership).where(Membership.user_id == u.id)).all()
            orgs = ", ".join(f"{m.org_id} ({m.role})" for m in ms)
            print(f"{u.id:<28} {u.email[:32]:<32} {'yes' if u.operator else 'no':<8} {orgs}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from ..accounts import audit_log

    for e in reversed(audit_log(_services().db, args.org, args.limit)):
        print(f"{e['at']}  {e['actor']:<34} {e['action']:<22} {e['org_id'] or '-':<28} {e['target']}  "
              f"{json.dumps(e['details']) if e['details'] else ''}")
    return 0


def add_parsers(sub) -> None:
    u = sub.add_parser("users", help="studio users", description="Create and list users (email + password).")
    usub = u.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    uc = usub.add_parser("create", help="create a user who owns a new organisation")
    uc.add_argument("email")
    uc.add_argument("--password", help="(default: asked for, not echoed)")
    uc.add_argument("--name")
    uc.add_argument("--org-name")
    uc.add_argument("--plan")
    uc.add_argument("--operator", action="store_true", help="may administer the platform")
    uc.set_defaults(func=cmd_users_create)
    usub.add_parser("list", help="users and their organisations").set_defaults(func=cmd_users_list)

    a = sub.add_parser("audit", help="the audit log", description="Account and admin actions, oldest first.")
    a.add_argument("--org", help="one organisation (default: all)")
    a.add_argument("--limit", type=int, default=200)
    a.set_defaults(func=cmd_audit)

    o = sub.add_parser("orgs", help="organisations", description="Create and list organisations; change plans.")
    osub = o.add_subparsers(dest="orgs_command", metavar="ACTION", required=True)
    oc = osub.add_parser("create", help="create an organisation")
    oc.add_argument("name")
    oc.add_argument("--plan", help="plan id (default: SOLVENT_DEFAULT_PLAN, community)")
    oc.add_argument("--key", action="store_true", help="also create an admin API key (shown once)")
    oc.set_defaults(func=cmd_orgs_create)
    osub.add_parser("list", help="organisations with plan and balance").set_defaults(func=cmd_orgs_list)
    op = osub.add_parser("set-plan", help="move an organisation to another plan")
    op.add_argument("org")
    op.add_argument("plan")
    op.set_defaults(func=cmd_orgs_set_plan)

    p = sub.add_parser("plans", help="plans", description="List and configure plans.")
    psub = p.add_subparsers(dest="plans_command", metavar="ACTION", required=True)
    pl = psub.add_parser("list", help="plans and their limits")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_plans_list)
    ps = psub.add_parser("set", help="change plan fields: solvent plans set community daily_images=50 rpm=20")
    ps.add_argument("plan")
    ps.add_argument("fields", nargs="+", metavar="FIELD=VALUE", help="values are JSON (null, true, 5, [\"m\"])")
    ps.add_argument("--create", action="store_true", help="create the plan if it does not exist")
    ps.set_defaults(func=cmd_plans_set)

    c = sub.add_parser("credits", help="balances, top-ups, grants and statements",
                       description="Credits: 1 credit = $0.01 list price; amounts accept 3 decimals.")
    csub = c.add_subparsers(dest="credits_command", metavar="ACTION", required=True)
    cb = csub.add_parser("balance", help="available and held credits of an organisation")
    cb.add_argument("org")
    cb.set_defaults(func=cmd_credits_balance)
    ca = csub.add_parser("adjust", help="add (or, negative, remove) paid credits: a manual top-up")
    ca.add_argument("org")
    ca.add_argument("credits")
    ca.add_argument("--memo", default="manual top-up")
    ca.add_argument("--idempotency-key", help="repeat-safe key (default: a new one)")
    ca.set_defaults(func=cmd_credits_adjust)
    cg = csub.add_parser("grant", help="grant compute: credits consumed before paid ones, reported as given away")
    cg.add_argument("org")
    cg.add_argument("credits", help="credits, or GPU-hours with an h suffix (e.g. 10h)")
    cg.add_argument("--purpose", required=True, help="why (research, partner, free tier …)")
    cg.add_argument("--starts", help="ISO time (default now)")
    cg.add_argument("--expires", help="ISO time (default never)")
    cg.add_argument("--daily-cap", help="credits the grant may pay per UTC day")
    cg.add_argument("--idempotency-key")
    cg.set_defaults(func=cmd_credits_grant)
    cs = csub.add_parser("statement", help="every transaction of an organisation (CSV or JSON)")
    cs.add_argument("org")
    cs.add_argument("--since", help="ISO time")
    cs.add_argument("--format", choices=("csv", "json"), default="csv")
    cs.set_defaults(func=cmd_credits_statement)
    cr = csub.add_parser("refund", help="give back what a job was charged")
    cr.add_argument("org")
    cr.add_argument("job")
    cr.add_argument("--memo", default="")
    cr.set_defaults(func=cmd_credits_refund)

    g = sub.add_parser("grants", help="compute grants", description="List and revoke compute grants.")
    gsub = g.add_subparsers(dest="grants_command", metavar="ACTION", required=True)
    gl = gsub.add_parser("list", help="grants of an organisation")
    gl.add_argument("org")
    gl.set_defaults(func=cmd_grants_list)
    gr = gsub.add_parser("revoke", help="revoke a grant (what is left of it expires)")
    gr.add_argument("org")
    gr.add_argument("grant")
    gr.set_defaults(func=cmd_grants_revoke)
