"""report.md as a self-contained-looking HTML page (figures stay files beside it).

Converts the Markdown subset the reports use: headings, paragraphs, pipe tables, images,
links, inline code, and fenced code blocks; nothing else is needed and no dependency is added.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}"
         "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
         "th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#f3f3f3}"
         "img{max-width:100%}code{background:#f3f3f3}")


def _inline(text: str) -> str:
    """Escape, then images, links and inline code."""
    text = html.escape(text, quote=False).replace("\\|", "|")
    text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def markdown_to_html(markdown: str, title: str = "lftbench report") -> str:
    """The HTML page of a report's Markdown."""
    out, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:end])) + "</pre>")
            i = end + 1
            continue
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= {"-", ":"} for c in r)]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            continue
        heading = re.match(r"(#{1,6}) (.*)", line)
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def write_html(report: Path) -> Path:
    """Write report.html beside ``report`` (report.md); returns its path."""
    report = Path(report)
    target = report.with_suffix(".html")
    target.write_text(markdown_to_html(report.read_text()))
    return target
