"""The dashboard's HTML: one layout, tables, a pager, filters and formatting.

Pages are rendered on the server from plain rows; every value goes through ``esc``
(names, errors and log lines come from user code). No template engine, no JavaScript
build: a page is a string.
"""

from __future__ import annotations

import datetime
import html
import urllib.parse
from typing import Any, Iterable, Sequence

#: (path, label) of the navigation bar, in order.
NAV = (("/", "Overview"), ("/jobs", "Jobs"), ("/tasks", "Tasks"), ("/actors", "Actors"),
       ("/objects", "Objects"), ("/placement_groups", "Placement groups"), ("/logs", "Logs"),
       ("/serve", "Serve"), ("/train", "Train/Tune"), ("/metrics", "Metrics"))

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
nav{background:#23272f;padding:.5em 1em}nav a{color:#d0d4dc;margin-right:1.2em;text-decoration:none}
nav a.on{color:#fff;font-weight:600}main{padding:1em 1.5em}h1{font-size:1.4em}h2{font-size:1.1em}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef0f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #ddd;padding:.6em;overflow-x:auto;font-size:.85em}
.FAILED,.DEAD,.failed{color:#b00020;font-weight:600}.RUNNING,.ALIVE,.alive{color:#0a7d32}
.meter{white-space:nowrap}.bar{display:inline-block;width:8em;height:.8em;background:#e3e6ec;vertical-align:middle}
.bar span{display:block;height:100%;background:#4c7bd9}
form.filters input,form.filters select{font:inherit;padding:.2em}.muted{color:#777}
mark{background:#ffe58a}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def page(title: str, active: str, body: str) -> str:
    """A whole page: the navigation bar, a heading, ``body`` (already HTML)."""
    links = "".join(f'<a href="{path}"{" class=on" if path == active else ""}>{esc(label)}</a>'
                    for path, label in NAV)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)} - ember'
            f'</title><style>{_STYLE}</style></head><body><nav>{links}'
            f'<a href="/logout" style="float:right">Log out</a></nav>'
            f'<main><h1>{esc(title)}</h1>{body}</main></body></html>')


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], table_id: str) -> str:
    """A table of already-rendered cells (use ``esc``, ``link``, ``num`` to make them)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>"
                                    for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(columns)}" class="muted">none</td></tr>'
    return f'<table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def num(value: str) -> str:
    return f'<td class="num">{value}</td>'


def link(href: str, text: Any) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def state(value: Any) -> str:
    return f'<span class="{esc(value)}">{esc(value)}</span>'


def bar(fraction: float, label: str) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return (f'<span class="meter"><span class="bar"><span style="width:{pct:.0f}%"></span></span> '
            f'{esc(label)}</span>')


def pager(path: str, params: dict[str, str], offset: int, limit: int, total: int) -> str:
    """'rows a-b of n' with previous/next links that keep the filters."""
    def href(new_offset: int) -> str:
        return f"{path}?{urllib.parse.urlencode({**params, 'offset': new_offset, 'limit': limit})}"
    shown_to = min(offset + limit, total)
    parts = [f'<span id="pager-range">{offset + 1 if total else 0}-{shown_to} of {total}</span>']
    if offset > 0:
        parts.append(link(href(max(0, offset - limit)), "previous"))
    if shown_to < total:
        parts.append(link(href(offset + limit), "next"))
    return '<p class="pager">' + " &middot; ".join(parts) + "</p>"


def filter_form(path: str, fields: Sequence[tuple[str, str, Sequence[str] | None]],
                values: dict[str, str]) -> str:
    """A GET form: (name, label, choices or None for free text) per field."""
    out = []
    for name, label, choices in fields:
        current = values.get(name, "")
        if choices is None:
            out.append(f'<label>{esc(label)} <input name="{esc(name)}" value="{esc(current)}"></label>')
        else:
            options = "".join(f'<option value="{esc(c)}"{" selected" if c == current else ""}>'
                              f'{esc(c or "any")}</option>' for c in ("", *choices))
            out.append(f'<label>{esc(label)} <select name="{esc(name)}">{options}</select></label>')
    return (f'<form class="filters" method="get" action="{esc(path)}">{" ".join(out)} '
            f'<button type="submit">Filter</button></form>')


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def fmt_time(epoch_s: float | None) -> str:
    if not epoch_s:
        return ""
    return datetime.datetime.fromtimestamp(epoch_s).strftime("%Y-%m-%d %H:%M:%S")
