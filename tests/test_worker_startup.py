"""Start-up of `ablab run`: workers that arrive with everything a run imports, a
fork server started before the study file is read and stopped when the file is bad."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import ABLAB, cli_env

from ablab.execute.local import PRELOAD, _context

HEAVY = ("torch._dynamo", "sklearn", "scipy", "pandas", "matplotlib", "statsmodels")


def _imports_of_a_first_run(config: dict) -> list[str]:
    """Runs in a worker forked from the fork server: the modules of the HEAVY packages
    that its first run had to import."""
    before = set(sys.modules)
    from ablab.config import parse_run
    from ablab.train import fit

    assert fit(parse_run(config)).status == "done"
    new = set(sys.modules) - before
    return sorted(m for m in new if m.startswith(HEAVY))


def test_a_workers_first_run_imports_nothing_heavy():
    # a torch optimizer's first __init__ imports torch._dynamo (seconds): the server has
    config = {"epochs": 2, "dataset": {"name": "moons", "n_samples": 64},
              "model": {"name": "mlp", "hidden": [8]},
              "optimizer": {"name": "adamw", "lr": 0.01}, "probes": ["dead_units"]}
    assert "torch._dynamo" in PRELOAD
    with _context().Pool(1) as pool:
        assert pool.apply(_imports_of_a_first_run, (config,)) == []


def _servers_tagged(tag: str) -> list[int]:
    """Fork server processes whose environment holds ``tag``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (b"forkserver" in (entry / "cmdline").read_bytes()
                    and tag.encode() in (entry / "environ").read_bytes()):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_a_bad_study_file_leaves_no_fork_server_behind(tmp_path):
    # `ablab run` starts the fork server (a torch import, seconds of CPU) before it reads
    # the file; a file it refuses must not leave that import running after the error
    study = tmp_path / "bad.toml"
    study.write_text('name = "bad"\nseeds = [0]\n[base]\nepochs = 1\ndataset = "moons"\n'
                     'model = { name = "no_such_model" }\n')
    tag = f"ABLAB_STARTUP_TEST={uuid.uuid4().hex}"
    env = {**cli_env(), tag.split("=")[0]: tag.split("=")[1]}
    proc = subprocess.Popen(ABLAB + ["run", str(study), "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # wait() for the process, not communicate(): a server left behind holds its pipes
    returncode = proc.wait(timeout=300)
    left = _servers_tagged(tag)
    _, stderr = proc.communicate(timeout=300)
    assert returncode == 2, stderr
    assert "no_such_model" in stderr and "Traceback" not in stderr
    assert left == []


def test_a_finished_directory_starts_no_workers_early(tmp_path, monkeypatch):
    from ablab import cli
    from ablab.store import peek_statuses

    assert peek_statuses(tmp_path / "none") == {}
    assert cli._may_train(tmp_path / "none", retry_failed=False)  # a new directory
    statuses = {"a": "done", "b": "failed"}
    monkeypatch.setattr("ablab.store.peek_statuses", lambda out: statuses)
    assert not cli._may_train(tmp_path, retry_failed=False)
    assert cli._may_train(tmp_path, retry_failed=True)
    statuses["c"] = "pending"
    assert cli._may_train(tmp_path, retry_failed=False)
    assert os.environ.get("ABLAB_STARTUP_TEST") is None


class _Left(Exception):
    def __init__(self, code):
        self.code = code


def _console(monkeypatch, capsys, *args) -> tuple[object, str, str]:
    """``ablab ARGS`` through the console entry point, its os._exit caught."""
    from ablab import cli

    def leave(code):
        raise _Left(code)

    monkeypatch.setattr(cli.os, "_exit", leave)
    monkeypatch.setattr(sys, "argv", ["ablab", *args])
    try:
        cli.console_main()
    except _Left as left:
        out, err = capsys.readouterr()
        return ("os._exit", left.code), out, err
    except SystemExit as exc:
        out, err = capsys.readouterr()
        return ("sys.exit", exc.code), out, err
    raise AssertionError("console_main returned")


def test_the_command_leaves_at_once_with_its_exit_status(monkeypatch, capsys, tmp_path):
    # the interpreter's teardown of torch and matplotlib (seconds) is skipped, the status kept
    how, out, _ = _console(monkeypatch, capsys, "list", "models")
    assert how == ("os._exit", 0) and "mlp" in out
    how, _, err = _console(monkeypatch, capsys, "report", str(tmp_path / "none"))
    assert how == ("os._exit", 2) and err.startswith("error: ")


def test_with_ray_loaded_the_command_exits_normally(monkeypatch, capsys):
    # Ray's atexit shuts down the cluster it started: it must run
    monkeypatch.setitem(sys.modules, "ray", object())
    how, out, _ = _console(monkeypatch, capsys, "list", "models")
    assert how == ("sys.exit", 0) and "mlp" in out


def test_loading_a_cnn_study_imports_no_dynamo():
    # what a CNN builder reads is learnt by building it on the meta device; its dry run
    # (the flattened size) goes to a CPU copy: meta-device ops would import torch._dynamo
    # (seconds of `ablab list studies` and of every CNN study's start)
    code = ("import sys\n"
            "from ablab.study import load_study\n"
            "study = load_study('cifar10-heads')\n"
            "from ablab.models.core import options_read\n"
            "cfg = study.runs[0].config\n"
            "print(sorted(options_read(cfg.model, (3, 32, 32), 10)))\n"
            "print('torch._dynamo' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    read, dynamo = proc.stdout.splitlines()
    assert "batch_norm" in read and dynamo == "False"
