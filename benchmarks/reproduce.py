"""Run the built-in studies whose data exist here and write ``docs/reproductions.md``: per
study, each figure its source reported beside ablab's mean ± std and 95 % CI over seeds,
whether it lies inside, the source's verdicts re-judged, and the wall time.

    .venv/bin/python benchmarks/reproduce.py                       # everything, 5 seeds
    .venv/bin/python benchmarks/reproduce.py --only fashion-digits-losses --dataset digits
    .venv/bin/python benchmarks/reproduce.py --doc-only            # rewrite the page only

Each study runs into ``OUT/NAME`` (default ``out/reproductions``), resumably, so studies
can be run in separate calls; the page is written from every study directory under OUT,
each with the settings it was run at (kept in ``OUT/NAME/reproduce.json``). Anything run
at reduced settings (``--seeds`` below 5, ``--set``) or only in part (``--dataset``,
missing data) is said so on the page. Data are never downloaded unless ABLAB_DOWNLOAD=1
is set: a study whose data is missing here gets a row that says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL_SEEDS = 5


def _available(name: str, cache: dict[str, str | None]) -> str | None:
    """None when dataset ``name`` can be loaded here, else why not (one line)."""
    from ablab.data.loading import load_raw
    from ablab.errors import DataMissingError

    if name not in cache:
        try:
            load_raw(name)
            cache[name] = None
        except DataMissingError:
            cache[name] = f"no {name} data here"
    return cache[name]


def plan(name: str, seeds: int, sets: list[str], datasets: list[str] | None, cache):
    """The study at these settings, its runs split into (kept, left out with reasons)."""
    from ablab.study import load_study

    study = load_study(name, seeds=seeds, sets=sets)
    kept, left = [], {}
    for run in study.runs:
        ds = run.config.dataset.name
        if datasets is not None and ds not in datasets:
            left.setdefault(run.variant_label, f"not run: dataset {ds} left out by --dataset")
            continue
        missing = _available(ds, cache)
        if missing:
            left.setdefault(run.variant_label, f"not run here: {missing}")
            continue
        kept.append(run)
    return study, kept, left


def _load_info(path: Path) -> dict | None:
    """OUT/NAME/reproduce.json; a record written before calls added up becomes one part."""
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    if "parts" not in info:
        info["parts"] = [{"datasets": info.get("datasets"), "runs": info.get("runs_kept"),
                          "seeds": info.get("seeds"), "sets": info.get("sets", []),
                          "wall_s": info.get("wall_s"), "date": info.get("date")}]
    return info


def run_one(name: str, args, cache) -> None:
    """Run what this call asks of study ``name`` into OUT/NAME and record how. Calls on
    different datasets of one study add up (each may have its own seeds): the record lists
    each call -- datasets, seeds, overrides, runs, wall time -- and what the study
    directory still lacks."""
    from ablab.runner import run_study
    from ablab.store import StudyStore
    from ablab.study import load_study

    study, kept, left = plan(name, args.seeds, args.set, args.dataset, cache)
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    record = out / "reproduce.json"
    info = _load_info(record) or {}
    parts = [p for p in info.get("parts", []) if p.get("datasets") != args.dataset]
    if args.dataset is None or any(p.get("sets") != args.set for p in parts):
        parts = []  # the whole study, or other overrides: earlier calls do not add up
    part = {"datasets": args.dataset, "runs": len(kept), "seeds": args.seeds,
            "sets": args.set, "wall_s": None,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    stored = set()  # runs earlier calls finished (pending leftovers of a killed call: not)
    if parts and (out / "index.sqlite").exists():
        stored = {r["run_id"] for r in StudyStore.existing(out).rows() if r["status"] == "done"}
    seeds = max([args.seeds, *(p.get("seeds") or 0 for p in parts)])
    full = load_study(name, seeds=seeds, sets=args.set)
    if kept:
        print(f"{name}: {len(kept)} of {len(study.runs)} runs, seeds {args.seeds}", flush=True)
        # the plan: this call's runs plus those earlier calls stored (kept, not re-run)
        ids = {r.run_id for r in kept} | stored
        runs = [r for r in full.runs if r.run_id in ids]
        start = time.perf_counter()
        if full.config.tune is not None:  # [tune]: each variant tuned, then evaluated
            from ablab.tune import run_tuned

            outcome, _ = run_tuned(replace(full, runs=runs), out, workers=args.workers,
                                   threads=1,
                                   force_new_variants=(out / "index.sqlite").exists())
        else:
            outcome = run_study(replace(full, runs=runs), out, workers=args.workers,
                                threads=1, force_new_variants=(out / "index.sqlite").exists())
        part["wall_s"] = round(time.perf_counter() - start, 1)
        print(f"{name}: done in {part['wall_s']} s: {outcome.counts}", flush=True)
    else:
        print(f"{name}: nothing to run here ({'; '.join(sorted(set(left.values())))})")
    done, seconds = set(), {}
    if (out / "index.sqlite").exists():
        for r in StudyStore.existing(out).rows():
            if r["status"] == "done":
                done.add(r["run_id"])
                seconds[r["run_id"]] = (r.get("final") or {}).get("seconds") or 0.0
    # the training time of this part's runs, whichever call trained them
    part["train_s"] = round(sum(seconds.get(r.run_id, 0.0) for r in kept), 1)
    if full.config.tune is not None:  # evaluated at the tuned settings: other run ids
        part["train_s"] = round(sum(seconds.values()), 1)
    have = {r.variant_label for r in full.runs if r.run_id in done}
    info = {
        "study": name,
        "parts": [*parts, part],
        "left_out": {k: v for k, v in left.items() if k not in have},
        "runs_planned": len(load_study(name, seeds=FULL_SEEDS).runs),
        "runs_kept": len(done),
        "workers": args.workers,
        "date": part["date"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }
    walls = [p["wall_s"] for p in info["parts"] if p.get("wall_s")]
    info["wall_s"] = sum(walls) if walls else None
    record.write_text(json.dumps(info, indent=1))


# ---------------------------------------------------------------- the page


def _part_line(p: dict) -> str:
    what = ", ".join(p["datasets"]) if p.get("datasets") else "all variants"
    reduced = p["seeds"] < FULL_SEEDS or bool(p.get("sets"))
    text = f"{what}: {p['runs']} runs, {p['seeds']} seeds"
    if p.get("sets"):
        text += ", REDUCED by --set " + ", ".join(f"`{s}`" for s in p["sets"])
    elif reduced:
        text += " (REDUCED: fewer than 5)"
    else:
        text += ", the study file's full settings"
    if p.get("wall_s"):
        text += f", this call's wall time {p['wall_s']:.0f} s"
    if p.get("train_s"):
        text += f", its runs' training time {p['train_s']:.0f} s in all"
    return text + f" ({p.get('date')})"


def _settings_line(info: dict) -> str:
    parts = "; ".join(_part_line(p) for p in info.get("parts", []))
    return (f"{parts}. {info['runs_kept']} of {info['runs_planned']} planned runs (at 5 "
            f"seeds) done; --workers {info['workers']}; {info['machine']}")


def _variants_of(study):
    from ablab.analysis import Variant

    out = {}
    for run in study.runs:
        if run.variant_id not in out:
            config = {k: v for k, v in run.config.resolved().items() if k != "seed"}
            out[run.variant_id] = Variant(run.variant_id, run.variant_label, run.variant,
                                          config)
    return list(out.values())


def _not_run_rows(study, refs, reason_of) -> list[list[str]]:
    from ablab.report.against_source import find_variants, format_metric, metric_label

    rows = []
    variants = _variants_of(study)
    for ref in refs:
        found = find_variants(ref.levels, variants)
        label = found[0].label if len(found) == 1 else ", ".join(
            f"{k}={v}" for k, v in ref.levels.items()
        )
        reason = reason_of(found[0].label if len(found) == 1 else None)
        rows.append([label, metric_label(ref.metric),
                     format_metric(ref.value, ref.metric, ref.approximate), "–", "–", "0",
                     reason, ref.source])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


HEADER = ["variant", "metric", "source", "ablab mean ± std", "95 % CI (t)", "seeds",
          "source figure vs CI", "where the figure comes from"]


def _source_of(text: str) -> str:
    import re

    m = re.search(r"[Ss]ource report (\d{3})", text)
    return m.group(1) if m else "?"


def study_section(name: str, out: Path, cache) -> tuple[str, list[list[str]], list[str]]:
    """Markdown for one study, its summary rows (study, variant, metric, source, ablab,
    CI, verdict) and its row of the studies table."""
    from ablab.analysis import analyze
    from ablab.references import references_from_text
    from ablab.report.against_source import against_source
    from ablab.store import StudyStore
    from ablab.study import resolve_study_path

    text = resolve_study_path(name).read_text(encoding="utf-8")
    refs, claims = references_from_text(text)
    info_path = out / name / "reproduce.json"
    info = _load_info(info_path)
    lines = [f"## {name}", ""]
    summary = []
    if info is None or not info.get("runs_kept"):
        from ablab.study import load_study

        study = load_study(name, seeds=FULL_SEEDS)
        reasons = {}
        for run in study.runs:
            missing = _available(run.config.dataset.name, cache)
            reasons[run.variant_label] = (
                missing if missing
                else f"its data is here, but it was not run (CPU time; `python "
                     f"benchmarks/reproduce.py --only {name}` runs it)"
            )
        rows = _not_run_rows(
            study, refs, lambda lab: "not run here: " + reasons.get(lab, "not run")
        )
        lines += ["Not run here: " + "; ".join(sorted(set(reasons.values()))) + ".", ""]
        lines += [_table(HEADER, rows), ""]
        if claims:
            lines += ["Source verdicts (not re-judged: not run here):", ""]
            lines += [f"- \u201c{c.claim}\u201d ({c.source})" for c in claims] + [""]
        summary += [[name, *r[:3], "–", "–", r[6]] for r in rows]
        overview = [name, _source_of(text), str(len(refs)), str(len(claims)), "0", "–",
                    "not run here: " + "; ".join(sorted(set(reasons.values()))), "–", "–"]
        return "\n".join(lines), summary, overview
    a = analyze(StudyStore.existing(out / name))
    section = against_source(a)
    lines += ["Settings: " + _settings_line(info) + ". Wall times include writing the "
              "report.", ""]
    left = info.get("left_out") or {}
    if left:
        lines += ["Left out: " + "; ".join(f"{k} ({v})" for k, v in sorted(left.items()))
                  + ".", ""]
    rows = [r["cells"] for r in section["figures"]["rows"]]
    # figures of variants not run: say why, instead of "matches no variant"
    from ablab.study import load_study

    full = load_study(name, seeds=FULL_SEEDS)
    for i, data in enumerate(section["figures_data"]):
        if data["variant"] is None:
            extra = _not_run_rows(full, [refs[i]], lambda lab: left.get(lab, "not run here"))
            rows[i] = extra[0]
    if rows:
        lines += [_table(HEADER, rows), ""]
    else:  # e.g. a tuned study: settings its source never ran, so no figures to set beside
        lines += ["The source reports no figure for these settings; the study's own verdicts "
                  "(test accuracy, Holm-adjusted):", ""]
        if a.tuned_note:
            lines += [f"- {a.tuned_note}"]
        for v in (a.tuning or {}).get("variants", []):
            lines += [f"- {v['label']}: best "
                      + ", ".join(f"{k} = {x:.4g}" for k, x in v["best_params"].items())
                      + f" ({a.tuning['metric']} {v['best_value']:.4f} over "
                      f"{v['trials']} trials)"]
        lines += [f"- {s}" for s in a.verdicts] + [""]
    if section["claims"]:
        lines += ["The source's verdicts, re-judged:", ""]
        lines += [f"- {c}" for c in section["claims"]] + [""]
    summary += [[name, r[0], r[1], r[2], r[3], r[4], r[6]] for r in rows]
    compared = [r for r in rows if r[6].startswith(("inside", "above", "below"))]
    inside = [r for r in compared if r[6].startswith("inside")]
    total = info.get("wall_s") or 0
    done = a.runs[a.runs["status"] == "done"]
    run_time = float(done["seconds"].fillna(0).sum()) if len(done) else 0.0
    settings = ", ".join(
        (", ".join(p["datasets"]) + ": " if p.get("datasets") else "")
        + f"{p['seeds']} seeds" + (" REDUCED" if p["seeds"] < FULL_SEEDS or p.get("sets")
                                   else "")
        for p in info.get("parts", [])
    )
    if left:
        settings += f"; {info['runs_kept']} of {info['runs_planned']} runs (see below)"
    overview = [name, _source_of(text), str(len(refs)), str(len(claims)), str(len(compared)),
                str(len(inside)) if refs else "–", settings, f"{run_time:.0f} s", f"{total:.0f} s"]
    return "\n".join(lines), summary, overview


def reproductions() -> list[str]:
    """The built-in studies that reproduce a source report (their description names it);
    ablab's own studies (e.g. digits-variance-sources) are not reproductions."""
    from ablab.study import builtin_studies, resolve_study_path

    return sorted(name for name in builtin_studies()
                  if _source_of(resolve_study_path(name).read_text(encoding="utf-8")) != "?")


def write_doc(args, cache) -> Path:
    names = reproductions()
    parts = [study_section(name, Path(args.out), cache) for name in names]
    parts.sort(key=lambda p: p[2][4] == "0")  # studies run here first, then the others
    sections = [p[0] for p in parts]
    summary = [row for p in parts for row in p[1]]
    overview = [p[2] for p in parts]
    inside = sum(1 for r in summary if r[6].startswith("inside"))
    compared = sum(1 for r in summary if r[6].startswith(("inside", "above", "below")))
    doc = [
        "# Reproductions of the source reports",
        "",
        "Generated by `python benchmarks/reproduce.py` (see its `--help`); do not edit by "
        "hand. Each row sets a figure a source report gave (from one run) beside ablab's "
        "mean ± std and 95 % t interval over seeds of the same recipe, as the built-in "
        "study states it (its description names every choice that differs from the "
        "source). \"inside\": the source's figure lies in ablab's interval. Accuracies and "
        "fractions in %.",
        "",
        f"{compared} figures compared here, {inside} inside ablab's 95 % CI; the other "
        f"{len(summary) - compared} were not run on this machine (the reason is in each "
        "row).",
        "",
        "## Studies",
        "",
        _table(["study", "source report", "figures", "verdicts", "compared here",
                "inside CI", "settings", "training time (sum over runs)",
                "wall time of the reproduce.py calls (incl. reports)"], overview),
        "",
        "## Every figure",
        "",
        "| study | variant | metric | source | ablab mean ± std | 95 % CI | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    doc += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in summary]
    doc += [""] + sections
    path = Path(args.doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(doc).rstrip() + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("ABLAB_DOWNLOAD", "0")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="STUDY", help="built-in studies to run")
    parser.add_argument("--seeds", type=int, default=FULL_SEEDS,
                        help=f"seeds per variant (default {FULL_SEEDS}; fewer is reported "
                             "as reduced)")
    parser.add_argument("--dataset", nargs="+", metavar="NAME",
                        help="run only the variants on these datasets (e.g. digits)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of every run (reported as reduced)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "out" / "reproductions"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "reproductions.md"))
    parser.add_argument("--doc-only", action="store_true",
                        help="train nothing; rewrite the page from what OUT holds")
    args = parser.parse_args(argv)
    names = reproductions()
    for name in args.only or []:
        if name not in names:
            parser.error(f"--only: no built-in reproduction {name!r}; "
                         f"reproductions: {', '.join(names)}")
    cache: dict[str, str | None] = {}
    if not args.doc_only:
        for name in args.only or names:
            run_one(name, args, cache)
    print(f"wrote {write_doc(args, cache)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
