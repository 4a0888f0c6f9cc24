"""Rows of dicts out as a text table, a JSON array or CSV, one row at a time.

The writers consume iterators, so a listing or an export of a large library streams from the
database cursor to the file. Nested values (top 3, probabilities, votes) are JSON inside CSV cells.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from genretag.db.queries import Agreement, LibraryStats, TrackRow


def write_json(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    """A JSON array, one row per line; returns the number of rows."""
    count = 0
    for count, row in enumerate(rows, 1):
        out.write(("[\n" if count == 1 else ",\n") + json.dumps(row, ensure_ascii=False))
    out.write("\n]\n" if count else "[]\n")
    return count


def write_csv(rows: Iterable[dict[str, Any]], fields: Sequence[str], out: TextIO) -> int:
    """CSV with a header row; returns the number of rows."""
    writer = csv.DictWriter(out, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    count = 0
    for count, row in enumerate(rows, 1):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return count


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


TABLE_HEADER = f"{'STATUS':<8} {'GENRE':<32} {'CONF':>5} {'VOTES':>5}  {'TOP 3':<38} {'MODEL':<16} {'TAG GENRE':<12} PATH"


def table_line(row: TrackRow) -> str:
    """One track as a table line (an uncertain call says so, with the runner-up when close); a failed track's reason follows its path."""
    from genretag.fusion import Call  # here: stats imports this module and needs no numpy

    if row.genre is None:
        genre, conf, share, top = "-", "-", "-", ""
    else:
        genre = Call(row.genre, row.confidence, bool(row.uncertain), row.runner_up).label()
        conf = f"{row.confidence:.2f}"
        share = "-" if row.vote_share is None else f"{row.vote_share:.0%}"
        top = " ".join(f"{g}:{p:.2f}" for g, p in row.top(3))
    tag = row.tag_genre or "-"
    line = (f"{row.status:<8} {genre:<32} {conf:>5} {share:>5}  {top:<38} {row.model_version or '-':<16} "
            f"{tag:<12} {row.path}")
    return f"{line}  error: {row.error}" if row.error else line


def stats_text(stats: LibraryStats) -> str:
    """``genretag stats`` for people."""
    which = f"model {stats.model_version}" if stats.model_version else "latest prediction per track"
    lines = [f"{stats.tracks} tracks: " + ", ".join(f"{s} {n}" for s, n in sorted(stats.by_status.items()))]
    tagged = sum(stats.by_genre.values())
    lines.append(f"\ngenres of {tagged} done tracks ({which}):")
    lines += [f"  {g:<10} {n:>7}  {n / tagged:6.1%}" for g, n in stats.by_genre.items()]
    if stats.assessed:
        lines.append(f"\nuncertain: {stats.uncertain} of {stats.assessed} ({stats.uncertain / stats.assessed:.1%})")
    lines.append("\nconfidence (calibrated probability of the stored genre):")
    widest = max((b.count for b in stats.confidence), default=0) or 1
    for b in stats.confidence:
        bar = "#" * round(30 * b.count / widest)
        lines.append(f"  {b.low:.1f}-{b.high:.1f} {b.count:>7}  {bar}")
    if stats.agreement is not None:
        lines += agreement_lines(stats.agreement)
    if stats.failures:
        lines.append("\nfailures by reason:")
        lines += [f"  {n:>7}  {reason}" for reason, n in stats.failures]
    if stats.scans:
        lines.append("\nlast scans:")
        for s in stats.scans:
            end = s["finished_at"] or "running"
            lines.append(
                f"  #{s['id']} {s['root']} {s['mode']} {s['started_at']} -> {end}: found {s['found']}, "
                f"new {s['new']}, changed {s['changed']}, missing {s['missing']}, queued {s['queued']}, "
                f"done {s['done']}, failed {s['failed']}"
            )
    return "\n".join(lines)


def agreement_lines(agreement: Agreement) -> list[str]:
    """The agreement section of ``genretag stats``: overall, per tag genre, and the confusion table."""
    a = agreement
    if not a.tracks and not a.uncertain_tracks:
        return [f"\nagreement with the files' genre tags: no done track has a mapped genre tag"
                f" ({a.unmapped} unmapped)"]
    rate = f"{a.rate:.1%}" if a.rate is not None else "-"
    lines = [f"\nagreement with the files' genre tags: {a.agree} of {a.tracks} tracks with a mapped tag ({rate}); "
             f"uncertain apart: {a.uncertain_agree} of {a.uncertain_tracks}; unmapped tags: {a.unmapped}"]
    lines += [f"  {g:<12} {r['agree']:>6} of {r['tracks']:<6} {r['rate']:6.1%}" for g, r in a.per_genre.items()]
    predicted = sorted({p for cells in a.confusion.values() for p in cells})
    if predicted:
        lines.append("  confusion (rows: tag, columns: predicted):")
        lines.append("  " + " " * 12 + "".join(f" {p[:9]:>9}" for p in predicted))
        for g, cells in a.confusion.items():
            lines.append(f"  {g[:12]:<12}" + "".join(f" {cells.get(p, 0):>9}" for p in predicted))
    return lines
