"""Small inline SVG charts: crisp at any width, no image files, no JavaScript."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup

# Answered is green; the reasons for silence get calm, distinct colours, failures red.
COLOURS = {
    "answered": "#16a34a",
    "off-topic": "#9ca3af",
    "not-mentioned": "#60a5fa",
    "empty": "#d1d5db",
    "chitchat": "#a78bfa",
    "no-knowledge": "#f59e0b",
    "unsure": "#fb923c",
    "merged": "#e5e7eb",
    "over-budget": "#f472b6",
    "duplicate": "#86efac",
    "tagged": "#22d3ee",
    "failed": "#dc2626",
}
PALETTE = ["#0ea5e9", "#14b8a6", "#eab308", "#ec4899", "#8b5cf6", "#64748b"]


@dataclass(frozen=True)
class Legend:
    label: str
    colour: str
    total: int


def colours(labels: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    spare = iter(PALETTE * (len(labels) // len(PALETTE) + 1))
    for label in labels:
        found[label] = COLOURS.get(label) or next(spare)
    return found


def order(series: dict[str, list[int]]) -> list[str]:
    """Answered first, then the rest (mostly reasons for silence), the most frequent first."""
    rest = sorted((k for k in series if k != "answered"), key=lambda k: -sum(series[k]))
    return (["answered"] if "answered" in series else []) + rest


def stacked_bars(
    days: list[date], series: dict[str, list[int]], height: int = 200
) -> tuple[Markup, list[Legend]]:
    """One bar per day, stacked by outcome, scaled to the busiest day. The SVG scales with its
    container (viewBox, kept in proportion, so the labels stay readable on a phone), and each
    bar says its numbers on hover (<title>)."""
    labels = order(series)
    palette = colours(labels)
    width, left, bottom, top = 480, 30, 22, 10
    plot_h = height - bottom - top
    totals = [sum(series[k][i] for k in labels) for i in range(len(days))]
    peak = max(totals, default=0) or 1
    step = (width - left) / max(len(days), 1)
    bar = max(step * 0.7, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="messages per day, answered and ignored by reason">'
    ]
    for value in (0, peak):
        y = top + plot_h * (1 - value / peak)
        parts.append(
            f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="12" text-anchor="end" '
            f'fill="#6b7280">{value}</text>'
        )
    for i, day in enumerate(days):
        x = left + i * step + (step - bar) / 2
        y = top + plot_h
        counts = ", ".join(f"{k} {series[k][i]}" for k in labels if series[k][i])
        parts.append(f"<g><title>{day.isoformat()}: {escape(counts or 'no messages')}</title>")
        for label in labels:
            value = series[label][i]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{palette[label]}"/>'
            )
        parts.append("</g>")
        if (len(days) - 1 - i) % 7 == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 6}" font-size="12" '
                f'text-anchor="middle" fill="#6b7280">{day.strftime("%m-%d")}</text>'
            )
    parts.append("</svg>")
    legend = [Legend(label, palette[label], sum(series[label])) for label in labels]
    return Markup("".join(parts)), legend
