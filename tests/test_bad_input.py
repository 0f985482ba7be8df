"""Bad or untrusted input gets a clear answer and runs nothing: the bad-input corpus,
study files that name code, pickled data, and study text in the report.

The corpus lives in ``tests/bad_inputs/`` (one small file per mistake) with
``expected.toml`` saying what ``ablab`` must answer: exit status 2 and one line naming the
file, the field path and what is allowed; never a traceback. Most cases run in this
process through ``ablab.cli.main`` (fast); a few run as real ``python -m ablab.cli``
processes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    assert_one_line,
    cli_in_process,
)

from ablab.runner import run_study
from ablab.store import StudyStore
from ablab.study import load_study

HERE = Path(__file__).parent
BAD = HERE / "bad_inputs"
SRC = HERE.parent / "src" / "ablab"
CASES = __import__("tomllib").loads((BAD / "expected.toml").read_text())
ABLAB = [sys.executable, "-m", "ablab.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    empty = tmp_path / "no-data"
    empty.mkdir(exist_ok=True)
    return dict(os.environ, ABLAB_DOWNLOAD="0", ABLAB_DATA=str(empty), COLUMNS="200", **extra)


def _command(name: str, case: dict, out: Path) -> list[str]:
    file = case.get("file", f"{name}.toml")
    target = str(BAD / file) if (BAD / file).exists() else file  # else a built-in's name
    verb = "train" if file.startswith("run_") else "run"
    return [verb, target, "--out", str(out), *case.get("args", [])]




# ------------------------------------------------------------------------ bad input


def test_corpus_is_complete():
    files = {p.name for p in BAD.glob("*.toml")} - {"expected.toml"}
    used = {case.get("file", f"{name}.toml") for name, case in CASES.items()}
    assert files <= used, f"files without an expected answer: {sorted(files - used)}"
    assert len(files) >= 40 and len(CASES) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(name, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    monkeypatch.setenv("ABLAB_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("ABLAB_DOWNLOAD", "0")
    out = tmp_path / "out"
    code, stdout, stderr = cli_in_process(_command(name, case, out), capsys)
    line = assert_one_line(code, stdout, stderr, case["expect"])
    assert line.startswith("error: ")
    if name.startswith("study_"):  # refused at plan time: nothing was started or written
        assert not out.exists()


@pytest.mark.parametrize(
    "name", ["run_toml_syntax", "study_vgg7_on_moons"]
)
def test_bad_input_through_a_real_process(name, tmp_path):
    case = CASES[name]
    proc = subprocess.run(
        ABLAB + _command(name, case, tmp_path / "out"),
        capture_output=True, text=True, env=_env(tmp_path), timeout=120,
    )
    assert_one_line(proc.returncode, proc.stdout, proc.stderr, case["expect"])


def test_checkpoints_and_data_files_load_without_pickle_code():
    """Any checkpoint loaded with torch.load must use weights_only=True, and nothing
    unpickles or YAML-loads freely (both can run code)."""
    sources = {p: p.read_text() for p in SRC.rglob("*.py")}
    # execute/shipping.py unpickles, in a worker, the components the user's own notebook
    # or script registered in __main__ (sent by the parent process: code the user ran)
    shipping = SRC / "execute" / "shipping.py"
    for path, text in sources.items():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        if path != shipping:
            assert not re.search(r"pickle\.loads?\(|yaml\.load\(", text), path
    config_tables = (SRC / "config_tables.py").read_text()  # where TOML files are read
    assert "tomllib.loads(" in config_tables


@pytest.mark.parametrize("verb", ["run", "train", "validate"])
def test_study_files_run_no_code_without_consent(verb, tmp_path, monkeypatch, capsys):
    """A study or run file naming a plugin (a file beside it, or a module name on
    sys.path) is a program: without --allow-plugins it exits 2 with one line naming the
    plugin and the flag, and the plugin's side effect does not happen; validating a config
    that names it (what list, status and workers do) imports nothing either."""
    monkeypatch.delenv("ABLAB_ALLOW_PLUGINS", raising=False)
    marker = tmp_path / "side-effect"
    for name in ("evil_file", "evil_module"):
        (tmp_path / f"{name}.py").write_text(
            f"from pathlib import Path\nPath({str(marker)!r}).write_text({name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for plugin in ("evil_file.py", "evil_module"):
        base = ('epochs = 1\ndevice = "cpu"\ndataset = "moons"\nmodel = "mlp"\n'
                f'plugins = ["{plugin}"]\n')
        if verb == "validate":
            from ablab.config import ConfigError, parse_run

            with pytest.raises(ConfigError, match=f"{plugin}' is not loaded"):
                parse_run(__import__("tomllib").loads(base))
            assert not marker.exists()
            continue
        path = tmp_path / f"{verb}.toml"
        path.write_text(base if verb == "train" else
                        f'name = "evil"\nseeds = [0]\nplugins = ["{plugin}"]\n'
                        '[base]\nepochs = 1\ndevice = "cpu"\ndataset = "moons"\nmodel = "mlp"\n')
        code, stdout, stderr = cli_in_process([verb, str(path), "--out", str(tmp_path / "o")],
                                              capsys)
        assert_one_line(code, stdout, stderr, [plugin, "--allow-plugins"])
        assert not marker.exists(), f"{plugin} ran without consent"
        assert not (tmp_path / "o").exists()
    if verb == "train":  # and with consent the same file loads (and its code runs)
        code, _, stderr = cli_in_process(
            [verb, str(tmp_path / "train.toml"), "--out", str(tmp_path / "o"),
             "--allow-plugins"], capsys)
        assert code == 0, stderr
        assert marker.read_text() == "evil_module"
        sys.modules.pop("evil_module", None)


def test_a_booby_trapped_cifar_pickle_is_refused(tmp_path):
    """CIFAR-10 comes as python pickles; loading one must not run code it carries."""
    import pickle

    from ablab.data.sources import read_cifar10

    class Trap:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({b"data": Trap()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        read_cifar10(folder)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------ report safety


def test_report_escapes_study_text_and_makes_no_request(tmp_path):
    evil = "<script>alert(1)</script>"
    path = tmp_path / "evil.toml"
    path.write_text(f"""
name = "evil"
description = "{evil} see https://evil.example/x.js and <img src=x onerror=alert(2)>"
seeds = [0]
[base]
epochs = 2
batch_size = 64
device = "cpu"
dataset = {{ name = "moons", n_samples = 200 }}
model = {{ name = "mlp", hidden = [8] }}
[[vary]]
_name = "<img src=y onerror=alert(3)>"
_labels = ["{evil}", "plain & simple"]
"model.activation" = ["relu", "tanh"]
""")
    out = tmp_path / "out"
    outcome = run_study(load_study(path), out, workers=1, threads=1)
    assert outcome.exit_code == 0
    html = (out / "report.html").read_text()
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert "<img src=y" not in html and "onerror=alert(3)>" not in html.replace("&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
    # Nothing is fetched: the only URL is the study's own (escaped) text, in no attribute.
    urls = re.findall(r"https?://[^\s\"'<&]+", html)
    assert set(urls) <= {"https://evil.example/x.js"}, set(urls)
    assert not re.search(r"(src|href|action|srcset)=\"(?!data:|#)", html)
    assert not re.search(r"url\((?!data:)", html) and "@import" not in html
    md = (out / "report.md").read_text()
    prose = md.partition("```toml")[0]
    assert "<script" not in prose and "<img src" not in prose
    from ablab.report import write_report

    with StudyStore.existing(out) as store:
        write_report(store, svg=True)  # SVGs are written when asked (--svg)
    svgs = list((out / "figures").glob("*.svg"))
    assert svgs
    for svg in svgs:
        assert "<script" not in svg.read_text().lower(), svg


