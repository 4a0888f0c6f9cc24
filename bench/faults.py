"""Run the fault suite (tests/test_faults.py) and print ONE table: each fault, expected vs actual, totals.

    python bench/faults.py            # bad inputs, SIGKILL, poison files, race, security checks
    python bench/faults.py --slow     # plus the 2-hour file, Redis restart, PostgreSQL stop

The faults are injected by the tests (real processes, real services); each test appends its rows
to a JSON-lines file named by GENRETAG_FAULT_REPORT, and this script prints them. Exit status 0
only if every row is as expected, lost and duplicated are 0, and pytest passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COUNTS = ("found", "done", "failed", "lost", "duplicated")


def run_suite(slow: bool, report: Path, extra: list[str]) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_faults.py", *extra]
    if slow:
        command.append("--run-slow")
    env = {**os.environ, "GENRETAG_FAULT_REPORT": str(report), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, (lines[-1] if lines else proc.stderr[-2000:]), proc.stdout


def table(rows: list[dict]) -> str:
    """Fixed-width text: one line per row, then the totals over the counted rows."""
    width = max(len(r["fault"]) for r in rows)
    exp_width = min(52, max(len(r["expected"]) for r in rows))
    head = f"{'fault':<{width}}  {'expected':<{exp_width}}  {'ok':<4} " + " ".join(f"{c[:5]:>5}" for c in COUNTS) + "  actual"
    out = [head, "-" * len(head)]
    for r in rows:
        counts = " ".join(f"{r[c]:>5}" if c in r else f"{'':>5}" for c in COUNTS)
        mark = "yes" if r["ok"] else "NO"
        out.append(f"{r['fault']:<{width}}  {r['expected'][:exp_width]:<{exp_width}}  {mark:<4} {counts}  {r['actual'][:90]}")
    totals = {c: sum(r.get(c, 0) for r in rows if r.get("counted", True)) for c in COUNTS}
    out.append("-" * len(head))
    ok = sum(r["ok"] for r in rows)
    label = f"TOTAL ({ok}/{len(rows)} as expected)"
    out.append(f"{label:<{width}}  {'':<{exp_width}}  {'':<4} " + " ".join(f"{totals[c]:>5}" for c in COUNTS))
    return "\n".join(out), totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", action="store_true", help="Add the 2-hour file and the service restarts.")
    parser.add_argument("pytest_args", nargs="*", help="Passed to pytest (e.g. -k sigkill).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.jsonl"
        started = time.monotonic()
        code, summary, output = run_suite(args.slow, report, args.pytest_args)
        elapsed = time.monotonic() - started
        rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    if not rows:
        print(output[-5000:])
        print("no fault rows were reported")
        return 1
    text, totals = table(rows)
    print(text)
    kinds = sum(r["fault"].startswith("bad input: ") for r in rows)
    print(f"\n{kinds} bad-input kinds; {len(rows) - kinds} other rows; pytest: {summary} ({elapsed:.0f} s"
          f"{', with --slow' if args.slow else ''})")
    if code != 0:
        print(output[-5000:])
    healthy = code == 0 and all(r["ok"] for r in rows) and totals["lost"] == 0 and totals["duplicated"] == 0
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
