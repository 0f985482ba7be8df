"""The ``command`` trainer: a run is a command line (the user's own script), its argv
templated from the run's fields and config, its metrics read from a JSON file it writes or
its last JSON line on stdout. See :mod:`ablab.train.trainers` for what a trainer is."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ablab.config import RunConfig, run_id
from ablab.errors import FieldError
from ablab.registry import TRAINERS
from ablab.train.trainers import Run, RunFailed, RunTimedOut, timed_out_message

#: ``{seed}``, ``{optimizer.lr}``, ``{params.lr}``; ``{{`` and ``}}`` are literal braces.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
#: Run fields a command line may name besides the config's dotted paths.
RUN_FIELDS = ("seed", "split_seed", "init_seed", "order_seed", "config_json",
              "metrics_json", "artefacts", "run_id", "python")
#: How many lines of a failed command's stderr its record keeps.
STDERR_TAIL_LINES = 8


def _lookup(fields: dict[str, Any], resolved: dict[str, Any], key: str) -> Any:
    if key in fields:
        return fields[key]
    node: Any = resolved
    parts = key.split(".")
    if parts[0] == "params":  # shorthand for trainer.params.NAME
        parts = ["trainer", *parts]
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def render(template: str, fields: dict[str, Any], resolved: dict[str, Any]) -> str:
    """One argument of a command line with its ``{...}`` filled in."""

    def fill(m: re.Match) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        return _text(_lookup(fields, resolved, m.group(1).strip()))

    return _PLACEHOLDER.sub(fill, template)


def _check_command(cfg: RunConfig) -> None:
    """Every ``{...}`` of the command line names a run field or a config path (so a typo
    is refused when the study is read, not in every run)."""
    resolved = cfg.resolved()
    fields = dict.fromkeys(RUN_FIELDS, "")
    for i, arg in enumerate(cfg.trainer.options["argv"]):
        for m in _PLACEHOLDER.finditer(arg):
            if m.group(1) is None:
                continue
            try:
                _lookup(fields, resolved, m.group(1).strip())
            except KeyError:
                raise FieldError(
                    f"trainer.argv.{i}",
                    f"{{{m.group(1)}}} names no run field or config path; allowed: "
                    f"{', '.join('{' + f + '}' for f in RUN_FIELDS)}, {{params.NAME}} "
                    "or a dotted config path such as {optimizer.lr}",
                ) from None


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.rstrip() for line in lines if line.strip()][-STDERR_TAIL_LINES:]
    return " | ".join(lines)[-2000:]


def _metrics_from(metrics_json: Path, stdout: Path) -> dict[str, Any] | None:
    """The command's metrics: the JSON file it wrote, else its last stdout line that is a
    JSON object."""
    if metrics_json.is_file():
        try:
            data = json.loads(metrics_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunFailed(f"{metrics_json}: not a JSON object ({exc})") from None
        if not isinstance(data, dict):
            raise RunFailed(f"{metrics_json}: not a JSON object of metrics")
        return data
    try:
        lines = stdout.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return None


@TRAINERS.register(
    "command",
    "Runs a command (your script) per run: argv templated from the run's fields; "
    "metrics from {metrics_json} or its last JSON line on stdout",
    check_run=_check_command,
    cwd_option="cwd",
    runs_program=True,  # a study naming it runs only with consent (ablab.plugins)
)
def command(
    run: Run,
    *,
    argv: Annotated[list[str], Field(min_length=1)],
    params: dict[str, Any] = {},  # noqa: B006 - pydantic copies defaults
    env: dict[str, str] = {},  # noqa: B006
    cwd: str | None = None,
) -> dict:
    """``argv``: the command line; each argument may hold ``{seed}``, ``{split_seed}``,
    ``{init_seed}``, ``{order_seed}``, ``{run_id}``, ``{python}`` (the Python running
    ablab), ``{config_json}`` (the resolved config
    as a JSON file), ``{metrics_json}`` (where the command may write its metrics),
    ``{artefacts}`` (the run's folder), ``{params.NAME}`` (this trainer's ``params``, free
    fields a study may vary as ``trainer.params.NAME``) or any dotted config path.
    ``env``: extra environment variables. ``cwd``: where it runs (the study file's folder)."""
    folder = run.artefacts
    folder.mkdir(parents=True, exist_ok=True)
    resolved = run.config.resolved()
    config_json, metrics_json = folder / "config.json", folder / "metrics.json"
    config_json.write_text(json.dumps(resolved, indent=1), encoding="utf-8")
    metrics_json.unlink(missing_ok=True)  # a retried run must not read the last try's
    fields = _run_fields(run, config_json, metrics_json)
    args = [render(a, fields, resolved) for a in argv]
    environ = {
        **os.environ, **env, "ABLAB_CONFIG": str(config_json),
        "ABLAB_METRICS": str(metrics_json), "ABLAB_ARTEFACTS": str(folder),
        "ABLAB_SEED": str(run.seed), "OMP_NUM_THREADS": str(run.threads),
    }
    stdout, stderr = folder / "stdout.txt", folder / "stderr.txt"
    code = _run_command(args, environ, cwd, run.timeout, stdout, stderr)
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = _tail(stderr)
        raise RunFailed(f"command {how}" + (f"; stderr: {tail}" if tail else "; no stderr"))
    metrics = _metrics_from(metrics_json, stdout)
    if metrics is None:
        raise RunFailed(
            "command wrote no metrics: neither a JSON file at {metrics_json} "
            "(env ABLAB_METRICS) nor a JSON object as its last line on stdout"
        )
    return metrics


def _run_fields(run: Run, config_json: Path, metrics_json: Path) -> dict[str, Any]:
    """What a command line's ``{...}`` may name besides config paths (:data:`RUN_FIELDS`)."""
    return {
        "seed": run.seed, "split_seed": run.split_seed, "init_seed": run.init_seed,
        "order_seed": run.order_seed, "config_json": str(config_json),
        "metrics_json": str(metrics_json), "artefacts": str(run.artefacts),
        "run_id": run_id(run.config),
        "python": sys.executable,  # the interpreter running ablab (its virtual environment)
    }


def _run_command(args: list[str], environ: dict[str, str], cwd: str | None,
                 timeout: float | None, stdout: Path, stderr: Path) -> int:
    """Run ``args`` in its own session, output to the two files; its exit status. Past
    ``timeout`` (or on Ctrl-C) the command and its children are killed:
    :class:`RunTimedOut` (with stderr's tail) or the interruption is raised."""
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        try:
            process = subprocess.Popen(
                args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=environ,
                cwd=cwd or None, start_new_session=True,
            )
        except OSError as exc:
            raise RunFailed(f"command {args[0]!r} cannot start ({exc.strerror or exc})") from None
        try:
            return process.wait(timeout=timeout)
        except BaseException as exc:  # the time limit, Ctrl-C: the command goes too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                tail = _tail(stderr)
                raise RunTimedOut(
                    timed_out_message(timeout) + (f"; stderr: {tail}" if tail else "")
                ) from None
            raise
