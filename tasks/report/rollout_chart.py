"""The traffic shift as the release artifact shows it: a markdown table and an SVG chart. Pure.

The chart is drawn by hand (no plotting library in the image): the new model's share of traffic as
a step line, invocations and 5xx errors per step as bars, the p99 latency as dots on its own scale,
and a mark where an alarm fired. It embeds into the markdown as a data URI, or is written to a file
the markdown links to.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence

from tasks.rollout.runner import RolloutReport, StepRecord

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 56, 28, 44


def _cell(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) and digits else f"{value:g}"


def short_alarm(name: str, report: RolloutReport) -> str:
    """The alarm name without the endpoint-release prefix every guard alarm shares."""
    if name not in report.guard_alarms or len(report.guard_alarms) < 2:
        return name
    split = [alarm.split("-") for alarm in report.guard_alarms]
    shared = 0
    while all(len(parts) > shared + 1 and parts[shared] == split[0][shared] for parts in split):
        shared += 1
    return "-".join(name.split("-")[shared:])


def steps_table(report: RolloutReport) -> str:
    header = (
        "| # | step | new model % | invocations | 5xx | 4xx | p99 ms | bake requests | alarms | outcome |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for step in report.steps:
        states = (
            ", ".join(f"{short_alarm(n, report)} {s}" for n, s in sorted(step.alarm_states.items())) or "-"
        )
        p99 = _cell(step.p99_ms, 1) + (f" ({step.p99_source})" if step.p99_source == "bake traffic" else "")
        duration = max(0.0, step.ended_at - step.started_at)
        rows.append(
            f"| {step.index + 1} | {html.escape(step.label)} ({duration:.0f} s) | {step.weight_percent:g} | "
            f"{_cell(step.invocations)} | {_cell(step.errors_5xx)} | {_cell(step.errors_4xx)} | {p99} | "
            f"{step.bake_requests} | {html.escape(states)} | **{step.outcome}** |"
        )
    return "\n".join([header, *rows])


def steps_svg(report: RolloutReport) -> str:
    """An SVG chart of the steps (an empty chart with a note when there are none)."""
    steps = list(report.steps)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="16" font-size="13">Traffic shift of {html.escape(report.endpoint)} '
        f"({html.escape(report.strategy)}): {html.escape(report.outcome)}</text>",
    ]
    parts += _axes(plot_w, plot_h)
    if not steps:
        parts.append(f'<text x="{LEFT + 10}" y="{TOP + plot_h / 2}">no steps recorded</text></svg>')
        return "\n".join(parts)
    t0 = steps[0].started_at
    span = max(1.0, max(s.ended_at for s in steps) - t0)

    def x(t: float) -> float:
        return LEFT + plot_w * (t - t0) / span

    def y_share(percent: float) -> float:
        return TOP + plot_h * (1 - percent / 100.0)

    most = max([s.invocations or 0 for s in steps] + [1])
    slowest = max([s.p99_ms or 0.0 for s in steps] + [1.0])
    for step in steps:
        left, right = x(step.started_at), max(x(step.ended_at), x(step.started_at) + 3)
        width = max(2.0, (right - left) * 0.6)
        middle = (left + right) / 2
        if step.invocations:
            h = plot_h * 0.5 * step.invocations / most
            parts.append(
                f'<rect x="{middle - width / 2:.1f}" y="{TOP + plot_h - h:.1f}" width="{width:.1f}" '
                f'height="{h:.1f}" fill="#c8ccd2"><title>{step.invocations} invocations</title></rect>'
            )
        if step.errors_5xx:
            h = max(2.0, plot_h * 0.5 * step.errors_5xx / most)
            parts.append(
                f'<rect x="{middle - width / 4:.1f}" y="{TOP + plot_h - h:.1f}" width="{width / 2:.1f}" '
                f'height="{h:.1f}" fill="#d62728"><title>{step.errors_5xx} 5xx errors</title></rect>'
            )
        if step.p99_ms is not None:
            cy = TOP + plot_h * (1 - step.p99_ms / slowest)
            parts.append(
                f'<circle cx="{middle:.1f}" cy="{cy:.1f}" r="4" fill="#ff7f0e">'
                f"<title>p99 {step.p99_ms:g} ms</title></circle>"
            )
        if step.outcome == "alarm":
            parts.append(
                f'<text x="{middle:.1f}" y="{TOP + 12}" text-anchor="middle" fill="#d62728" '
                f'font-weight="bold">alarm</text>'
            )
    parts.append(_share_line(steps, x, y_share))
    parts += _labels(plot_w, plot_h, span, slowest)
    parts.append("</svg>")
    return "\n".join(parts)


def _axes(plot_w: float, plot_h: float) -> list[str]:
    lines = [
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#333"/>',
    ]
    for percent in (0, 50, 100):
        y = TOP + plot_h * (1 - percent / 100)
        lines.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{percent}%</text>')
        lines.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
    return lines


def _share_line(steps: Sequence[StepRecord], x: Callable[[float], float], y: Callable[[float], float]) -> str:
    points: list[str] = []
    for step in steps:
        points.append(f"{x(step.started_at):.1f},{y(step.weight_percent):.1f}")
        points.append(f"{x(step.ended_at):.1f},{y(step.weight_percent):.1f}")
    return (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#1f77b4" stroke-width="2.5">'
        "<title>share of traffic on the new model</title></polyline>"
    )


def _labels(plot_w: float, plot_h: float, span: float, slowest: float) -> list[str]:
    base = TOP + plot_h
    return [
        f'<text x="{LEFT + plot_w}" y="{base + 16}" text-anchor="end">{span:.0f} s</text>',
        f'<text x="{LEFT}" y="{base + 16}">0 s</text>',
        f'<text x="{LEFT + plot_w + 6}" y="{TOP + 4}" fill="#ff7f0e">{slowest:g} ms</text>',
        f'<text x="{LEFT + plot_w + 6}" y="{base}" fill="#ff7f0e">0 ms</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 8}"><tspan fill="#1f77b4">━ new model %</tspan>  '
        '<tspan fill="#8a8f96">▮ invocations</tspan>  <tspan fill="#d62728">▮ 5xx</tspan>  '
        '<tspan fill="#ff7f0e">● p99 latency</tspan></text>',
    ]


def worth_a_chart(report: RolloutReport) -> bool:
    """A chart shows traffic moving: a new endpoint's single bake, or steps with no figures, would be an
    empty frame, so those get the table alone."""
    if report.strategy == "create" or not report.steps:
        return False
    return any(
        step.invocations or step.bake_requests or step.p99_ms is not None or step.outcome == "alarm"
        for step in report.steps
    )


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def markdown(report: RolloutReport, *, chart_url: str | None = None) -> str:
    """The rollout section of the release artifact: summary line, chart, table."""
    fired = f"; alarm(s) fired: {', '.join(report.fired)}" if report.fired else ""
    lines = [
        f"## Traffic shift: {report.strategy} — {report.outcome}",
        "",
        f"{html.escape(report.reason)}. New model on variant `{report.new_variant}`, final config "
        f"`{report.final_config}`, previous config `{report.previous_config or '-'}`{fired}.",
        "",
    ]
    if worth_a_chart(report):
        chart = chart_url or svg_data_uri(steps_svg(report))
        lines += [f"![traffic shift of {report.endpoint}]({chart})", ""]
    lines.append(steps_table(report))
    if report.rollback_alarms:
        lines += ["", "Rollback alarms: " + ", ".join(f"`{name}`" for name in report.rollback_alarms)]
    return "\n".join(lines)
