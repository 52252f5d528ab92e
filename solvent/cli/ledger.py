"""`solvent prices` and `solvent ledger`: what GPUs cost, what jobs cost, and how long the money lasts."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from .common import open_services as _services
from .common import parse_when as _when


def cmd_prices_list(args: argparse.Namespace) -> int:
    from ..ledger.catalog import list_prices

    with _services().db.session() as s:
        rows = [p for p in list_prices(s) if not args.provider or p.provider == args.provider]
    if args.json:
        print(json.dumps([p.to_dict() for p in rows], indent=2))
        return 0
    print(f"{'provider':<10} {'instance type':<26} {'commitment':<14} {'GPUs':>4} {'$/hour':>10} {'$/GPU-h':>9}  "
          "source")
    for p in rows:
        since = f"operator, from {p.effective_from:%Y-%m-%d %H:%M}" if p.effective_from else f"{p.source}, {p.as_of}"
        print(f"{p.provider:<10} {p.instance_type[:26]:<26} {p.commitment:<14} {p.gpus:>4} "
              f"{p.micros_per_hour / 1e6:>10.4f} {p.micros_per_gpu_hour / 1e6:>9.4f}  {since}")
    return 0


def cmd_prices_set(args: argparse.Namespace) -> int:
    from ..ledger.catalog import set_price

    p = set_price(_services().db, args.provider, args.instance_type, args.usd_per_hour, commitment=args.commitment,
                  gpus=args.gpus, source=args.source, effective_from=_when(args.effective_from))
    print(json.dumps(p.to_dict(), indent=2))
    return 0


def cmd_prices_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..ledger.catalog import import_prices

    added = import_prices(_services().db, Path(args.file).read_text())
    print(f"added {len(added)} price version(s) from {args.file}")
    return 0


def cmd_prices_onprem(args: argparse.Namespace) -> int:
    from ..ledger.catalog import OnPrem, set_price

    calc = OnPrem(capex_usd=args.capex, gpus=args.gpus, years=args.years, overhead=args.overhead,
                  utilisation=args.utilisation, kw_per_gpu=args.kw_per_gpu, pue=args.pue, usd_per_kwh=args.usd_per_kwh,
                  colocation_usd_per_gpu_hour=args.colocation)
    micros = calc.micros_per_gpu_hour()
    print(f"on-premises cost: ${micros / 1e6:.4f} per GPU-hour")
    if args.save:
        p = set_price(_services().db, "onprem", args.save, f"{micros / 1e6:.6f}", commitment="onprem",
                      source=f"on-premises amortisation ({vars(calc)})")
        print(f"saved as provider onprem, instance type {p.instance_type!r}: start workers with "
              f"--provider onprem --instance-type {p.instance_type} --commitment onprem")
    return 0


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    end = _when(args.until) or datetime.now(UTC)
    start = _when(args.since) or end - timedelta(days=args.days)
    return start, end


def cmd_ledger_report(args: argparse.Namespace) -> int:
    from ..ledger.reports import report

    start, end = _window(args)
    r = report(_services().db, start, end, args.by, org_id=args.org, share_idle=args.share_idle)
    if args.format == "json":
        print(json.dumps(r.to_dict(), indent=2))
    elif args.format == "csv":
        sys.stdout.write(r.csv())
    else:
        print(r.text())
    return 0


def cmd_ledger_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..ledger.plots import cost_revenue_chart, utilisation_chart
    from ..ledger.reports import report

    start, end = _window(args)
    if args.kind == "cost-revenue":
        chart = cost_revenue_chart(report(_services().db, start, end, args.by if args.by in ("day", "week", "month")
                                          else "day"))
    else:
        chart = utilisation_chart(report(_services().db, start, end, args.by if args.by in ("provider", "worker")
                                         else "provider"))
    out = Path(args.out)
    if out.suffix.lower() == ".png":
        out.write_bytes(chart.png())
    else:
        out.write_text(chart.svg())
    print(f"wrote {args.out}")
    return 0


def cmd_ledger_finances(args: argparse.Namespace) -> int:
    from ..ledger.runway import set_finances

    row = set_finances(_services().db, args.cash, args.payroll, args.rent, args.other, args.committed_cloud)
    print(f"recorded finances as of {row.as_of:%Y-%m-%d %H:%M} UTC; see `solvent ledger runway`.")
    return 0


def cmd_ledger_runway(args: argparse.Namespace) -> int:
    from ..ledger.runway import from_ledger

    r = from_ledger(_services().db, days=args.days)
    print(json.dumps(r.to_dict(), indent=2) if args.json else r.text())
    return 0


def cmd_ledger_scenario(args: argparse.Namespace) -> int:
    from decimal import Decimal, InvalidOperation

    from ..ledger.scenario import Levers, run

    try:
        levers = Levers(price_change_pct=Decimal(args.price_change), grants_cut_pct=Decimal(args.grants_cut),
                        free_cut_pct=Decimal(args.free_cut),
                        plan_factor={k: Decimal(v) for k, v in (p.split("=", 1) for p in args.plan)})
        for m in args.move:
            src, dst = m.split("=", 1)
            sp, si = src.split(":", 1)
            dp, di, dc = dst.split(":", 2)
            levers.moves.append((sp, si, dp, di, dc))
    except (ValueError, InvalidOperation) as e:
        print(f"error: could not read the levers ({e}); see `solvent ledger scenario --help`.", file=sys.stderr)
        return 2
    r = run(_services().db, levers, days=args.days)
    print(json.dumps(r.to_dict(), indent=2) if args.json else r.text())
    return 0


def cmd_ledger_import(args: argparse.Namespace) -> int:
    from ..ledger.focus import FocusProblems, import_focus

    try:
        r = import_focus(_services().db, args.file, memory_limit=args.memory_limit)
    except FocusProblems as e:
        print(f"error: nothing imported from {args.file}:", file=sys.stderr)
        for p in e.extra.get("problems", []):
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"{r.message}: {', '.join(r.providers)} {r.period_start:%Y-%m-%d} – {r.period_end:%Y-%m-%d}, billed "
          f"${r.billed_micros / 1e6:,.2f}, effective ${r.effective_micros / 1e6:,.2f} ({r.import_id})")
    return 0


def cmd_ledger_reconcile(args: argparse.Namespace) -> int:
    from ..ledger.focus import reconcile, reconcile_text

    start, end = _window(args)
    rows, _ = reconcile(_services().db, start, end)
    print(json.dumps([r.to_dict() for r in rows], indent=2) if args.json else reconcile_text(rows))
    return 0


def cmd_ledger_export(args: argparse.Namespace) -> int:
    from ..ledger.focus import export_focus

    start, end = _window(args)
    sys.stdout.write(export_focus(_services().db, start, end))
    return 0


def add_parsers(sub) -> None:
    from ..ledger.catalog import COMMITMENTS
    from ..ledger.reports import BY

    p = sub.add_parser("prices", help="the GPU price catalog", description="List list prices (shipped, with source "
                       "and date) and the operator's own prices; add a price version; price owned GPUs.")
    psub = p.add_subparsers(dest="prices_command", metavar="ACTION", required=True)
    pl = psub.add_parser("list", help="shipped list prices and operator versions")
    pl.add_argument("--provider", help="only this provider (aws, gcp, coreweave, lambda, azure, onprem, …)")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_prices_list)
    ps = psub.add_parser("set", help="add a price version (past costs keep the price they were made at)")
    ps.add_argument("provider")
    ps.add_argument("instance_type")
    ps.add_argument("usd_per_hour", help="USD per hour for the whole instance, e.g. 21.958")
    ps.add_argument("--commitment", default="on_demand", choices=COMMITMENTS)
    ps.add_argument("--gpus", type=int, default=1, help="GPUs in the instance (default 1)")
    ps.add_argument("--source", default="operator", help="where the price comes from (e.g. 'EDP contract 2026')")
    ps.add_argument("--effective-from", help="ISO time it applies from, UTC (default now)")
    ps.set_defaults(func=cmd_prices_set)
    pi = psub.add_parser("import", help="add price versions from a CSV of negotiated rates")
    pi.add_argument("file", help="CSV: provider,instance_type,usd_per_hour[,commitment,gpus,source,effective_from]")
    pi.set_defaults(func=cmd_prices_import)
    po = psub.add_parser("onprem", help="amortised cost per GPU-hour of GPUs you own")
    po.add_argument("--capex", required=True, help="purchase price of the servers, USD")
    po.add_argument("--gpus", type=int, required=True, help="GPUs bought")
    po.add_argument("--years", default="4", help="depreciation period (default 4)")
    po.add_argument("--overhead", default="0.1", help="installation, network, spares, as a fraction of capex")
    po.add_argument("--utilisation", default="0.7", help="expected busy fraction, 0–1 (default 0.7)")
    po.add_argument("--kw-per-gpu", default="0.7", help="power per GPU incl. its share of the server, kW")
    po.add_argument("--pue", default="1.4", help="data-centre power usage effectiveness (default 1.4)")
    po.add_argument("--usd-per-kwh", default="0.12")
    po.add_argument("--colocation", default="0", help="colocation USD per GPU-hour")
    po.add_argument("--save", metavar="NAME", help="save as price version onprem/NAME (commitment onprem)")
    po.set_defaults(func=cmd_prices_onprem)

    g = sub.add_parser("ledger", help="the compute ledger: cost, revenue, margin, idle, runway",
                       description="Cost and revenue of every job, idle capacity, compute given away, and runway.")
    gsub = g.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    gr = gsub.add_parser("report", help="cost, revenue, margin, utilisation, idle cost, giveaways")
    gr.add_argument("--by", default="day", choices=BY)
    gr.add_argument("--since", help="ISO start, UTC (default: --days before --until)")
    gr.add_argument("--until", help="ISO end, UTC, exclusive (default now)")
    gr.add_argument("--days", type=int, default=30)
    gr.add_argument("--org", help="one organisation (idle capacity is left out)")
    gr.add_argument("--share-idle", action="store_true", help="spread idle cost over the lines by their busy cost")
    gr.add_argument("--format", default="text", choices=("text", "json", "csv"))
    gr.set_defaults(func=cmd_ledger_report)
    gp = gsub.add_parser("plot", help="SVG or PNG charts: cost vs revenue over time, utilisation per provider")
    gp.add_argument("kind", choices=("cost-revenue", "utilisation"))
    gp.add_argument("--out", required=True, help="file to write: .png for PNG, anything else for SVG")
    gp.add_argument("--by", default="", help="day/week/month (cost-revenue) or provider/worker (utilisation)")
    gp.add_argument("--since")
    gp.add_argument("--until")
    gp.add_argument("--days", type=int, default=30)
    gp.set_defaults(func=cmd_ledger_plot)
    gf = gsub.add_parser("finances", help="record cash on hand and monthly fixed costs (USD)")
    gf.add_argument("--cash", required=True, help="cash in the bank, USD")
    gf.add_argument("--payroll", default="0", help="per month")
    gf.add_argument("--rent", default="0", help="per month")
    gf.add_argument("--other", default="0", help="other fixed costs per month")
    gf.add_argument("--committed-cloud", default="0", help="reservations and committed-use spend per month, "
                    "owed whether used or not")
    gf.set_defaults(func=cmd_ledger_finances)
    gw = gsub.add_parser("runway", help="gross and net burn and runway from the ledger's recent trend")
    gw.add_argument("--days", type=int, default=30, help="trend window (default 30 days)")
    gw.add_argument("--json", action="store_true")
    gw.set_defaults(func=cmd_ledger_runway)
    gs = gsub.add_parser("scenario", help="what-ifs on the runway: prices, plan mix, giveaways, moving workers")
    gs.add_argument("--price-change", default="0", metavar="PCT", help="every credit price up or down, e.g. 10 or -5")
    gs.add_argument("--plan", action="append", default=[], metavar="PLAN=FACTOR",
                    help="revenue of a plan multiplied, e.g. professional=2 (repeatable)")
    gs.add_argument("--grants-cut", default="0", metavar="PCT", help="share of grant compute not given")
    gs.add_argument("--free-cut", default="0", metavar="PCT", help="share of free-tier compute not given")
    gs.add_argument("--move", action="append", default=[], metavar="PROVIDER:TYPE=PROVIDER:TYPE:COMMITMENT",
                    help="re-price workers, e.g. aws:g5.xlarge=gcp:g2-standard-4:1y (repeatable)")
    gs.add_argument("--days", type=int, default=30, help="trend window (default 30 days)")
    gs.add_argument("--json", action="store_true")
    gs.set_defaults(func=cmd_ledger_scenario)
    gi = gsub.add_parser("import-focus", help="import a FOCUS 1.x cost-and-usage file (CSV or Parquet)")
    gi.add_argument("file")
    gi.add_argument("--memory-limit", default="256MB", help="DuckDB memory limit; larger files spill to disk")
    gi.set_defaults(func=cmd_ledger_import)
    gc = gsub.add_parser("reconcile", help="the imported bills against the meter, per provider")
    gc.add_argument("--since")
    gc.add_argument("--until")
    gc.add_argument("--days", type=int, default=30)
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(func=cmd_ledger_reconcile)
    ge = gsub.add_parser("export-focus", help="Solvent's own usage as FOCUS rows (CSV on stdout)")
    ge.add_argument("--since")
    ge.add_argument("--until")
    ge.add_argument("--days", type=int, default=30)
    ge.set_defaults(func=cmd_ledger_export)
    add_budget_parsers(sub)


def cmd_budgets_create(args: argparse.Namespace) -> int:
    from ..ledger.budgets import create_budget

    thresholds = [int(x) for x in args.thresholds.split(",") if x.strip()] if args.thresholds else []
    services = _services()
    b = create_budget(services.db, args.scope, period=args.period, limit_usd=args.limit, thresholds=thresholds,
                      hard=args.hard, runway_floor_months=args.runway_floor, webhook_url=args.webhook, name=args.name,
                      allow_hosts=services.settings.outbound_allow_hosts)
    print(f"budget {b.id} on {b.scope}: " + (f"${args.limit} per {b.period}" if args.limit else "no limit")
          + (" (hard cap: its jobs are refused at the limit)" if b.hard else "")
          + (f"; pauses below {args.runway_floor} months of runway" if args.runway_floor else ""))
    return 0


def cmd_budgets_list(args: argparse.Namespace) -> int:
    from ..ledger.budgets import status

    rows = status(_services().db)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no budgets: create one with `solvent budgets create SCOPE --limit USD [--hard]`.")
    for b in rows:
        limit = f"${b['limit_micros'] / 1e6:,.2f}" if b["limit_micros"] is not None else "-"
        used = f"{b['used_percent']}%" if b["used_percent"] is not None else "-"
        flags = " ".join(f for f, on in (("hard", b["hard"]), ("disabled", not b["active"])) if on)
        floor = f" floor {b['runway_floor_months']} months" if b["runway_floor_months"] is not None else ""
        print(f"{b['id']:<28} {b['scope']:<20} {b['period']:<6} {limit:>12} used {used:>7} "
              f"({b['period_key']}) {flags}{floor}")
        for a in b["alerts"][-3:]:
            print(f"    alert {a['threshold_percent']}% in {a['period']} at {a['at']} ({a['delivered'] or 'pending'})")
    return 0


def cmd_budgets_disable(args: argparse.Namespace) -> int:
    from ..ledger.budgets import deactivate

    b = deactivate(_services().db, args.budget)
    print(f"budget {b.id} disabled")
    return 0


def add_budget_parsers(sub) -> None:
    b = sub.add_parser("budgets", help="budgets: alerts, hard caps, runway floor",
                       description="Budgets on compute cost per scope and period: soft alerts (logged, on a "
                       "webhook), hard caps that refuse the scope's jobs, and a runway floor that pauses it.")
    bsub = b.add_subparsers(dest="budgets_command", metavar="ACTION", required=True)
    bc = bsub.add_parser("create", help="create a budget")
    bc.add_argument("scope", help="all, free, plan:<id>, org:<id> or grant:<id>")
    bc.add_argument("--limit", help="USD of compute cost per period")
    bc.add_argument("--period", default="month", choices=("day", "month"))
    bc.add_argument("--thresholds", default="80,100", help="alert at these percentages (default 80,100)")
    bc.add_argument("--hard", action="store_true", help="refuse the scope's new jobs once the limit is reached")
    bc.add_argument("--runway-floor", metavar="MONTHS", help="pause the scope while the runway is below this")
    bc.add_argument("--webhook", help="URL that receives alerts as JSON")
    bc.add_argument("--name", default="")
    bc.set_defaults(func=cmd_budgets_create)
    bl = bsub.add_parser("list", help="budgets with spend, reservations and alerts")
    bl.add_argument("--json", action="store_true")
    bl.set_defaults(func=cmd_budgets_list)
    bd = bsub.add_parser("disable", help="stop a budget (its history stays)")
    bd.add_argument("budget")
    bd.set_defaults(func=cmd_budgets_disable)
