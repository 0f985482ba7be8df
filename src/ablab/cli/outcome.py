"""The one place that prints what a study run did: its counts, failures, verdicts and
where its results are (plain, --until-decided and tuned runs alike)."""

from __future__ import annotations

from pathlib import Path

import typer

from ablab.cli.app import (
    console,
    err_console,
)


def print_verdicts(out: Path, a=None) -> None:
    """The verdicts, one line each, decided first (like a test summary); interactions
    before them (from ``a``, the study's fresh analysis, when given)."""
    from ablab.analysis import analyze
    from ablab.analysis.variance import terminal_lines as variance_lines
    from ablab.analysis.verdicts import terminal_lines
    from ablab.store import StudyStore

    if a is None:
        with StudyStore.existing(out) as store:
            a = analyze(store)
    for warning in a.inert.values():  # levels that trained identical runs: no verdict
        err_console.print(f"WARNING {warning}", markup=False, highlight=False, soft_wrap=True)
    lines = [f"INTERACTION {s}" for s in a.interaction_sentences]
    lines += terminal_lines(a.comparisons, a.primary)  # the study's primary outcome
    lines += [f"TRADE-OFF  {s}" for s in a.tradeoff_sentences]
    lines += variance_lines(a.variance_sources, a.variance_sentences)  # variance = "sources"
    if lines:
        label = a.outcomes.primary.label if a.outcomes else "test accuracy"
        console.print(f"verdicts ({label}):", highlight=False)
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)



#: What a study directory holds after ``ablab run`` (the tuned run adds its tuning files).
RESULT_FILES = "results.csv, summary.csv, report.html, report.md"


def say(text: str) -> None:
    """One plain line on stdout (no markup, no highlighting, never wrapped)."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def show_outcome(out: Path, outcome, headline: str, *, after: tuple[str, ...] = (),
                 files: str = RESULT_FILES, retry_hint: bool = True) -> None:
    """What one ``ablab run`` did, for each of its ways: ``headline`` (``{counts}`` in it
    is where the counts of runs by status go); each failed run and why; ``after`` (lines
    about how it ran); the verdicts from the outcome's analysis; where the results are;
    and, when runs failed, how to try them again. Exits with the outcome's status (0 all
    done, 1 some failed)."""
    counts = ", ".join(f"{n} {status}" for status, n in outcome.counts.items() if n)
    say(headline.replace("{counts}", counts))
    for label, reason in outcome.failures:
        err_console.print(f"failed: {label}: {reason}")
    for line in after:
        say(line)
    print_verdicts(out, outcome.analysis)
    say(f"results in {out}/ ({files})")
    if retry_hint and outcome.counts.get("failed"):
        say("re-run with --retry-failed to try the failed runs again")
    raise typer.Exit(outcome.exit_code)
