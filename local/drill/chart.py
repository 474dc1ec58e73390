"""The drill's picture: an HTML page with an SVG chart of traffic split and user error rate over time.

Stacked areas: the share of user requests each version served per time bin; a red line: the share of user
requests that failed or timed out; vertical marks where alarms fired, rollback decisions were taken and
production was restored; scenario names along the top.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac"]
MARK_COLOURS = {"alarm": "#e15759", "decision": "#000000", "restore": "#59a14f", "lambda": "#b07aa1"}


def svg(report: dict[str, Any], width: int = 1100, height: int = 360) -> str:
    series = report.get("series") or []
    left, right, top, bottom = 50, 20, 40, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    starts = [m["t"] for m in report.get("scenario_marks") or []]
    t_min = max(0.0, min(starts) - 0.5) if starts else 0.0
    series = [s for s in series if s["t"] >= t_min]
    t_max = max([s["t"] for s in series] + [t_min + 1.0]) + 0.25
    versions: list[str] = []
    for s in series:
        for v in s["versions"]:
            if v not in versions:
                versions.append(v)
    versions.sort(key=lambda v: (v == "none", int(v[1:]) if v[1:].isdigit() else 99))

    def x(t: float) -> float:
        return float(left + plot_w * (t - t_min) / (t_max - t_min))

    def y(share: float) -> float:
        return top + plot_h * (1 - share)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>'
    ]
    base = [0.0] * len(series)
    for i, version in enumerate(versions):
        upper = []
        for j, s in enumerate(series):
            share = s["versions"].get(version, 0) / s["total"] if s["total"] else 0.0
            upper.append(base[j] + share)
        points = [f"{x(s['t']):.1f},{y(upper[j]):.1f}" for j, s in enumerate(series)]
        points += [f"{x(s['t']):.1f},{y(base[j]):.1f}" for j, s in reversed(list(enumerate(series)))]
        colour = PALETTE[i % len(PALETTE)] if version != "none" else "#cccccc"
        parts.append(
            f'<polygon points="{" ".join(points)}" fill="{colour}" fill-opacity="0.55" stroke="none"/>'
        )
        parts.append(
            f'<rect x="{left + 10 + 90 * i}" y="8" width="12" height="12" fill="{colour}"/>'
            f'<text x="{left + 26 + 90 * i}" y="18">{html.escape(version)}</text>'
        )
        base = upper
    errors = [f"{x(s['t']):.1f},{y(s['bad'] / s['total'] if s['total'] else 0):.1f}" for s in series]
    if errors:
        parts.append(f'<polyline points="{" ".join(errors)}" fill="none" stroke="#d62728" stroke-width="2"/>')
    legend_x = left + 10 + 90 * len(versions)
    parts.append(
        f'<line x1="{legend_x}" y1="14" x2="{legend_x + 20}" y2="14" stroke="#d62728" stroke-width="2"/>'
        f'<text x="{legend_x + 24}" y="18">failed or timed-out user requests</text>'
    )
    for i, (kind, label) in enumerate(
        (("alarm", "alarm fired"), ("decision", "rollback decision"), ("restore", "restored"))
    ):
        lx = width - right - 330 + 110 * i
        dash = "4,3" if kind == "alarm" else "none"
        parts.append(
            f'<line x1="{lx}" y1="8" x2="{lx}" y2="20" stroke="{MARK_COLOURS[kind]}" '
            f'stroke-dasharray="{dash}"/>'
            f'<text x="{lx + 5}" y="18">{label}</text>'
        )
    for mark in report.get("marks") or []:
        if not t_min <= mark["t"] <= t_max:
            continue
        colour = MARK_COLOURS.get(mark["kind"], "#333333")
        mx = x(mark["t"])
        dash = "4,3" if mark["kind"] == "alarm" else "none"
        parts.append(
            f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" stroke="{colour}" '
            f'stroke-dasharray="{dash}"><title>{html.escape(mark["text"])}</title></line>'
        )
    for mark in report.get("scenario_marks") or []:
        mx = x(mark["t"])
        parts.append(
            f'<line x1="{mx:.1f}" y1="{top - 6}" x2="{mx:.1f}" y2="{top + plot_h}" stroke="#999" '
            f'stroke-width="0.5"/>'
            f'<text x="{mx + 3:.1f}" y="{top - 8}" fill="#555">{html.escape(mark["scenario"])}</text>'
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>'
        f'<text x="{left - 8}" y="{top + 4}" text-anchor="end">100%</text>'
        f'<text x="{left - 8}" y="{top + plot_h + 4}" text-anchor="end">0%</text>'
    )
    scale = float(report.get("time_scale") or 1)
    step = max(1, round((t_max - t_min) / 12))
    for t in range(int(t_min) + 1, int(t_max) + 1, step):
        minutes = t * scale / 60
        parts.append(
            f'<text x="{x(t):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{t}s</text>'
            f'<text x="{x(t):.1f}" y="{top + plot_h + 30}" text-anchor="middle" fill="#777">'
            f"{minutes:.0f}m</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def write_html(report: dict[str, Any], path: Path) -> None:
    rows = "".join(
        f"<tr><td>{html.escape(r['scenario'])}</td><td>{html.escape(r['outcome'])}</td>"
        f"<td>{html.escape(r['gate'])}</td>"
        f"<td>{r['users']['failed'] + r['users']['timed_out']}/{r['users']['total']}</td>"
        f"<td>{(r.get('time_to_detect') or {}).get('aws', '-')}</td>"
        f"<td>{(r.get('time_to_restore') or {}).get('aws', '-')}</td>"
        f"<td>{html.escape(str(r['serving_before']))} &rarr; {html.escape(str(r['serving_after']))}</td></tr>"
        for r in report["scenarios"]
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>Phoenix Pipeline drill</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}</style>"
        f"<h1>Phoenix Pipeline drill</h1><p>time scale x{report['time_scale']:g}; drill seconds on the axis, "
        "AWS-equivalent minutes below. Areas: share of user requests served by each version; red line: share "
        "that failed or timed out; dashed red: alarm fired; black: rollback decision; green: production "
        f"restored.</p>{svg(report)}<table><tr><th>scenario</th><th>outcome</th><th>gate</th>"
        "<th>users failed/total</th>"
        f"<th>detect (AWS s)</th><th>restore (AWS s)</th><th>serving</th></tr>{rows}</table>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    path.with_suffix(".svg").write_text(svg(report))
