"""`ablab report` of one stored study, side by side for two source trees (#17).

Each tree reports its own copy of the study directory (made once, so neither sees the
other's figures), alternating the trees each round under the same load:

- cold: ``figures/`` deleted first, every figure drawn;
- warm: the figures the previous report drew are reused (``figures/drawn-from.json``);
- tables: ``write_tables`` of a copy whose runs are all pending (what the runner writes
  before the first run), its imports included.

It prints wall and CPU seconds (the process and its children) of each call, the mean per
tree and the ratio this tree / other tree, and the load average before and after.

    python -m ablab.cli run moons-circles-activations --seeds 5 --out /tmp/moons
    python benchmarks/report_speed.py /tmp/moons --other /path/to/main/src --rounds 3
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"
TABLES = (
    "import sys\n"
    "from ablab.report import write_tables\n"
    "from ablab.store import StudyStore\n"
    "with StudyStore.existing(sys.argv[1]) as store:\n"
    "    write_tables(store)\n"
)
REPORT = "import sys; from ablab import cli; sys.argv[0] = 'ablab'; cli.main()"


def timed(src: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``python ARGS`` with ``src`` first on the path."""
    env = dict(os.environ, PYTHONPATH=str(src))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def pending_copy(study: Path, target: Path) -> Path:
    """A copy of ``study`` with every run pending and no record: a study about to start."""
    shutil.copytree(study, target, ignore=shutil.ignore_patterns("*.json", "figures"))
    shutil.copy2(study / "study.json", target / "study.json")
    with sqlite3.connect(target / "index.sqlite") as db:
        db.execute("UPDATE runs SET status='pending', final=NULL, sizes=NULL, metrics=NULL, "
                   "seconds=NULL, diverged_epoch=NULL, error=NULL, started=NULL, "
                   "finished=NULL")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a finished study directory")
    parser.add_argument("--other", type=Path, required=True, help="the other tree's src/")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"this": HERE, "other": args.other.resolve()}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    print(f"load before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        copies = {}
        for name in trees:
            copies[name] = Path(tmp) / name
            shutil.copytree(args.study, copies[name], ignore=shutil.ignore_patterns("figures"))
            pending_copy(args.study, Path(tmp) / f"{name}-pending")
        for name, src in trees.items():  # draw once, so the first warm call reuses
            timed(src, "-c", REPORT, "report", str(copies[name]))
        for _ in range(args.rounds):
            for mode in ("cold", "warm", "tables"):
                for name, src in trees.items():
                    if mode == "cold":
                        shutil.rmtree(copies[name] / "figures", ignore_errors=True)
                    if mode == "tables":
                        call = ("-c", TABLES, str(Path(tmp) / f"{name}-pending"))
                    else:
                        call = ("-c", REPORT, "report", str(copies[name]))
                    wall, cpu = timed(src, *call)
                    times.setdefault((mode, name), []).append((wall, cpu))
                    print(f"{mode:6s} {name:5s} {wall:6.2f} s wall {cpu:6.2f} s CPU", flush=True)
    print(f"load after: {os.getloadavg()}")
    for mode in ("cold", "warm", "tables"):
        mean = {name: sum(w for w, _ in times[(mode, name)]) / args.rounds for name in trees}
        print(f"{mode:6s} mean wall: this {mean['this']:.2f} s, other {mean['other']:.2f} s, "
              f"ratio {mean['this'] / mean['other']:.2f}")


if __name__ == "__main__":
    main()
