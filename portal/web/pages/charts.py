"""One small chart helper: horizontal bar charts as inline SVG, drawn on the server.

No JavaScript and no charting library: the SVG is built from escaped pieces, every bar has its
number printed beside it, colours come from CSS classes (`series-N`, no inline style), and a
table with the same numbers follows the picture as its text alternative.
"""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH = 560
LABEL_W = 170
BAR_MAX = 300
ROW_H = 20
GROUP_H = 22
PAD = 8
SERIES = 6


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if digits else f"{round(value):d}"


def bar_chart(
    chart_id: str,
    title: str,
    groups: list[tuple[str, list[tuple[str, float]]]],
    *,
    unit: str = "",
    digits: int = 0,
    caption: str = "",
) -> Markup:
    """Returns a `<figure>`: an SVG of `groups` (heading, [(bar label, value)]) and a table.

    Bars in a group take the series class of their position, so the same label (a model, say)
    has the same colour in every group. `unit` follows each printed number.
    """
    values = [v for _, bars in groups for _, v in bars]
    top = max(values, default=0) or 1
    rows = sum(len(bars) for _, bars in groups)
    height = PAD * 2 + GROUP_H * len(groups) + ROW_H * rows
    suffix = f" {unit}" if unit else ""
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}-svg" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title" '
        f'preserveAspectRatio="xMinYMin meet">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    y = PAD
    for heading, bars in groups:
        parts.append(
            f'<text class="chart-group" x="0" y="{y + GROUP_H - 7}">{escape(heading)}</text>'
        )
        y += GROUP_H
        for position, (label, value) in enumerate(bars):
            width = round(BAR_MAX * value / top, 1) if value > 0 else 0
            shown = f"{_number(value, digits)}{suffix}"
            parts.append(
                f'<g class="bar-row series-{position % SERIES}" data-label="{escape(label)}" '
                f'data-value="{escape(_number(value, digits))}">'
                f'<text class="chart-label" x="{LABEL_W - 6}" y="{y + ROW_H - 6}" '
                f'text-anchor="end">{escape(label)}</text>'
                f'<rect class="bar" x="{LABEL_W}" y="{y + 3}" width="{width}" '
                f'height="{ROW_H - 6}"></rect>'
                f'<text class="chart-value" x="{LABEL_W + width + 5}" '
                f'y="{y + ROW_H - 6}">{escape(shown)}</text></g>'
            )
            y += ROW_H
    parts.append("</svg>")
    table = [
        '<details class="chart-table"><summary>The same numbers as a table</summary>',
        f"<table><caption>{escape(title)}</caption><tbody>",
    ]
    for heading, bars in groups:
        for label, value in bars:
            table.append(
                f'<tr><th scope="row">{escape(heading)} · {escape(label)}</th>'
                f"<td>{escape(_number(value, digits))}{escape(suffix)}</td></tr>"
            )
    table.append("</tbody></table></details>")
    figcaption = f"<figcaption>{escape(title)}"
    if caption:
        figcaption += f' <span class="muted">{escape(caption)}</span>'
    figcaption += "</figcaption>"
    return Markup(
        f'<figure class="chart-figure" id="{escape(chart_id)}">{figcaption}'
        + "".join(parts)
        + "".join(table)
        + "</figure>"
    )
