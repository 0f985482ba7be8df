"""The #31 figures side by side, from the JSON files ``make bench`` writes in one run:
the whole study against its floor and the peer-style plain script
(``study_speed.json``), the command-line latencies (``cli_latency.json``) and the
report's and per-run growth with the study's size (``scaling.json``), each against its
target.

    python benchmarks/summary.py [benchmarks/results]

A file that is missing is said to be missing (its benchmark did not run); each file's
time of writing and the load average its benchmark saw are printed with its figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

#: the #31 targets
FLOOR_RATIO = 1.3
CLI_S = 0.5
REPORT_GROWTH = 2.0
PER_RUN_GROWTH = 1.3

FILES = {"study": "study_speed.json", "cli": "cli_latency.json", "scaling": "scaling.json"}


def _mark(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def study_lines(s: dict) -> list[str]:
    """The whole study: floor, ablab, ratio, the plain script."""
    runs = s["runs"]
    lines = []
    if s.get("floor_s"):
        ratio = s["ablab_s"] / s["floor_s"]
        lines.append(
            f"  floor {s['floor_s']:.1f} s | ablab {s['ablab_s']:.1f} s = {ratio:.2f}x the floor "
            f"({_mark(ratio <= FLOOR_RATIO)} <= {FLOOR_RATIO}x)"
        )
    else:
        lines.append(f"  ablab {s['ablab_s']:.1f} s (no floor measured)")
    lines.append(
        f"  plain PyTorch script {s['plain_s']:.1f} s ({s['plain_s'] / runs:.2f} s/run) | "
        f"ablab {s['ablab_s'] / runs:.2f} s/run: ablab {s['plain_s'] / s['ablab_s']:.2f}x "
        "faster per run"
    )
    if "startup_s" in s:
        lines.append(
            f"  ablab's phases: start-up {s['startup_s']:.1f} s, training "
            f"{s['training_s']:.1f} s, tables + report + exit {s['report_and_exit_s']:.1f} s"
        )
    return lines


def cli_lines(c: dict) -> list[str]:
    rows = c["commands"]
    runs = next(iter(rows.values()))["runs"] if rows else 0
    width = max((len(name) for name in rows), default=0)
    lines = [
        f"  {name:<{width}}  {r['median_s']:.2f} s (CPU {r['median_cpu_s']:.2f} s)  "
        f"{_mark(r['median_s'] <= c.get('target_s', CLI_S))}"
        for name, r in rows.items()
    ]
    slow = sum(r["median_s"] > c.get("target_s", CLI_S) for r in rows.values())
    lines.append(f"  median of {runs} each; {len(rows) - slow} of {len(rows)} within "
                 f"{c.get('target_s', CLI_S)} s")
    return lines


def scaling_lines(sc: dict) -> list[str]:
    rows = sc["rows"]
    small, large = rows[0], rows[-1]
    report = large["report_s"] / small["report_s"]
    per_run = large["per_run_s"] / small["per_run_s"]
    lines = [
        f"  report {small['report_s']:.2f} s at {small['runs']:,} runs -> "
        f"{large['report_s']:.2f} s at {large['runs']:,}: x{report:.2f} "
        f"({_mark(report <= REPORT_GROWTH)} <= {REPORT_GROWTH}x)",
    ]
    if small.get("report_cpu_s") and large.get("report_cpu_s"):
        cpu = large["report_cpu_s"] / small["report_cpu_s"]
        lines.append(f"  report CPU {small['report_cpu_s']:.2f} s -> "
                     f"{large['report_cpu_s']:.2f} s: x{cpu:.2f} (less sensitive to other "
                     "load than wall time)")
    return [
        *lines,
        f"  per run {small['per_run_s']:.3f} s -> {large['per_run_s']:.3f} s: x{per_run:.2f} "
        f"({_mark(per_run <= PER_RUN_GROWTH)} <= {PER_RUN_GROWTH}x)",
    ]


def _load(folder: Path, name: str) -> tuple[dict | None, str]:
    path = folder / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path}: missing (its benchmark did not run)"
    except ValueError as exc:
        return None, f"{path}: not JSON ({exc})"
    when = datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return data, f"{path.name}, written {when}"


def load_note(data: dict) -> str:
    loads = [r.get("load_before") for r in data.get("rows", [])] or [data.get("load_before")]
    loads = [f"{x:.2f}" for x in loads if x is not None]
    return f", load avg before: {' / '.join(loads)}" if loads else ""


def summary(folder: Path) -> str:
    parts = []
    sections = (
        ("study", "whole study (moons-circles-activations)", study_lines),
        ("cli", "command line", cli_lines),
        ("scaling", "report and per-run cost as the study grows", scaling_lines),
    )
    for key, title, lines in sections:
        data, source = _load(folder, FILES[key])
        if data is None:
            parts.append(f"{title}: {source}")
            continue
        parts.append(f"{title} ({source}{load_note(data)}):")
        parts.extend(lines(data))
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?",
                        default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    text = summary(args.folder)
    print(text)
    if all(_load(args.folder, name)[0] is None for name in FILES.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
