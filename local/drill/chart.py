"""The drill's picture: an HTML page with an SVG chart of traffic split, user errors and alarm evaluations.

Top, over drill time: stacked areas, the share of user requests each version served per time bin; a red line,
the share of user requests that failed or timed out; dashed red marks where alarms fired; scenario names along
the top. Below it, one lane per alarm: a mark at each evaluation (once an AWS minute) coloured by the state it
left the alarm in, and a hollow ring over it when CloudWatch had received datapoints it did not show yet (the
metric's ingestion lag; the count is in the mark's tooltip, and beside the ring when there is room). Each
scenario's exposure (the release's first production traffic), rollback decision and restore are vertical
marks through the chart and the lanes. Small triangles on the time axis: the stand-in held its clock there.

Static SVG and HTML, no external assets; reads the keys of `Report.to_json()` and tolerates reports written
before the evaluations, holds and exposures were recorded.
"""

from __future__ import annotations

import html
import os
import statistics
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac"]
MARK_COLOURS = {
    "alarm": "#e15759",
    "exposure": "#d55e00",
    "decision": "#000000",
    "restore": "#59a14f",
    "lambda": "#b07aa1",
}
MARK_DASHES = {"alarm": "4,3", "exposure": "1,2"}
MARK_LABELS = {
    "alarm": "alarm fired",
    "exposure": "release exposed",
    "decision": "rollback decision",
    "restore": "restored",
}
# A scenario's own moments, from its dict in report["scenarios"]; other marks come from report["marks"].
SCENARIO_MOMENTS = {"exposure": "exposed_at", "decision": "decision_at", "restore": "restore_at"}
STATE_COLOURS = {"OK": "#59a14f", "ALARM": "#e15759", "INSUFFICIENT_DATA": "#bab0ac"}
UNKNOWN_STATE = "#333333"
ERROR_LINE = "#d62728"
LANE_H = 18


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def lane_labels(names: list[str]) -> dict[str, str]:
    """Alarm name -> its lane's label: the names without their common prefix (up to a '-')."""
    if len(names) < 2:
        return {n: n for n in names}
    prefix = os.path.commonprefix(names)  # noqa: RUF071 - a common name prefix, not a path
    cut = prefix.rfind("-") + 1
    return {n: n[cut:] or n for n in names}


def _minutes(drill_seconds: float, scale: float) -> str:
    aws = drill_seconds * scale
    return f"AWS {int(aws // 60)}m{int(aws % 60):02d}s"


def scenario_moments(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each scenario's exposure, decision and restore as marks: {"t", "kind", "text"}."""
    out = []
    for r in report.get("scenarios") or []:
        for kind, key in SCENARIO_MOMENTS.items():
            t = r.get(key)
            if t is None:
                continue
            what = {"exposure": "first production traffic to the release", "restore": "production restored"}
            text = what.get(kind) or f"rollback decision ({r.get('gate', '')}, {r.get('actor', '')})"
            out.append({"t": float(t), "kind": kind, "text": f"{r.get('scenario', '')}: {text}"})
    return out


@dataclass(frozen=True)
class Frame:
    """Where things go: drill seconds and shares -> pixels, the traffic chart and the lanes below it."""

    width: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    t_min: float
    t_max: float
    scale: float  # the report's time factor
    alarms: list[str]

    RIGHT: ClassVar[int] = 20
    TOP: ClassVar[int] = 68
    BOTTOM: ClassVar[int] = 40

    def x(self, t: float) -> float:
        return float(self.left + self.plot_w * (t - self.t_min) / (self.t_max - self.t_min))

    def y(self, share: float) -> float:
        return self.top + self.plot_h * (1 - share)

    def shown(self, t: float) -> bool:
        return self.t_min <= t <= self.t_max

    @property
    def lanes_top(self) -> int:
        return self.top + self.plot_h + self.BOTTOM

    @property
    def marks_bottom(self) -> int:
        """Where a scenario's vertical marks end: below the last lane, or the traffic chart."""
        return self.lanes_top + LANE_H * len(self.alarms) if self.alarms else self.top + self.plot_h

    @property
    def height(self) -> int:
        return self.lanes_top + (LANE_H * len(self.alarms) + 30 if self.alarms else 0)


def frame(report: dict[str, Any], width: int, height: int) -> Frame:
    alarms = sorted({e["alarm"] for e in report.get("evaluations") or []})
    longest = max((len(label) for label in lane_labels(alarms).values()), default=0)
    left = max(50, min(180, 12 + 6 * longest))
    starts = [m["t"] for m in report.get("scenario_marks") or []]
    t_min = max(0.0, min(starts) - 0.5) if starts else 0.0
    times = [s["t"] for s in report.get("series") or []]
    times += [e["t"] for e in report.get("evaluations") or []] + [m["t"] for m in scenario_moments(report)]
    t_max = max([t for t in times if t >= t_min] + [t_min + 1.0]) + 0.25
    return Frame(
        width=width,
        left=left,
        top=Frame.TOP,
        plot_w=width - left - Frame.RIGHT,
        plot_h=height - Frame.TOP - Frame.BOTTOM,
        t_min=t_min,
        t_max=t_max,
        scale=float(report.get("time_scale") or 1),
        alarms=alarms,
    )


def svg(report: dict[str, Any], width: int = 1100, height: int = 370) -> str:
    """The chart; `height` is the traffic chart's, the alarm lanes below it add theirs."""
    f = frame(report, width, height)
    series = [s for s in report.get("series") or [] if s["t"] >= f.t_min]
    holds = report.get("holds") or []
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{f.height}" '
            'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>',
            traffic(f, series),
            legend(f, bool(holds)),
            alarm_marks(f, report.get("marks") or []),
            axes(f, report.get("scenario_marks") or [], holds),
            lanes(f, report.get("evaluations") or []),
            moments(f, scenario_moments(report)),
            "</svg>",
        ]
    )


def traffic(f: Frame, series: list[dict[str, Any]]) -> str:
    """The stacked version shares (with their legend) and the failed-request line."""
    versions: list[str] = []
    for s in series:
        versions += [v for v in s["versions"] if v not in versions]
    versions.sort(key=lambda v: (v == "none", int(v[1:]) if v[1:].isdigit() else 99))
    parts = []
    base = [0.0] * len(series)
    for i, version in enumerate(versions):
        upper = []
        for j, s in enumerate(series):
            share = s["versions"].get(version, 0) / s["total"] if s["total"] else 0.0
            upper.append(base[j] + share)
        points = [f"{f.x(s['t']):.1f},{f.y(upper[j]):.1f}" for j, s in enumerate(series)]
        points += [f"{f.x(s['t']):.1f},{f.y(base[j]):.1f}" for j, s in reversed(list(enumerate(series)))]
        colour = PALETTE[i % len(PALETTE)] if version != "none" else "#cccccc"
        parts.append(
            f'<polygon points="{" ".join(points)}" fill="{colour}" fill-opacity="0.55" stroke="none"/>'
            f'<rect x="{f.left + 10 + 60 * i}" y="6" width="12" height="12" fill="{colour}"/>'
            f'<text x="{f.left + 26 + 60 * i}" y="16">{_esc(version)}</text>'
        )
        base = upper
    errors = [f"{f.x(s['t']):.1f},{f.y(s['bad'] / s['total'] if s['total'] else 0):.1f}" for s in series]
    if errors:
        parts.append(
            f'<polyline points="{" ".join(errors)}" fill="none" stroke="{ERROR_LINE}" stroke-width="2"/>'
        )
    return "".join(parts)


def legend(f: Frame, holds: bool) -> str:
    """The second legend row: the failed-request line, the vertical marks, the clock's holds."""
    lx = f.left + 10
    parts = [
        f'<line x1="{lx}" y1="28" x2="{lx + 20}" y2="28" stroke="{ERROR_LINE}" stroke-width="2"/>'
        f'<text x="{lx + 24}" y="32">failed or timed-out user requests</text>'
    ]
    for i, (kind, label) in enumerate(MARK_LABELS.items()):
        mx = f.left + 250 + 125 * i
        parts.append(
            f'<line x1="{mx}" y1="22" x2="{mx}" y2="34" stroke="{MARK_COLOURS[kind]}" stroke-width="1.5" '
            f'stroke-dasharray="{MARK_DASHES.get(kind, "none")}"/><text x="{mx + 5}" y="32">{label}</text>'
        )
    if holds:
        hx = f.left + 250 + 125 * len(MARK_LABELS)
        parts.append(
            f'<path d="M{hx - 4},34 L{hx},27 L{hx + 4},34 Z" fill="#555"/>'
            f'<text x="{hx + 7}" y="32">stand-in clock held</text>'
        )
    return "".join(parts)


def alarm_marks(f: Frame, marks: list[dict[str, Any]]) -> str:
    """report["marks"] but a scenario's own moments (so: alarms fired), on the traffic chart only."""
    parts = []
    for mark in marks:
        if mark["kind"] in SCENARIO_MOMENTS or not f.shown(mark["t"]):
            continue
        mx = f.x(mark["t"])
        parts.append(
            f'<line x1="{mx:.1f}" y1="{f.top}" x2="{mx:.1f}" y2="{f.top + f.plot_h}" '
            f'stroke="{MARK_COLOURS.get(mark["kind"], "#333333")}" '
            f'stroke-dasharray="{MARK_DASHES.get(mark["kind"], "none")}" class="mark {_esc(mark["kind"])}">'
            f"<title>{_esc(mark['text'])}</title></line>"
        )
    return "".join(parts)


def axes(f: Frame, scenario_marks: list[dict[str, Any]], holds: list[dict[str, Any]]) -> str:
    """The scenarios' starts and names, the frame, the time axis (drill s and AWS minutes), the holds."""
    parts = []
    ends = [0.0, 0.0]  # where the last name of each of the two rows ends
    for mark in scenario_marks:
        mx = f.x(mark["t"])
        # The name, and where its release's pipeline got to (stopped at a stage, or deployed).
        label = mark["scenario"] + (f" [{mark['pipeline']}]" if mark.get("pipeline") else "")
        row = 0 if mx >= ends[0] or ends[1] > mx else 1  # a name that would overlap goes one row up
        ends[row] = mx + 3 + 6.5 * len(label)
        parts.append(
            f'<line x1="{mx:.1f}" y1="{f.top - 6 - 11 * row}" x2="{mx:.1f}" y2="{f.top + f.plot_h}" '
            f'stroke="#999" stroke-width="0.5"/>'
            f'<text x="{mx + 3:.1f}" y="{f.top - 8 - 11 * row}" fill="#555">{_esc(label)}</text>'
        )
    bottom = f.top + f.plot_h
    parts.append(
        f'<rect x="{f.left}" y="{f.top}" width="{f.plot_w}" height="{f.plot_h}" fill="none" stroke="#333"/>'
        f'<text x="{f.left - 8}" y="{f.top + 4}" text-anchor="end">100%</text>'
        f'<text x="{f.left - 8}" y="{bottom + 4}" text-anchor="end">0%</text>'
    )
    step = max(1, round((f.t_max - f.t_min) / 12))
    for t in range(int(f.t_min) + 1, int(f.t_max) + 1, step):
        parts.append(
            f'<text x="{f.x(t):.1f}" y="{bottom + 16}" text-anchor="middle">{t}s</text>'
            f'<text x="{f.x(t):.1f}" y="{bottom + 30}" text-anchor="middle" fill="#777">'
            f"{t * f.scale / 60:.0f}m</text>"
        )
    for hold in holds:
        if not f.shown(hold["at"]):
            continue
        hx = f.x(hold["at"])
        why = f"for {float(hold.get('wall_seconds', 0)):g} wall s: {hold.get('reason', '')}"
        parts.append(
            f'<path class="hold" d="M{hx - 3:.1f},{bottom} L{hx:.1f},{bottom - 6} L{hx + 3:.1f},{bottom} Z" '
            f'fill="#555"><title>stand-in clock held at {hold["at"]:g}s {_esc(why)}</title></path>'
        )
    return "".join(parts)


def moments(f: Frame, marks: list[dict[str, Any]]) -> str:
    """Each scenario's exposure, decision and restore: vertical marks through the chart and the lanes."""
    parts = []
    for mark in marks:
        if not f.shown(mark["t"]):
            continue
        mx = f.x(mark["t"])
        parts.append(
            f'<line class="mark {mark["kind"]}" x1="{mx:.1f}" y1="{f.top}" x2="{mx:.1f}" '
            f'y2="{f.marks_bottom}" '
            f'stroke="{MARK_COLOURS[mark["kind"]]}" stroke-width="1.5" '
            f'stroke-dasharray="{MARK_DASHES.get(mark["kind"], "none")}"><title>{_esc(mark["text"])} '
            f"({mark['t']:g}s, {_minutes(mark['t'], f.scale)})</title></line>"
        )
    return "".join(parts)


def _tooltip(alarm: str, evaluation: dict[str, Any], scale: float) -> str:
    points = ", ".join(
        f"{_minutes(p[0], scale)} {'-' if p[1] is None else format(p[1], 'g')}"
        for p in evaluation.get("datapoints") or []
    )
    t = evaluation["t"]
    return (
        f"{alarm} at {t:g}s ({_minutes(t, scale)}): {evaluation.get('state')}; datapoints seen: "
        f"{points or 'none'}; {int(evaluation.get('pending') or 0)} received but not yet visible"
    )


def lanes(f: Frame, evaluations: list[dict[str, Any]]) -> str:
    """One lane per alarm: a mark per evaluation coloured by state, a ring when datapoints were pending."""
    if not f.alarms:
        return ""
    labels = lane_labels(f.alarms)
    by_alarm: dict[str, list[dict[str, Any]]] = {a: [] for a in f.alarms}
    for e in evaluations:
        if f.shown(e["t"]):
            by_alarm[e["alarm"]].append(e)
    gaps = [
        f.x(b["t"]) - f.x(a["t"])
        for marks in by_alarm.values()
        for a, b in pairwise(marks)
        if b["t"] > a["t"]
    ]
    gap = statistics.median(gaps) if gaps else 12.0
    w = max(1.5, min(8.0, 0.6 * gap))
    parts = []
    for i, alarm in enumerate(f.alarms):
        ly = f.lanes_top + LANE_H * i
        parts.append(
            f'<rect x="{f.left}" y="{ly}" width="{f.plot_w}" height="{LANE_H}" '
            f'fill="{"#f7f7f7" if i % 2 else "white"}" stroke="#ddd"/>'
            f'<text x="{f.left - 6}" y="{ly + 12}" text-anchor="end" font-size="10">'
            f"{_esc(labels[alarm])}<title>{_esc(alarm)}</title></text>"
        )
        for e in by_alarm[alarm]:
            ex, state = f.x(e["t"]), str(e.get("state"))
            colour = STATE_COLOURS.get(state, UNKNOWN_STATE)
            tip = _esc(_tooltip(alarm, e, f.scale))
            parts.append(
                f'<rect class="evaluation" data-alarm="{_esc(alarm)}" data-state="{_esc(state)}" '
                f'x="{ex - w / 2:.1f}" y="{ly + 7}" width="{w:.1f}" height="{LANE_H - 9}" fill="{colour}">'
                f"<title>{tip}</title></rect>"
            )
            pending = int(e.get("pending") or 0)
            if pending:
                r = max(1.5, min(3.0, w / 2))
                parts.append(
                    f'<circle class="pending" data-pending="{pending}" cx="{ex:.1f}" cy="{ly + 3.5}" '
                    f'r="{r:.1f}" fill="white" stroke="{colour}" stroke-width="1.2">'
                    f"<title>{tip}</title></circle>"
                )
                if gap >= 16:
                    parts.append(
                        f'<text x="{ex + r + 1:.1f}" y="{ly + 6}" font-size="7" fill="#555">{pending}</text>'
                    )
    ly = f.lanes_top + LANE_H * len(f.alarms) + 18
    parts.append(f'<text x="{f.left}" y="{ly}">alarm evaluations, once an AWS minute:</text>')
    lx = f.left + 230
    for state, colour in STATE_COLOURS.items():
        parts.append(
            f'<rect x="{lx}" y="{ly - 10}" width="6" height="11" fill="{colour}"/>'
            f'<text x="{lx + 10}" y="{ly}">{state}</text>'
        )
        lx += 30 + 7 * len(state)
    parts.append(
        f'<circle cx="{lx + 3}" cy="{ly - 5}" r="3" fill="white" stroke="#555" stroke-width="1.2"/>'
        f'<text x="{lx + 10}" y="{ly}">datapoints received but not yet visible (ingestion lag; count beside '
        "or in the tooltip)</text>"
    )
    return "".join(parts)


def _cell(value: object) -> str:
    return "-" if value is None else _esc(value)


def write_html(report: dict[str, Any], path: Path) -> None:
    rows = "".join(
        f"<tr><td>{_esc(r['scenario'])}</td><td>{_esc(r['outcome'])}</td>"
        f"<td>{_esc((r.get('pipeline') or {}).get('path', '-'))}</td>"
        f"<td>{_esc(r['gate'])}</td>"
        f"<td>{r['users']['failed'] + r['users']['timed_out']}/{r['users']['total']}</td>"
        f"<td>{_cell(r.get('exposed_at'))}</td>"
        f"<td>{_cell((r.get('time_to_detect') or {}).get('aws'))}</td>"
        f"<td>{_cell((r.get('time_to_restore') or {}).get('aws'))}</td>"
        f"<td>{_esc(r['serving_before'])} &rarr; {_esc(r['serving_after'])}</td></tr>"
        for r in report["scenarios"]
    )
    rate = report.get("user_rate_per_aws_minute")
    holds = report.get("holds") or []
    held = sum(float(h.get("wall_seconds", 0)) for h in holds)
    page = (
        "<!doctype html><meta charset='utf-8'><title>Phoenix Pipeline drill</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}</style>"
        f"<h1>Phoenix Pipeline drill</h1><p>time scale x{report['time_scale']:g}"
        + (f"; {rate:g} user requests per AWS minute" if rate is not None else "")
        + (f"; the stand-in held its clock {len(holds)} time(s), {held:.1f} wall s in all" if holds else "")
        + ". Drill seconds on the axis, AWS-equivalent minutes below. Areas: share of user requests served "
        "by each version; red line: share that failed or timed out; dashed red: alarm fired; dotted orange: "
        "the release's first production traffic; black: rollback decision; green: production restored. Lanes "
        "below: each alarm's evaluations, coloured by state (green OK, red ALARM, grey INSUFFICIENT_DATA), a "
        "hollow ring where CloudWatch held datapoints it had received but not yet shown (hover for the "
        f"datapoints).</p>{svg(report)}<table><tr><th>scenario</th><th>outcome</th><th>pipeline</th><th>gate</th>"
        "<th>users failed/total</th><th>exposed (drill s)</th>"
        f"<th>detect (AWS s)</th><th>restore (AWS s)</th><th>serving</th></tr>{rows}</table>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    path.with_suffix(".svg").write_text(svg(report))
