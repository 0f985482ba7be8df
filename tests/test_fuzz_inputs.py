"""Property-based bad input: hypothesis writes study and run files (random keys, types,
nesting, unicode, huge numbers, empty tables, mutations of a valid file, and text that is
not TOML at all) and feeds them to the command line exactly as a user would, in this
process (``ablab.cli.main`` with ``sys.argv`` set). Whatever the file holds: the exit
status is 0, 1 or 2; there is never a traceback; exit 2 comes with exactly one line that
names the file, a field or the option at fault. Nothing trains: the executor and ``fit``
are replaced by stand-ins once the file is loaded, validated and (for a study) its plan
stored in a fresh directory, so the suite takes seconds."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ablab.cli

pytestmark = pytest.mark.filterwarnings("ignore")

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples in CI and here: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)

# ------------------------------------------------------------------ writing TOML

_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def toml_string(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)  # \\, \", \n, \uXXXX: all valid TOML
    return out.replace("\x7f", "\\u007F")  # DEL must be escaped in TOML, not in JSON


def toml_key(key: str) -> str:
    return key if key and set(key) <= _BARE else toml_string(key)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(doc: dict) -> str:
    """Top-level scalars and arrays as ``key = value``, tables as ``[table]`` sections
    (so both spellings are exercised), deeper nesting as inline tables."""
    lines, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, table in tables:
        lines.append(f"\n[{toml_key(key)}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ what to write

# Real field names and component names, so generated files reach deep validation, mixed
# with arbitrary unicode.
WORDS = [
    "name", "seeds", "base", "vary", "plugins", "description", "epochs", "batch_size",
    "eval_batch_size", "device", "dataset", "model", "optimizer", "schedule", "loss", "lr",
    "momentum", "hidden", "activation", "dropout", "batch_norm", "init", "probes", "keep",
    "early_stopping", "patience", "subset", "eval_subset", "val_fraction", "n_samples",
    "noise", "augment", "seed", "precision", "memory_format", "compile", "_labels", "_name",
    "model.activation", "optimizer.lr", "dataset.name", "moons", "circles", "digits", "mlp",
    "simple_cnn", "relu", "tanh", "adam", "sgd", "cosine", "cross_entropy", "dead_units",
    "cifar10", "fashion_mnist", "auto", "cpu", "last", "best", "none",
]
text = st.one_of(st.sampled_from(WORDS), st.text(
    alphabet=st.characters(exclude_categories=("Cs",)), max_size=12))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, -(2**63), 10**18, 2**64, 10**30,
                     float("nan"), float("inf"), 1e308, "~nobody/x.py", "", " ", "\x00"]),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(text, inner, max_size=4),
    ),
    max_leaves=12,
)
documents = st.dictionaries(text, values, max_size=8)

VALID_STUDY = {
    "name": "fuzz",
    "seeds": [0, 1],
    "base": {
        "epochs": 1,
        "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 60},
        "model": {"name": "mlp", "hidden": [4]},
        "optimizer": {"name": "adam", "lr": 0.01},
    },
    "vary": [{"model.activation": ["relu", "tanh"]}],
}
VALID_RUN = {
    "epochs": 1,
    "device": "cpu",
    "dataset": {"name": "moons", "n_samples": 60},
    "model": {"name": "mlp", "hidden": [4]},
    "optimizer": {"name": "adam", "lr": 0.01},
}


def _paths(node, prefix=()):
    """Every (path, container) in a nested document, for mutation."""
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _paths(child, (*prefix, i))


@st.composite
def mutated(draw, valid: dict) -> dict:
    """A valid file with one to three edits: a value replaced (any type), a key removed,
    a key added (known or not), a table emptied."""
    doc = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add", "empty"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(text)] = draw(values)
        elif action == "empty" and isinstance(parent[path[-1]], (dict, list)):
            parent[path[-1]] = type(parent[path[-1]])()
    return doc


HOSTILE = st.sampled_from([
    -1, 2**63, 2**64, 10**30, -(10**30), float("nan"), float("inf"), float("-inf"), 1e308,
    0, "", " ", "\x00", "~nobody/x.py", "ü" * 300, [], {}, [[]], {"": {}}, True,
])


@st.composite
def hostile(draw, valid: dict) -> dict:
    """A valid file with one field (any depth, existing or a sibling of one) set to a
    value that breaks naive code: huge or negative numbers, NaN, empty containers, NUL."""
    doc = json.loads(json.dumps(valid))
    path = draw(st.sampled_from([p for p in _paths(doc) if p]))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = draw(st.one_of(HOSTILE, st.lists(HOSTILE, min_size=1, max_size=3)))
    return doc


# ------------------------------------------------------------------ running the CLI


class _Trained(BaseException):
    """Raised by the stand-in for training: the file was loaded and validated."""


class _NoExecutor:
    """Stands in for the worker pool: the study directory is created and its plan
    stored (index, study.json, tables), but no run starts; they stay pending (exit 1)."""

    def run(self, tasks, on_event):
        assert tasks  # a loaded, validated plan

    @staticmethod
    def make(*args, **kwargs):
        return _NoExecutor()


@pytest.fixture
def no_training(monkeypatch):
    import ablab.execute
    import ablab.report
    import ablab.runner
    import ablab.train.loop

    def fake_fit(cfg, **kwargs):
        raise _Trained

    monkeypatch.setattr(ablab.runner, "make_executor", _NoExecutor.make)
    monkeypatch.setattr(ablab.report, "write_report", lambda store, **options: {})
    # `ablab run` starts the fork server (a torch import) before it reads the file; no
    # example here trains, so none should pay for one
    monkeypatch.setattr(ablab.execute, "start_server", lambda: None)
    monkeypatch.setattr(ablab.runner, "start_server", lambda: None)
    monkeypatch.setattr(ablab.train.loop, "fit", fake_fit)
    monkeypatch.delenv("ABLAB_ALLOW_PLUGINS", raising=False)
    monkeypatch.setenv("ABLAB_DOWNLOAD", "0")
    monkeypatch.setenv("COLUMNS", "250")


def ablab_cli(args: list[str], capsys) -> tuple[int, str, str]:
    argv = sys.argv
    sys.argv = ["ablab", *args]
    try:
        ablab.cli.main()
        code = 0
    except _Trained:
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_answer(code: int, stdout: str, stderr: str, path: Path) -> None:
    assert code in (0, 1, 2), (code, stderr)
    assert "Traceback" not in stdout + stderr, stderr
    if code == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, stderr
        line = lines[0]
        assert line.startswith("error: "), line
        # names the file (every error about its content does), or the option at fault
        assert str(path) in line or path.name in line or "--" in line, line


def run_file(kind: str, content: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / ("study.toml" if kind == "run" else "run_file.toml")
    path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    if out.exists():
        shutil.rmtree(out)
    code, stdout, stderr = ablab_cli([kind, str(path), "--out", str(out)], capsys)
    check_answer(code, stdout, stderr, path)


# ------------------------------------------------------------------ the properties


@SETTINGS
@given(doc=documents)
def test_random_study_files(doc, tmp_path, capsys, no_training):
    run_file("run", toml_document(doc), tmp_path, capsys)


@SETTINGS
@given(doc=mutated(VALID_STUDY))
def test_mutated_study_files(doc, tmp_path, capsys, no_training):
    run_file("run", toml_document(doc), tmp_path, capsys)


@settings(SETTINGS, max_examples=120)
@given(doc=st.one_of(hostile(VALID_STUDY), hostile(VALID_RUN)))
@example(doc={**VALID_STUDY, "seeds": [2**64]})  # found: SQLite cannot store the seed
@example(doc={**VALID_RUN, "plugins": ["~nobody/x.py"]})  # found: expanduser raised
def test_hostile_values_in_valid_files(doc, tmp_path, capsys, no_training):
    run_file("run" if "base" in doc else "train", toml_document(doc), tmp_path, capsys)


@SETTINGS
@given(doc=st.one_of(documents, mutated(VALID_RUN)))
def test_random_and_mutated_run_files(doc, tmp_path, capsys, no_training):
    run_file("train", toml_document(doc), tmp_path, capsys)


@settings(SETTINGS, max_examples=40)
@given(content=st.text(max_size=200))
def test_text_that_may_not_be_toml(content, tmp_path, capsys, no_training):
    for kind in ("run", "train"):
        run_file(kind, content, tmp_path, capsys)


def test_the_valid_files_pass(tmp_path, capsys, no_training):
    """The generators start from files that are valid: the study is planned and stored
    (its runs left pending: exit 1), the run file reaches training (exit 0)."""
    for kind, doc, status in (("run", VALID_STUDY, 1), ("train", VALID_RUN, 0)):
        path = tmp_path / f"{kind}.toml"
        path.write_text(toml_document(doc))
        code, _, stderr = ablab_cli([kind, str(path), "--out", str(tmp_path / kind)], capsys)
        assert code == status, stderr
    assert (tmp_path / "run" / "study.json").exists()
