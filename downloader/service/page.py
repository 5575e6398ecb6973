"""The status page (``GET /`` on the health listener): the coverage grid as one HTML document.

Server-rendered from a status report (the one ``/metrics`` and ``/status.json`` serve), with its
CSS inline and no script, so it works air-gapped and under a strict Content-Security-Policy.
Every value that comes from the config, the checkpoint or an API (item ids, error messages,
paths) goes through :func:`html.escape`. Pure: a report in, a string out.

Cells of one state that follow each other inside a day are one ``<td colspan=N>`` (a day of
done hours is one element, not 24), so 1,000 rows × 15 days stay a small page that renders
fast here and in the browser; a failed or waiting cell is always its own element, with its
note in ``title=``. Count cells by summing ``colspan``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape
from typing import Any

from downloader.service.grid import (
    FAILED,
    HOURS,
    SKIPPED,
    STATES,
    WAITING,
    Axis,
    Row,
    Section,
    counts,
    notes,
    report_now,
    sections,
)

# A project whose freshness is above this is late (the alert rule's threshold).
LATE_SECONDS = 3 * 3600
MAX_FAILURES_LISTED = 100
MAX_WAITING_LISTED = 10  # the longest waits; the cells show every one
REFRESH_SECONDS = 60
NAMES = {letter: name for letter, (name, _) in STATES.items()}
_RUNS = re.compile(r"(.)\1*")
# The grid's columns get at least this many pixels per hour; wider screens get more.
MIN_HOUR_PX = 3
LABEL_PX = 230
FRESH_PX = 90

CSS = """
:root{color-scheme:light}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
margin:16px 20px;color:#1d2433;background:#fff}
header{display:flex;flex-wrap:wrap;gap:.3em 1.6em;align-items:baseline;margin-bottom:.6em}
h1{font-size:20px;margin:0}h2{font-size:16px;margin:1.4em 0 .4em}
.muted{color:#5b6575}a{color:#1f5fbf}
ul.legend{list-style:none;padding:0;margin:.4em 0 0;display:flex;flex-wrap:wrap;gap:.3em 1.4em}
ul.legend .c{display:inline-block;width:14px;height:14px;vertical-align:-2px;margin-right:.35em;
border:1px solid #c9d0d8}
.scroll{overflow-x:auto;border:1px solid #e3e7ec;border-radius:4px}
table.grid{border-collapse:collapse;table-layout:fixed;width:100%}
table.grid col.label{width:LABEL_PXpx}table.grid col.fresh{width:FRESH_PXpx}
table.grid colgroup.day{border-left:2px solid #fff}
table.grid th{font-weight:normal;font-size:12px;color:#5b6575;padding:0 2px;text-align:left;
white-space:nowrap;overflow:hidden}
table.grid thead th.day{color:#1d2433;font-weight:600;border-left:2px solid #fff}
table.grid tbody th{position:sticky;left:0;z-index:1;background:#fff;padding:0 8px;font-size:13px;
color:#1d2433;text-overflow:ellipsis}
table.grid tbody th small{color:#5b6575}
table.grid tbody tr{border-top:3px solid #fff}
table.grid tbody tr:hover th{background:#eef3fb}
td.c{height:15px;padding:0}
td.fresh{padding:0 8px;font-size:12px;white-space:nowrap;font-variant-numeric:tabular-nums}
td.fresh.late{color:#b3261e;font-weight:600}
.d{background:#2e7d32}.p{background:#b8c4ce}
.W{background:repeating-linear-gradient(135deg,#f2a900 0 3px,#ffd666 3px 6px)}
.F{background:#c62828}.n{background:#eef1f4}
.s{background:repeating-linear-gradient(135deg,#dfe4e9 0 2px,#fff 2px 5px)}
table.list{border-collapse:collapse;font-size:13px}
table.list th,table.list td{text-align:left;padding:3px 10px 3px 0;border-bottom:1px solid #e3e7ec;
vertical-align:top}
table.list td.err{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
word-break:break-word;max-width:60em}
footer{margin-top:2em;font-size:12px;color:#5b6575}
""".replace("LABEL_PX", str(LABEL_PX)).replace("FRESH_PX", str(FRESH_PX))


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def render_page(report: Mapping[str, Any], version: str) -> str:
    """The whole page for one status report."""
    axis = Axis.from_json(report["grid"])
    secs = sections(report)
    now = report_now(report)
    tally = counts(secs)
    hover = notes(report)
    out: list[str] = [
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content=\"width=device-width,initial-scale=1\">",
        f"<meta http-equiv=refresh content={REFRESH_SECONDS}>",
        f"<title>gio-downloader status {now:%Y-%m-%d %H:%M}</title>",
        "<style>", CSS, "</style></head><body>",
        "<header><h1>gio-downloader</h1>",
        f"<span class=version>version {_e(version)}</span>",
        f"<span>status at <time datetime=\"{_e(report['now'])}\">{now:%Y-%m-%d %H:%M:%S}"
        "</time> Beijing (UTC+8)</span>",
        f"<span class=muted>window from {_e(_hour_text(report['window_first_hour']))}</span>",
        f"<span class=muted>checkpoint {_e(report.get('checkpoint', ''))}</span>",
        "<span><a href=\"status.json\">status.json</a> · <a href=\"metrics\">metrics</a>"
        "</span></header>",
        "<ul class=legend>",
    ]
    for letter, (name, meaning) in STATES.items():
        out.append(f"<li data-state={letter} title=\"{_e(meaning)}\"><span class=\"c {letter}\">"
                   f"</span>{_e(name)} <b class=count>{tally[letter]}</b></li>")
    out.append("</ul><p class=muted>One cell per partition: an hour of an hourly export, a "
               "day of the others. Hover a cell for its time and state, a failed one for its "
               "last error. Hours and days are Beijing time.</p>")
    for section in secs:
        out.append(_section(section, axis, hover))
    out.append(_waiting(report))
    out.append(_failures(report))
    out.append(f"<footer>gio-downloader {_e(version)} · this page refreshes every "
               f"{REFRESH_SECONDS} s · the same data: <a href=\"status.json\">status.json</a>"
               "</footer></body></html>\n")
    return "".join(out)


def render_unavailable(reason: str, version: str) -> str:
    """The page when no status report can be built (the checkpoint cannot be read)."""
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>gio-downloader status unavailable</title><style>{CSS}</style></head>"
            "<body><header><h1>gio-downloader</h1>"
            f"<span class=version>version {_e(version)}</span></header>"
            f"<p>The status is not available right now: {_e(reason)}</p>"
            "<p class=muted>The daemon's log says more; this page tries again on reload.</p>"
            "</body></html>\n")


def _hour_text(label: str) -> str:
    return f"{label[:4]}-{label[4:6]}-{label[6:8]} {label[8:10]}:00" if len(label) == 10 \
        else label


def _section(section: Section, axis: Axis, hover: Mapping[tuple[str, str, str], str]) -> str:
    width = LABEL_PX + FRESH_PX + axis.days * HOURS * MIN_HOUR_PX
    out = [f"<section class=source id=\"source-{_e(section.source)}\" "
           f"data-source=\"{_e(section.source)}\"><h2>{_e(section.title)}</h2>"
           f"<div class=scroll><table class=grid style=\"min-width:{width}px\">"
           "<colgroup><col class=label></colgroup>",
           f"<colgroup class=day span={HOURS}></colgroup>" * axis.days,
           "<colgroup><col class=fresh></colgroup><thead><tr><th rowspan=2>item</th>"]
    for d in range(axis.days):
        day = axis.day(d)
        out.append(f"<th class=day colspan={HOURS} title=\"{day:%Y-%m-%d %A}\">"
                   f"{day:%a %m-%d}</th>")
    out.append("<th rowspan=2>freshness</th></tr><tr>")
    out.append("".join(f"<th colspan=6>{h:02d}</th>" for h in range(0, HOURS, 6)) * axis.days)
    out.append("</tr></thead><tbody>")
    if not section.rows:
        out.append(f"<tr><td colspan={axis.days * HOURS + 2} class=muted>nothing due in the "
                   "window</td></tr>")
    grid = _Cells(axis, hover)
    for row in section.rows:
        out.append(_row(row, grid))
    out.append("</tbody></table></div></section>")
    return "".join(out)


class _Cells:
    """Renders rows' cells, remembering what repeats: a day's 24 hours without a failed or
    waiting cell, and whole rows without one (most rows of a healthy lake look alike)."""

    def __init__(self, axis: Axis, hover: Mapping[tuple[str, str, str], str]) -> None:
        self.axis = axis
        self.hover = hover
        self.days = [f"{axis.day(d):%Y-%m-%d}" for d in range(axis.days)]
        self.whole = {letter: [f"<td class=\"c {letter}\" colspan={HOURS} title=\"{day} "
                               f"{name}\"></td>" for day in self.days]
                      for letter, name in NAMES.items()}
        self.chunks: dict[tuple[int, str], str] = {}
        self.rows: dict[tuple[str, str], str] = {}

    def row(self, row: Row) -> str:
        cells, hourly = row.cells, row.export_type == "hour"
        noted = FAILED in cells or WAITING in cells
        key = (row.export_type, cells)
        if not noted and key in self.rows:
            return self.rows[key]
        out: list[str] = []
        for d in range(self.axis.days):
            if not hourly:
                letter = cells[d] if d < len(cells) else SKIPPED
                out.append(self.note(row, d, self.days[d], HOURS)
                           if letter in (FAILED, WAITING) else self.whole[letter][d])
                continue
            chunk = cells[d * HOURS:(d + 1) * HOURS].ljust(HOURS, SKIPPED)
            html = self.chunks.get((d, chunk))
            if html is None:
                if FAILED in chunk or WAITING in chunk:
                    html = self.hours(row, d, chunk)
                else:
                    html = self.chunks[(d, chunk)] = self.hours(row, d, chunk)
            out.append(html)
        text = "".join(out)
        if not noted:
            self.rows[key] = text
        return text

    def hours(self, row: Row, d: int, chunk: str) -> str:
        day = self.days[d]
        if chunk.count(chunk[0]) == HOURS and chunk[0] not in (FAILED, WAITING):
            return self.whole[chunk[0]][d]
        out: list[str] = []
        for run in _RUNS.finditer(chunk):
            letter, hour, end = run.group(1), run.start(), run.end()
            if letter in (FAILED, WAITING):
                out.extend(self.note(row, d * HOURS + h, f"{day} {h:02d}:00", 1)
                           for h in range(hour, end))
            elif end - hour == 1:
                out.append(f"<td class=\"c {letter}\" title=\"{day} {hour:02d}:00 "
                           f"{NAMES[letter]}\"></td>")
            else:  # letters and names are the page's own (grid.sections keeps known ones)
                out.append(f"<td class=\"c {letter}\" colspan={end - hour} title=\"{day} "
                           f"{hour:02d}:00–{end - 1:02d}:59 {NAMES[letter]}\"></td>")
        return "".join(out)

    def note(self, row: Row, index: int, when: str, span: int) -> str:
        letter = row.cells[index]
        note = self.hover.get((row.source, row.item, row.partition(index, self.axis)),
                              NAMES[letter])
        colspan = f" colspan={span}" if span > 1 else ""
        return f"<td class=\"c {letter}\"{colspan} title=\"{_e(when)} {_e(note)}\"></td>"


def _row(row: Row, grid: _Cells) -> str:
    item, source, export = _e(row.item), _e(row.source), _e(row.export_type)
    kind = f" <small>{export}</small>" if row.source == "raw" else ""
    head = (f"<tr data-source=\"{source}\" data-item=\"{item}\" data-export=\"{export}\">"
            f"<th scope=row title=\"{source}:{item} ({export})\">{item}{kind}</th>")
    late = " late" if row.export_type == "hour" and row.age_seconds is not None \
        and row.age_seconds > LATE_SECONDS else ""
    return f"{head}{grid.row(row)}<td class=\"fresh{late}\">{_e(row.freshness)}</td></tr>"


def _waiting(report: Mapping[str, Any]) -> str:
    rows = report.get("waiting", [])
    if not rows:
        return ""
    out = ["<section id=waiting><h2>Being built (longest waits)</h2><table class=list><thead><tr>"
           "<th>partition</th><th>since</th><th>polls</th><th>last answer</th></tr></thead>"
           "<tbody>"]
    rows = sorted(rows, key=lambda w: -int(w.get("seconds") or 0))
    for w in rows[:MAX_WAITING_LISTED]:
        out.append(f"<tr><td>{_e(w['partition'])}</td><td>{_e(w['since'])}</td>"
                   f"<td>{_e(w['polls'])}</td><td>{_e(w['reason'])}</td></tr>")
    out.append("</tbody></table>")
    if len(rows) > MAX_WAITING_LISTED:
        out.append(f"<p class=muted>… and {len(rows) - MAX_WAITING_LISTED} more (the cells "
                   "show them all).</p>")
    out.append("</section>")
    return "".join(out)


def _failures(report: Mapping[str, Any]) -> str:
    failed = sorted(report.get("failed", []), key=lambda f: str(f.get("updated_at") or ""),
                    reverse=True)
    out = ["<section id=failures><h2>Newest failures</h2>"]
    if not failed:
        out.append("<p class=muted>No failed partition in the checkpoint.</p></section>")
        return "".join(out)
    out.append("<table class=list><thead><tr><th>partition</th><th>attempts</th>"
               "<th>last try (UTC)</th><th>last error</th></tr></thead><tbody>")
    for f in failed[:MAX_FAILURES_LISTED]:
        out.append(f"<tr><td>{_e(f['partition'])}</td><td>{_e(f['attempts'])}</td>"
                   f"<td>{_e(f['updated_at'])}</td><td class=err>{_e(f['error'])}</td></tr>")
    out.append("</tbody></table>")
    if len(failed) > MAX_FAILURES_LISTED:
        out.append(f"<p class=muted>… and {len(failed) - MAX_FAILURES_LISTED} more in "
                   "<a href=\"status.json\">status.json</a>.</p>")
    out.append("</section>")
    return "".join(out)
