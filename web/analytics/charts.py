"""Server-rendered SVG charts for the analyst pages: recall@k curves and recall vs queries/s scatter plots.

Plain SVG markup with presentation attributes (no inline styles, no scripts), so pages keep their strict
Content-Security-Policy and charts work without JavaScript. Hover text comes from SVG <title> elements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass
class Frame:
    """Plot area and axis ranges; maps data to pixels."""

    width: int
    height: int
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    log_x: bool = False
    left: int = 56
    right: int = 16
    top: int = 16
    bottom: int = 44

    def _tx(self, x: float) -> float:
        return math.log10(x) if self.log_x else x

    def x(self, v: float) -> float:
        lo, hi = self._tx(self.x_min), self._tx(self.x_max)
        frac = 0.5 if hi == lo else (self._tx(v) - lo) / (hi - lo)
        return self.left + frac * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        frac = 0.5 if self.y_max == self.y_min else (v - self.y_min) / (self.y_max - self.y_min)
        return self.top + (1 - frac) * (self.height - self.top - self.bottom)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for mult in (1, 2, 2.5, 5, 10):
        if (hi - lo) / (step * mult) <= n:
            step *= mult
            break
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                out.append(float(v))
    return out or [lo, hi]


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _axes(f: Frame, x_ticks: Sequence[float], y_ticks: Sequence[float], x_label: str, y_label: str) -> list[str]:
    parts = [f'<rect x="{f.left}" y="{f.top}" width="{f.width - f.left - f.right}" '
             f'height="{f.height - f.top - f.bottom}" fill="#fff" stroke="#c9ced8"/>']
    for t in y_ticks:
        y = f.y(t)
        parts.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef0f4"/>')
        parts.append(f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT} fill="#555">{_fmt(t)}</text>')
    for t in x_ticks:
        x = f.x(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{f.height - f.bottom}" stroke="#eef0f4"/>')
        parts.append(f'<text x="{x:.1f}" y="{f.height - f.bottom + 16}" text-anchor="middle" {FONT} '
                     f'fill="#555">{_fmt(t)}</text>')
    parts.append(f'<text x="{(f.left + f.width - f.right) / 2:.0f}" y="{f.height - 8}" text-anchor="middle" '
                 f'{FONT} fill="#222">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {(f.top + f.height - f.bottom) / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle" {FONT} fill="#222">{escape(y_label)}</text>')
    return parts


def _svg(f: Frame, title: str, parts: list[str], css_class: str) -> Markup:
    return Markup(f'<svg class="chart {css_class}" viewBox="0 0 {f.width} {f.height}" width="{f.width}" '
                  f'height="{f.height}" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
                  f'<title>{escape(title)}</title>' + "".join(parts) + "</svg>")


def _legend(f: Frame, names: Sequence[str], colours: Sequence[str]) -> list[str]:
    parts = []
    x0 = f.width - f.right - 190
    for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
        y = f.height - f.bottom - 14 - 18 * (len(names) - 1 - i)
        parts.append(f'<g class="legend-item"><rect x="{x0}" y="{y - 10}" width="184" height="16" fill="#fff" '
                     f'opacity="0.85"/><line x1="{x0 + 4}" x2="{x0 + 24}" y1="{y - 2}" y2="{y - 2}" '
                     f'stroke="{colour}" stroke-width="3"/><text x="{x0 + 30}" y="{y + 2}" {FONT} '
                     f'fill="#222">{escape(name[:28])}</text></g>')
    return parts


def recall_chart(curves: dict[str, Sequence[Sequence[float]]], title: str = "recall@k",
                 width: int = 640, height: int = 340) -> Markup:
    """Recall@k curves, one line per name: {name: [[k, recall], ...]}; y from 0 to 1."""
    ks = [p[0] for c in curves.values() for p in c] or [1]
    f = Frame(width, height, min(ks), max(ks), 0.0, 1.03)
    step = next(m for m in (1, 2, 5, 10, 20, 50, 100, 10**9) if (max(ks) - min(ks)) / m <= 10)
    x_ticks = sorted({min(ks), *range(step, int(max(ks)) + 1, step)})
    parts = _axes(f, x_ticks, _ticks(0, 1, 5), "k", "recall@k")
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(curves))]
    for (name, curve), colour in zip(curves.items(), colours, strict=True):
        pts = " ".join(f"{f.x(k):.1f},{f.y(r):.1f}" for k, r in curve)
        parts.append(f'<g class="series" data-name="{escape(name)}"><polyline points="{pts}" fill="none" '
                     f'stroke="{colour}" stroke-width="2.5"/>')
        for k, r in curve:
            parts.append(f'<circle cx="{f.x(k):.1f}" cy="{f.y(r):.1f}" r="3" fill="{colour}"><title>'
                         f'{escape(name)}: recall@{k:g} = {r:.4f}</title></circle>')
        parts.append("</g>")
    parts += _legend(f, list(curves), colours)
    return _svg(f, title, parts, "recall-chart")


def pareto_chart(points: Sequence[dict], title: str = "recall vs queries/s", width: int = 720,
                 height: int = 400) -> Markup:
    """Scatter of settings: x = queries/s (log scale), y = recall; Pareto points joined and highlighted.

    Args:
        points: dicts with ``queries_per_s``, ``recall``, ``label``, ``pareto`` and optionally ``recommended``.
    """
    qps = [max(p["queries_per_s"], 1e-3) for p in points] or [1.0, 10.0]
    rec = [p["recall"] for p in points] or [0.0, 1.0]
    x_lo, x_hi = min(qps) / 1.3, max(qps) * 1.3
    y_lo = max(0.0, math.floor((min(rec) - 0.02) * 20) / 20)
    f = Frame(width, height, x_lo, x_hi, y_lo, 1.0 + 0.06 * (1.0 - y_lo), log_x=True)
    parts = _axes(f, _log_ticks(x_lo, x_hi), _ticks(y_lo, 1.0, 5), "queries/s (one query per call, log scale)",
                  "recall@k vs exact")
    front = sorted((p for p in points if p.get("pareto")), key=lambda p: p["queries_per_s"])
    if front:
        pts = " ".join(f"{f.x(max(p['queries_per_s'], 1e-3)):.1f},{f.y(p['recall']):.1f}" for p in front)
        parts.append(f'<polyline class="pareto-front" points="{pts}" fill="none" stroke="#d62728" '
                     f'stroke-width="2" stroke-dasharray="6 4"/>')
    # Dominated points first, so a front point is never hidden under one with nearly the same numbers.
    for p in sorted(points, key=lambda p: (bool(p.get("pareto")), bool(p.get("recommended")))):
        x, y = f.x(max(p["queries_per_s"], 1e-3)), f.y(p["recall"])
        on = bool(p.get("pareto"))
        colour = "#d62728" if on else "#8a93a6"
        r = 7 if p.get("recommended") else 5
        tip = f"{p['label']}: recall {p['recall']:.4f}, {p['queries_per_s']:,.0f} q/s" + \
            (" (Pareto)" if on else "") + (" (recommended)" if p.get("recommended") else "")
        cls = "point pareto" if on else "point"
        parts.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colour}" '
                     f'stroke="{"#222" if p.get("recommended") else "#fff"}" stroke-width="1.5">'
                     f'<title>{escape(tip)}</title></circle>')
        if on:
            anchor = "end" if x > f.width - f.right - 120 else "start"
            parts.append(f'<text x="{x + (-8 if anchor == "end" else 8):.1f}" y="{y + 16:.1f}" text-anchor="{anchor}" '
                         f'{FONT} fill="#7a1c1c">{escape(p["label"][:26])}</text>')
    parts += _legend(f, ["Pareto front", "dominated setting"], ["#d62728", "#8a93a6"])
    return _svg(f, title, parts, "pareto-chart")
