"""Plots as standalone SVG or PNG (no plotting library, no network): cost vs revenue over time, utilisation.

Each chart is laid out once as a list of shapes; `svg()` and `png()` draw the same shapes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from html import escape

from .reports import Report

W, H, PAD = 720, 360, 56
COST, REVENUE = "#c0392b", "#2471a3"
GRID, INK = "#dddddd", "#000000"


@dataclass(frozen=True)
class Shape:
    kind: str  # line | path | circle | rect | text
    points: tuple[tuple[float, float], ...]  # line/path: its points; circle/text: the centre/anchor; rect: corners
    colour: str = INK
    size: float = 1  # stroke width, radius or font size
    text: str = ""  # the label of a text; the tooltip of anything else
    anchor: str = "middle"  # text: start | middle | end


@dataclass(frozen=True)
class Chart:
    title: str
    shapes: list[Shape]

    def svg(self) -> str:
        out = []
        for s in self.shapes:
            tip = f"<title>{escape(s.text)}</title>" if s.text and s.kind != "text" else ""
            if s.kind == "line":
                (x1, y1), (x2, y2) = s.points
                out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{s.colour}"/>')
            elif s.kind == "path":
                d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(s.points))
                out.append(f'<path d="{d}" fill="none" stroke="{s.colour}" stroke-width="{s.size:g}">{tip}</path>')
            elif s.kind == "circle":
                (x, y), = s.points
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{s.size:g}" fill="{s.colour}">{tip}</circle>')
            elif s.kind == "rect":
                (x1, y1), (x2, y2) = s.points
                out.append(f'<rect x="{x1:.1f}" y="{y1:.1f}" width="{x2 - x1:.1f}" height="{y2 - y1:.1f}" '
                           f'fill="{s.colour}">{tip}</rect>')
            else:
                (x, y), = s.points
                fill = "" if s.colour == INK else f' fill="{s.colour}"'
                out.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{s.anchor}" font-size="{s.size:g}"{fill}>'
                           f"{escape(s.text)}</text>")
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
                f'aria-label="{escape(self.title)}" font-family="sans-serif"><title>{escape(self.title)}</title>'
                f'<rect width="{W}" height="{H}" fill="white"/>' + "".join(out) + "</svg>\n")

    def png(self) -> bytes:
        from PIL import Image, ImageDraw, ImageFont

        img = Image.new("RGB", (W, H), "white")
        draw = ImageDraw.Draw(img)
        fonts: dict[float, ImageFont.ImageFont] = {}
        for s in self.shapes:
            if s.kind == "line":
                draw.line(s.points, fill=s.colour, width=1)
            elif s.kind == "path" and len(s.points) > 1:
                draw.line(s.points, fill=s.colour, width=round(s.size), joint="curve")
            elif s.kind == "circle":
                (x, y), = s.points
                draw.ellipse((x - s.size, y - s.size, x + s.size, y + s.size), fill=s.colour)
            elif s.kind == "rect":
                (x1, y1), (x2, y2) = s.points
                if round(y1) == round(y2):
                    continue  # zero height, as in SVG (PIL would draw a one-pixel line)
                draw.rectangle((x1, min(y1, y2), x2, max(y1, y2)), fill=s.colour)
            elif s.kind == "text":
                font = fonts.setdefault(s.size, ImageFont.load_default(size=s.size))
                anchor = {"start": "ls", "middle": "ms", "end": "rs"}[s.anchor]
                draw.text(s.points[0], s.text, fill=s.colour, font=font, anchor=anchor)
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=True)
        return buf.getvalue()


def _frame(title: str, body: list[Shape], ymax: float, unit: str) -> Chart:
    shapes = [Shape("text", ((W / 2, 22),), size=15, text=title)]
    for i in range(5):
        v = ymax * i / 4
        y = H - PAD - (H - 2 * PAD) * i / 4
        shapes += [Shape("line", ((PAD, y), (W - PAD / 2, y)), GRID),
                   Shape("text", ((PAD - 6, y + 4),), size=11, text=f"{v:,.2f}{unit}", anchor="end")]
    return Chart(title, shapes + body)


def cost_revenue_chart(r: Report) -> Chart:
    """Lines of total cost (busy + idle) and revenue per time bucket of a day/week/month report."""
    pts = [(ln.key, ln.total_cost_micros / 1e6, ln.revenue_micros / 1e6) for ln in r.lines]
    ymax = max([c for _, c, _ in pts] + [v for _, _, v in pts] + [0.01]) * 1.1
    n = max(1, len(pts) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return PAD + (W - 1.5 * PAD) * i / n, H - PAD - (H - 2 * PAD) * v / ymax

    body = []
    for colour, idx, name in ((COST, 1, "cost"), (REVENUE, 2, "revenue")):
        if pts:
            body.append(Shape("path", tuple(xy(i, p[idx]) for i, p in enumerate(pts)), colour, 2, name))
    step = max(1, len(pts) // 8)
    for i, (key, c, v) in enumerate(pts):
        x, _ = xy(i, 0)
        body += [Shape("circle", (xy(i, c),), COST, 3, f"{key} cost ${c:,.4f}"),
                 Shape("circle", (xy(i, v),), REVENUE, 3, f"{key} revenue ${v:,.4f}")]
        if i % step == 0:
            body.append(Shape("text", ((x, H - PAD + 18),), size=11, text=key))
    body += [Shape("text", ((W - PAD, 44),), COST, 12, "cost (busy + idle)", "end"),
             Shape("text", ((W - PAD, 60),), REVENUE, 12, "revenue", "end")]
    return _frame(f"Cost and revenue by {r.by} (USD)", body, ymax, "")


def utilisation_chart(r: Report) -> Chart:
    """Bars of utilisation (busy device time ÷ uptime) per line of a provider or worker report."""
    lines = [ln for ln in r.lines if ln.utilisation_bp is not None]
    body = []
    bw = (W - 1.5 * PAD) / max(1, len(lines))
    for i, ln in enumerate(lines):
        pct = ln.utilisation_bp / 100
        h = (H - 2 * PAD) * pct / 100
        x = PAD + i * bw + bw * 0.15
        body += [Shape("rect", ((x, H - PAD - h), (x + bw * 0.7, H - PAD)), REVENUE,
                       text=f"{ln.key}: {pct:.1f}% busy, idle ${ln.idle_micros / 1e6:,.2f}"),
                 Shape("text", ((x + bw * 0.35, H - PAD + 18),), size=11, text=ln.key[:16]),
                 Shape("text", ((x + bw * 0.35, H - PAD - h - 6),), size=11, text=f"{pct:.1f}%")]
    if not lines:
        body.append(Shape("text", ((W / 2, H / 2),), size=13, text="no worker uptime in this period"))
    return _frame(f"Utilisation by {r.by} (busy device time ÷ uptime)", body, 100, "%")


def cost_revenue_svg(r: Report) -> str:
    return cost_revenue_chart(r).svg()


def utilisation_svg(r: Report) -> str:
    return utilisation_chart(r).svg()
