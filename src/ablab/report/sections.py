"""The report's tables and sections as data the templates render: the summary and
behaviour tables, the comparisons, runs and verdict tables, one section per further
outcome, the tuning table, and the Markdown escaping they need."""

from __future__ import annotations

import math
import re
from typing import Any

from ablab.analysis import StudyAnalysis
from ablab.analysis.verdicts import MINUS, format_ci, format_diff, format_effect, format_p
from ablab.report.figures import short_label, variant_colors

METHOD_NOTE = (
    "Variants are compared on test accuracy and test softmax cross-entropy (the common "
    "yardsticks), never on each run's own training loss. Each comparison ends in one of "
    "three outcomes: A \"beats\" B (Holm-adjusted; the interval printed is the one at the "
    "Holm step's level, which decided), \"equivalent\" within the study's margin (two "
    "one-sided tests), or \"undecided\" (with the difference the seeds can detect and the "
    "seeds needed). The Methods section lists every procedure."
)


def md_escape(text: Any) -> str:
    """Text for Markdown that reads as written (``p < 0.001``, ``a & b``) yet cannot inject
    markup into a rendered write-up: only a ``<`` that could open a tag, comment or
    autolink (``<script``, ``</``, ``<!``, ``<?``) and an ``&`` that could start an entity
    become entities.

    >>> md_escape("p < 0.001 & n = 3; <script>alert(1)</script> &amp;")
    'p < 0.001 & n = 3; &lt;script>alert(1)&lt;/script> &amp;amp;'
    """
    text = re.sub(r"&(?=#?[A-Za-z0-9]+;)", "&amp;", str(text))
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def md_table(table: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return md_escape(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in table["header"]) + " |",
        "|" + "|".join("---" for _ in table["header"]) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row["cells"]) + " |" for row in table["rows"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- formatting cells


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _scaled(x: float, metric: str) -> str:
    from ablab.analysis.outcomes import outcome_of

    if not _finite(x):
        return "–"
    if metric.endswith("accuracy") or outcome_of(metric).percent:
        return f"{x * 100:.1f}".replace("-", MINUS)
    if metric == "convergence_epoch":
        return f"{x:.1f}"
    return f"{x:.3f}".replace("-", MINUS)


def _mean_std(row, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not _finite(mean):
        return "–"
    if not _finite(std):
        return _scaled(mean, metric)
    return f"{_scaled(mean, metric)} ± {_scaled(std, metric)}"


def _interval(low, high, metric: str) -> str:
    if not (_finite(low) and _finite(high)):
        return "–"
    return f"[{_scaled(low, metric)}, {_scaled(high, metric)}]"


def summary_tables(a: StudyAnalysis) -> tuple[dict, dict]:
    """(main table: accuracy and cross-entropy with CIs; behaviour table)."""
    colors = variant_colors(a)
    shown = ["test_accuracy", "test_cross_entropy"]
    header = [
        "variant", "done / runs", "test acc. mean ± std", "95 % CI (t)", "95 % CI (bootstrap)",
        "test CE mean ± std", "95 % CI (t)", "95 % CI (bootstrap)",
        "diverged", "failed", "at chance", "pending",
    ]
    if a.primary != "test_accuracy" and f"{a.primary}_mean" in a.summary:
        spec = a.outcomes.primary
        shown = [a.primary]
        header[2:8] = [f"{spec.label} mean ± std", "95 % CI (t)", "95 % CI (bootstrap)"]
    rows = []
    behaviour_rows = []
    val_on_test = {
        v.label for v in a.variants
        if (v.config.get("dataset") or {}).get("validate_on") == "test"
    }
    for v, (_, s) in zip(a.variants, a.summary.iterrows(), strict=True):
        cells = [short_label(a, v), f"{int(s['done'])} / {int(s['runs'])}"]
        for metric in shown:
            cells += [
                _mean_std(s, metric),
                _interval(s[f"{metric}_ci_low"], s[f"{metric}_ci_high"], metric),
                _interval(s[f"{metric}_boot_low"], s[f"{metric}_boot_high"], metric),
            ]
        cells += [str(int(s[k])) for k in ("diverged", "failed", "at_chance", "pending")]
        bad = bool(s["diverged"] or s["failed"] or s["at_chance"])
        rows.append({"cells": cells, "color": colors[v.label], "bad": bad})
        best_val = _mean_std(s, "best_val_accuracy")
        if v.label in val_on_test and best_val != "–":
            best_val += " (test set!)"
        behaviour_rows.append(
            {
                "cells": [
                    short_label(a, v), best_val,
                    _mean_std(s, "convergence_epoch"), _mean_std(s, "stability"),
                    _mean_std(s, "overfit_gap"), _mean_std(s, "test_loss"),
                ],
                "color": colors[v.label],
            }
        )
    behaviour = {
        "header": [
            "variant", "best val. acc. (%)", "epochs to 95 % of final val. acc.",
            "val. acc. std, last 5 epochs (pp)", "final train − val. acc. (pp)",
            "test loss (own loss, not comparable across losses)",
        ],
        "rows": behaviour_rows,
    }
    return {"header": header, "rows": rows}, behaviour


def comparisons_table(a: StudyAnalysis) -> dict:
    header = ["factor", "within", "a vs b", "metric", "a − b", "95 % CI",
              "deciding CI (level)", "test", "p", "p (Holm)", "effect", "P(a better)", "n",
              "verdict"]
    rows = []
    for c in a.comparisons:
        r = c.result
        if c.significant:
            word = f"{c.winner} better"
        elif c.outcome == "equivalent":
            word = "equivalent"
        elif c.not_applicable:
            word = "not applicable"
        elif c.testable:
            word = "undecided"
        else:
            word = "no test"
        rows.append({"cells": [
            c.factor, c.stratum or "–", f"{c.level_a} vs {c.level_b}", c.spec.label,
            format_diff(r.diff, c.spec) if _finite(r.diff) else "–",
            format_ci(r.ci_low, r.ci_high, c.spec).removeprefix("95 % CI "),
            _deciding_ci(c), r.test, format_p(r.p), format_p(c.p_holm),
            format_effect(r.effect, r.effect_name) if c.testable else "–",
            f"{c.poi:.2f} [{c.poi_low:.2f}, {c.poi_high:.2f}]" if _finite(c.poi_low) else "–",
            f"{r.n_a} / {r.n_b}", word,
        ]})
    return {"header": header, "rows": rows}


def _deciding_ci(c) -> str:
    """The interval the verdict used: at the Holm step's level (and look), or for an
    equivalence the (1 − 2·level) TOST interval."""
    if c.equivalent:
        low, high, conf = c.equivalence_low, c.equivalence_high, 1 - 2 * c.equivalence_level
    else:
        low, high, conf = c.decision_low, c.decision_high, 1 - c.level
    if not (_finite(low) and _finite(high)):
        return "–"
    text = format_ci(low, high, c.spec).removeprefix("95 % CI ")
    return f"{text} ({conf * 100:.1f} %)"


def runs_table(a: StudyAnalysis) -> dict:
    header = ["run", *a.columns, "seed", "status", "test acc. (%)", "test CE", "test loss",
              "best val. acc. (%)", "epochs", "seconds", "at chance", "note"]
    rows = []
    for r in a.runs.to_dict("records"):  # plain dicts: no Series built per run
        note = r.get("error") or (
            f"diverged at epoch {int(r['diverged_epoch'])}"
            if _finite(r.get("diverged_epoch")) else ""
        )
        rows.append({
            "cells": [
                r["run_id"], *[str(r[c]) for c in a.columns], str(r["seed"]), r["status"],
                _scaled(r["test_accuracy"], "test_accuracy"),
                _scaled(r["test_cross_entropy"], "test_loss"),
                _scaled(r["test_loss"], "test_loss"),
                _scaled(r["best_val_accuracy"], "test_accuracy"),
                str(int(r["epochs_run"])) if _finite(r["epochs_run"]) else "–",
                f"{r['seconds']:.1f}" if _finite(r["seconds"]) else "–",
                "yes" if r["at_chance"] is True else "",
                note or "",
            ],
            "bad": r["status"] in ("diverged", "failed") or r["at_chance"] is True,
        })
    return {"header": header, "rows": rows}


#: Verdicts in the report: decided ones first (as the terminal prints them).
_ORDER = {"beats": 0, "equivalent": 1, "undecided": 2, "untestable": 3, "not applicable": 4}


def verdict_items(a: StudyAnalysis) -> list[dict[str, str]]:
    """The primary outcome's verdicts, decided ones first (plan order within each)."""
    items = []
    pairs = list(zip(a.comparisons_on(a.primary), a.verdicts, strict=True))
    pairs.sort(key=lambda pair: _ORDER[pair[0].outcome])
    for c, text in pairs:
        kind = "beats" if c.significant else ("tie" if c.testable else "untestable")
        items.append({"text": text, "kind": kind, "decided": c.decided})
    return items


def _verdict_word(c) -> str:
    if c.outcome == "beats":
        return "decided"
    if c.outcome == "equivalent":
        return "equivalent (identical)" if c.identical else "equivalent"
    return c.outcome if c.outcome == "not applicable" else "undecided"


def verdict_table(a: StudyAnalysis, metric: str | None = None) -> dict:
    """The compact verdict table: per comparison of ``metric`` (the primary outcome), its
    factor, context, which level wins, the difference with the interval that decided, the
    verdict, and the seeds per variant an undecided one would need; decided ones first."""
    metric = metric or a.primary
    header = ["factor", "context", "levels", "better", "difference (deciding CI)", "verdict",
              "seeds needed"]
    rows = []
    chosen = sorted(a.comparisons_on(metric), key=lambda c: _ORDER[c.outcome])
    for c in chosen:
        r = c.result
        diff = format_diff(r.diff, c.spec) if _finite(r.diff) else "–"
        ci = _deciding_ci(c)
        needed = (f"~{c.seeds_needed}" if c.seeds_needed is not None
                  else ("–" if c.decided or not c.testable else "many"))
        better = c.winner or ("neither" if c.outcome == "equivalent" else "–")
        rows.append({
            "cells": [c.factor, c.stratum or "–", f"{c.level_a} vs {c.level_b}", better,
                      f"{diff}, {ci}" if ci != "–" else diff, _verdict_word(c), needed],
            "decided": c.decided,
        })
    return {"header": header, "rows": rows}


def method_note(a: StudyAnalysis) -> str:
    """What the verdicts compare on, and the three outcomes a comparison can end in."""
    if a.primary == "test_accuracy":
        return METHOD_NOTE
    label = a.outcomes.primary.label if a.outcomes else a.primary
    return METHOD_NOTE.replace(
        "test accuracy and test softmax cross-entropy (the common yardsticks)",
        f"{label} (the study's declared outcome)",
    )


def outcome_sections(a: StudyAnalysis) -> list[dict[str, Any]]:
    """One section per outcome beyond the primary one (diagnostics, dynamics, cost): its
    verdicts (decided first) and its pooled sentences."""
    from ablab.outcome_catalogue import FAMILIES

    out = []
    for name, label, family, sentences in a.outcome_verdicts:
        pairs = list(zip(a.comparisons_on(name), sentences, strict=True))
        pairs.sort(key=lambda pair: _ORDER[pair[0].outcome])
        shown = [{"text": t, "decided": c.decided} for c, t in pairs if not c.not_applicable]
        lacking: dict[str, int] = {}  # one line per level without the figure, not per pair
        for c, _ in pairs:
            for level in c.not_applicable:
                key = f"{c.factor}={level}"
                lacking[key] = lacking.get(key, 0) + 1
        for key, n in lacking.items():
            shown.append({"text": (
                f"Not applicable to {key}: it records no {label} (it has no layer the "
                f"figure is defined for), which is not a value of 0; its {n} "
                f"{'comparison is' if n == 1 else 'comparisons are'} left out."),
                "decided": False})
        out.append({
            "title": f"{label[0].upper()}{label[1:]}",
            "family": FAMILIES.get(family, family),
            "verdicts": shown,
            "pooled": [s for p, s in zip(a.pooled, a.pooled_sentences, strict=True)
                       if p.metric == name],
        })
    return out


def missing_runs(a: StudyAnalysis) -> list[str]:
    out = []
    for v in a.variants:
        left = len(v.with_status("pending", "running"))
        if left:
            out.append(f"{v.label}: {len(v.done)} of {len(v.runs)} runs done, {left} pending")
    return out


def fence_for(text: str) -> str:
    longest = max((len(s) for s in text.split("\n") if set(s.strip()) == {"`"}), default=0)
    return "`" * max(3, longest + 1)


def _setting(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in params.items()
    )


def tuning_table(a: StudyAnalysis) -> dict | None:
    """The "Tuning" section's table: per variant its best setting, its best validation
    figure and the budget it used; None for a study without [tune]."""
    t = a.tuning
    if not t:
        return None
    metric = t["metric"]
    header = ["variant", "best setting", f"best {metric}", "trials", "outcomes",
              "tuning seeds"]
    rows = []
    for v in t["variants"]:
        value = v.get("best_value")
        shown = "–" if value is None else (
            f"{100 * value:.2f} %" if metric.endswith("accuracy") else f"{value:.4g}"
        )
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted((v.get("outcomes") or {}).items()))
        rows.append({"cells": [v["label"] or a.name, _setting(v["best_params"]), shown,
                               f"{v['trials']} of {t['trials']}", outcomes,
                               ", ".join(map(str, t["seeds"]))]})
    seconds = t.get("seconds")
    note = (
        f"Search space: {'; '.join(f'{p} ~ {d}' for p, d in t['params'].items())}. Sampler "
        f"{t['sampler']}, pruner {t['pruner']}; every variant got the same budget of "
        f"{t['trials']} trials × {len(t['seeds'])} tuning seed(s), scored on {metric} "
        "(validation data, never test). Abandoned trials (a stopped run) are re-run and not "
        "counted."
        + (f" Tuning took {seconds:.0f} s." if isinstance(seconds, (int, float)) else "")
    )
    return {"header": header, "rows": rows, "note": note}
