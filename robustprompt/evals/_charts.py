"""The HTML report's charts, drawn as inline SVG: rates with their intervals, and per-field agreement."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from robustprompt.evals._compare import Comparison, Rate, TrendPoint
from robustprompt.evals._report import _pct_ci

__all__ = ["agreement_chart", "rate_chart", "trend_chart"]

_A_COLOUR, _B_COLOUR = "#5b73d6", "#e0893a"

_W, _H, _TOP, _BOTTOM, _LEFT = 520, 270, 36, 44, 44  # chart size and margins, in px


def rate_chart(c: Comparison) -> str:
    """Grouped bars: per metric, A and B with their Wilson whiskers, on a 0-100 % axis."""
    groups = [
        ("valid, 1st attempt", c.a.valid_first, c.b.valid_first),
        ("valid after re-asks", c.a.valid, c.b.valid),
        ("accuracy", c.a.accuracy, c.b.accuracy),
    ]
    groups = [g for g in groups if g[1].n or g[2].n]
    plot_h = _H - _TOP - _BOTTOM
    slot = (_W - _LEFT - 10) / max(1, len(groups))
    bar = min(48.0, slot / 3)
    parts = [_svg_open("rate-chart", _W, _H, "Validity and accuracy per model"), _y_axis(plot_h)]
    for i, (label, ra, rb) in enumerate(groups):
        x0 = _LEFT + i * slot + (slot - 2 * bar) / 2
        for j, (rate, colour, side) in enumerate(((ra, _A_COLOUR, "A"), (rb, _B_COLOUR, "B"))):
            parts.append(_vbar(x0 + j * bar, bar - 4, rate, colour, f"{side} {label}", plot_h))
        parts.append(_text(x0 + bar, _H - _BOTTOM + 16, label, "middle"))
    parts.append(_legend(_W - 120, 12, c))
    return "".join(parts) + "</svg>"


def _vbar(x: float, width: float, rate: Rate, colour: str, label: str, plot_h: float) -> str:
    value = rate.value or 0.0
    top = _TOP + plot_h * (1 - value)
    tip = f"{label}: {_pct_ci(rate)}, n={rate.n}"
    out = (
        f'<rect class="bar" x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{plot_h * value:.1f}" '
        f'fill="{colour}"><title>{escape(tip)}</title></rect>'
    )
    if rate.ci is not None:
        mid, low, high = x + width / 2, _TOP + plot_h * (1 - rate.ci.low), _TOP + plot_h * (1 - rate.ci.high)
        out += (
            f'<path class="whisker" d="M{mid:.1f} {low:.1f}V{high:.1f}M{mid - 5:.1f} {low:.1f}h10M{mid - 5:.1f} '
            f'{high:.1f}h10" stroke="#1d2433" stroke-width="1.5" fill="none"/>'
        )
    label_y = top if rate.ci is None else min(top, _TOP + plot_h * (1 - rate.ci.high))
    return out + _text(x + width / 2, label_y - 4, "n/a" if rate.value is None else f"{100 * value:.1f}%", "middle")


def _y_axis(plot_h: float) -> str:
    ticks = []
    for pct in (0, 25, 50, 75, 100):
        y = _TOP + plot_h * (1 - pct / 100)
        ticks.append(f'<line x1="{_LEFT}" x2="{_W - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ee"/>')
        ticks.append(_text(_LEFT - 6, y + 4, f"{pct}%", "end"))
    return "".join(ticks)


def _legend(x: float, y: float, c: Comparison) -> str:
    items = []
    for i, (colour, side, name) in enumerate(((_A_COLOUR, "A", c.a.model), (_B_COLOUR, "B", c.b.model))):
        items.append(
            f'<rect x="{x + i * 60}" y="{y - 10}" width="12" height="12" fill="{colour}"><title>{escape(name)}</title>'
            f"</rect>{_text(x + i * 60 + 16, y, side, 'start')}"
        )
    return "".join(items)


def agreement_chart(c: Comparison) -> str:
    """One horizontal bar per output field: the share of paired cases where A and B agree, with its whisker."""
    fields = list(c.agreement.items())
    row, left, width = 28, 140, _W - 140 - 60
    height = _TOP + row * max(1, len(fields)) + 20
    parts = [_svg_open("agreement-chart", _W, height, "Per-field agreement between A and B")]
    if not fields:
        parts.append(_text(_W / 2, _TOP + 14, "no paired outputs to compare", "middle"))
    for i, (name, rate) in enumerate(fields):
        y, value = _TOP + i * row, rate.value or 0.0
        parts.append(_text(left - 8, y + 15, name, "end"))
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{width}" height="{row - 8}" fill="#eef1f7"/>')
        parts.append(
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{width * value:.1f}" height="{row - 8}" fill="#4f9d8b">'
            f"<title>{escape(f'{name}: {_pct_ci(rate)}, n={rate.n}')}</title></rect>"
        )
        if rate.ci is not None:
            x_low, x_high, mid = left + width * rate.ci.low, left + width * rate.ci.high, y + row / 2 - 1
            parts.append(
                f'<path class="whisker" d="M{x_low:.1f} {mid:.1f}H{x_high:.1f}M{x_low:.1f} {mid - 5:.1f}v10'
                f'M{x_high:.1f} {mid - 5:.1f}v10" stroke="#1d2433" stroke-width="1.5" fill="none"/>'
            )
        parts.append(_text(left + width + 6, y + 15, "n/a" if rate.value is None else f"{100 * value:.1f}%", "start"))
    return "".join(parts) + "</svg>"


_TREND = (("accuracy", "#5b73d6"), ("schema-valid", "#4f9d8b"), ("mismatch", "#e0893a"))


def trend_chart(points: Sequence[TrendPoint]) -> str:
    """Lines over the stored dates: accuracy, validity and mismatch against the baseline, on a 0-100 % axis."""
    plot_h = _H - _TOP - _BOTTOM
    step = (_W - _LEFT - 30) / max(1, len(points) - 1)
    parts = [_svg_open("trend-chart", _W, _H, "Trend over the stored dates"), _y_axis(plot_h)]
    for name, colour in _TREND:
        dots = []
        for i, point in enumerate(points):
            rate = {"accuracy": point.accuracy, "schema-valid": point.valid, "mismatch": point.mismatch}[name]
            if rate.value is not None:
                dots.append((_LEFT + 10 + i * step, _TOP + plot_h * (1 - rate.value), point.date, rate))
        if len(dots) > 1:
            path = "M" + "L".join(f"{x:.1f} {y:.1f}" for x, y, _, _ in dots)
            parts.append(f'<path class="trend" d="{path}" stroke="{colour}" stroke-width="2" fill="none"/>')
        for x, y, date, rate in dots:
            tip = escape(f"{name} on {date}: {_pct_ci(rate)}, n={rate.n}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"><title>{tip}</title></circle>')
    for i, point in enumerate(points):
        parts.append(_text(_LEFT + 10 + i * step, _H - _BOTTOM + 16, point.date, "middle"))
    for j, (name, colour) in enumerate(_TREND):
        x = _LEFT + 10 + j * 120
        parts.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>{_text(x + 16, 14, name, "start")}')
    return "".join(parts) + "</svg>"


def _svg_open(ident: str, width: float, height: float, title: str) -> str:
    return (
        f'<svg id="{ident}" class="chart" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" role="img" font-size="12" font-family="system-ui,sans-serif">'
        f"<title>{escape(title)}</title>"
    )


def _text(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="#1d2433">{escape(text)}</text>'
