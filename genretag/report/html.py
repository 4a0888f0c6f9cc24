"""One self-contained HTML page: escaped text, tables, and matplotlib figures inlined as PNG data.

The page loads nothing: no script, no font, no stylesheet or image from elsewhere, so it opens offline
and a path or tag text (``<script>.mp3``) shows as text. Every string from the library goes
through :func:`esc`; only :class:`Html` values (built here) pass unescaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from matplotlib.figure import Figure

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; } td, th { padding: .2em .6em; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; } .note { color: #666; } code { background: #f4f4f4; padding: 0 .2em; }
"""


class Html(str):
    """Markup built by this module: inserted as is."""


def esc(value: object) -> Html:
    """Text for the page: ``None`` as a dash, numbers as written, everything escaped."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("-" if value is None else str(value), quote=True))


def plain(label: object) -> str:
    """Text for a matplotlib label: ``$`` would start mathtext (and an odd one fails to draw)."""
    return str(label).replace("$", r"\$")


def figure(fig: Figure, alt: str) -> Html:
    """A figure as an inline PNG image."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return Html(f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">')


def number(n: float | int | None, digits: int = 3) -> Html:
    if n is None:
        return esc(None)
    return esc(f"{n:,}" if isinstance(n, int) else f"{n:.{digits}f}")


def share(part: int, whole: int) -> Html:
    return esc(f"{part / whole:.1%}" if whole else "-")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> Html:
    """A table; columns whose index is in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    cell = ('<td class="n">', "<td>")
    body = "".join(
        "<tr>" + "".join(f"{cell[i not in numeric]}{esc(v)}</td>" for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def paragraph(*parts: object, note: bool = False) -> Html:
    cls = ' class="note"' if note else ""
    return Html(f"<p{cls}>" + "".join(esc(p) for p in parts) + "</p>")


@dataclass(frozen=True)
class Section:
    anchor: str  # the element id tests and links find it by
    title: str
    parts: tuple[Html, ...]

    def render(self) -> str:
        return f'<section id="{esc(self.anchor)}"><h2>{esc(self.title)}</h2>{"".join(self.parts)}</section>\n'


def section(anchor: str, title: str, *parts: Html) -> Section:
    return Section(anchor, title, parts)


def page(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole document, with a table of contents."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = " · ".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
        f"<p class=\"note\">{esc(subtitle)} Generated {esc(stamp)} by genretag.</p><nav>{nav}</nav>\n"
        + "".join(s.render() for s in sections) + "</body></html>\n"
    )
