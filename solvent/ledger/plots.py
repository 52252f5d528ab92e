"""Plots as standalone SVG (no plotting library, no network): cost vs revenue over time, utilisation per provider."""

from __future__ import annotations

from html import escape

from .reports import Report

W, H, PAD = 720, 360, 56
COST, REVENUE, IDLE = "#c0392b", "#2471a3", "#e59866"


def _frame(title: str, body: list[str], ymax: float, unit: str) -> str:
    ticks = []
    for i in range(5):
        v = ymax * i / 4
        y = H - PAD - (H - 2 * PAD) * i / 4
        ticks.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - PAD / 2}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{v:,.2f}{unit}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="{escape(title)}" font-family="sans-serif"><title>{escape(title)}</title>'
            f'<rect width="{W}" height="{H}" fill="white"/>'
            f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>'
            + "".join(ticks) + "".join(body) + "</svg>\n")


def cost_revenue_svg(r: Report) -> str:
    """Lines of total cost (busy + idle) and revenue per time bucket of a day/week/month report."""
    pts = [(ln.key, ln.total_cost_micros / 1e6, ln.revenue_micros / 1e6) for ln in r.lines]
    ymax = max([c for _, c, _ in pts] + [v for _, _, v in pts] + [0.01]) * 1.1
    n = max(1, len(pts) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return PAD + (W - 1.5 * PAD) * i / n, H - PAD - (H - 2 * PAD) * v / ymax

    body = []
    for colour, idx, name in ((COST, 1, "cost"), (REVENUE, 2, "revenue")):
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}"
                        for i, p in enumerate(pts) for x, y in [xy(i, p[idx])])
        if path:
            body.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"><title>{name}</title></path>')
    step = max(1, len(pts) // 8)
    for i, (key, c, v) in enumerate(pts):
        x, _ = xy(i, 0)
        body.append(f'<circle cx="{x:.1f}" cy="{xy(i, c)[1]:.1f}" r="3" fill="{COST}"><title>{escape(key)} cost '
                    f'${c:,.4f}</title></circle><circle cx="{x:.1f}" cy="{xy(i, v)[1]:.1f}" r="3" fill="{REVENUE}">'
                    f'<title>{escape(key)} revenue ${v:,.4f}</title></circle>')
        if i % step == 0:
            body.append(f'<text x="{x:.1f}" y="{H - PAD + 18}" text-anchor="middle" font-size="11">{escape(key)}</text>')
    body.append(f'<text x="{W - PAD}" y="44" text-anchor="end" font-size="12" fill="{COST}">cost (busy + idle)</text>'
                f'<text x="{W - PAD}" y="60" text-anchor="end" font-size="12" fill="{REVENUE}">revenue</text>')
    return _frame(f"Cost and revenue by {r.by} (USD)", body, ymax, "")


def utilisation_svg(r: Report) -> str:
    """Bars of utilisation (busy device time ÷ uptime) per line of a provider or worker report."""
    lines = [ln for ln in r.lines if ln.utilisation_bp is not None]
    body = []
    bw = (W - 1.5 * PAD) / max(1, len(lines))
    for i, ln in enumerate(lines):
        pct = ln.utilisation_bp / 100
        h = (H - 2 * PAD) * pct / 100
        x = PAD + i * bw + bw * 0.15
        body.append(f'<rect x="{x:.1f}" y="{H - PAD - h:.1f}" width="{bw * 0.7:.1f}" height="{h:.1f}" fill="{REVENUE}">'
                    f'<title>{escape(ln.key)}: {pct:.1f}% busy, idle ${ln.idle_micros / 1e6:,.2f}</title></rect>'
                    f'<text x="{x + bw * 0.35:.1f}" y="{H - PAD + 18}" text-anchor="middle" font-size="11">'
                    f'{escape(ln.key[:16])}</text>'
                    f'<text x="{x + bw * 0.35:.1f}" y="{H - PAD - h - 6:.1f}" text-anchor="middle" font-size="11">'
                    f'{pct:.1f}%</text>')
    if not lines:
        body.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13">no worker uptime in this '
                    "period</text>")
    return _frame(f"Utilisation by {r.by} (busy device time ÷ uptime)", body, 100, "%")
