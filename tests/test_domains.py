"""Every number a study file may hold has a domain, and a number outside it is refused
(issue #30): the test walks the JSON Schema that ``ablab schema`` prints, finds every
numeric field with a declared domain (``minimum``, ``exclusiveMaximum``, ...) -- the
study's own fields, ``[base]``'s, and every option of every registered dataset, model,
activation, loss, optimizer, schedule and probe -- and for each one hypothesis draws values
just outside the domain, beyond it, and the non-finite ones TOML can write (``inf``,
``-inf``, ``nan``, an overflowing ``1e400``). Each file goes through ``ablab run`` in this
process as a user's would: exit 2, exactly one line naming the file and the field, no
traceback, and no study directory written. Nothing trains (validation refuses first)."""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_inputs import ablab_cli, no_training, toml_document  # noqa: F401

from ablab.config import (
    ActivationConfig,
    DatasetConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    ProbeConfig,
    ScheduleConfig,
)
from ablab.schema import study_schema

pytestmark = pytest.mark.filterwarnings("ignore")

VALID_STUDY = {
    "name": "domains",
    "seeds": [0],
    "base": {
        "epochs": 1,
        "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 60},
        "model": {"name": "mlp", "hidden": [4]},
        "optimizer": {"name": "adam", "lr": 0.01},
    },
}

#: Tables a field may sit in that have required fields of their own: what they start as.
STARTS = {
    ("tune",): {"params": {"optimizer.lr": "loguniform(0.001, 0.1)"}, "trials": 1,
                "seeds": [1000]},
    ("reference", "[]"): {"value": 0.9, "source": "a paper"},
}
#: Registry entries with required options: what their table starts as (never read: the
#: number at fault is refused while the file is validated).
ENTRY_STARTS = {"csv": {"path": "x.csv"}, "npz": {"path": "x.npz"},
                "image_folder": {"path": "images"}, "torchvision": {"dataset": "KMNIST"}}

# ------------------------------------------------------------------ reading the schema


def numeric_fields(schema: dict) -> list[tuple[tuple, dict]]:
    """(steps, property) for every number or integer in the schema; a step is
    ``("key", name)``, ``("item", None)`` (inside a list) or ``("named", entry)`` (one
    registry entry's table, chosen by its ``name``)."""
    defs = schema.get("$defs", {})
    found: dict[tuple, dict] = {}

    def walk(node: dict, steps: tuple) -> None:
        if "$ref" in node:
            walk(defs[node["$ref"].rsplit("/", 1)[-1]], steps)
            return
        if node.get("type") in ("number", "integer"):
            found.setdefault(steps, node)
        for branch in node.get("anyOf", []) + node.get("oneOf", []):
            entry = branch.get("properties", {}).get("name", {}).get("const")
            walk(branch, steps + (("named", entry),) if entry else steps)
        for key, prop in node.get("properties", {}).items():
            walk(prop, steps + (("key", key),))
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            walk(node["items"], steps + (("item", None),))

    walk(schema, ())
    return sorted(found.items(), key=lambda item: repr(item[0]))


def has_domain(prop: dict) -> bool:
    return any(k in prop for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum",
                                   "enum"))


def place(doc, steps: tuple, value, where: tuple = ()):
    """``doc`` with ``value`` put at ``steps`` (tables made as needed; a registry entry's
    table replaced by one naming that entry)."""
    if not steps:
        return value
    kind, arg = steps[0]
    if kind == "item":
        start = STARTS.get((*where, "[]"))
        return [place(copy.deepcopy(start), steps[1:], value, (*where, "[]"))]
    if kind == "named":
        return place({"name": arg, **ENTRY_STARTS.get(arg, {})}, steps[1:], value, where)
    node = dict(doc) if isinstance(doc, dict) else {}
    start = STARTS.get((*where, arg))
    child = node.get(arg, copy.deepcopy(start))
    node[arg] = place(child, steps[1:], value, (*where, arg))
    return node


def field_name(steps: tuple) -> str:
    """The last key on the path: what the error line must name."""
    return [arg for kind, arg in steps if kind == "key"][-1]


def label(steps: tuple) -> str:
    out = ""
    for kind, arg in steps:
        out += {"key": f".{arg}", "item": "[]", "named": f"<{arg}>"}[kind]
    return out.lstrip(".")


def shared_field(steps: tuple) -> bool:
    """A field every entry of a registry takes (``val_fraction`` of every dataset), reached
    through an entry other than the registry's first: tested once, through the first."""
    for i, (kind, entry) in enumerate(steps[:-1]):
        if kind != "named" or i == 0:
            continue
        component = COMPONENT_OF.get(steps[i - 1][1])
        key = steps[i + 1][1]
        if component is not None and key not in component.registry.get(entry).options.model_fields:
            return entry != component.registry.names()[0]
    return False


COMPONENT_OF = {"dataset": DatasetConfig, "model": ModelConfig, "activation": ActivationConfig,
                "loss": LossConfig, "optimizer": OptimizerConfig, "schedule": ScheduleConfig,
                "probes": ProbeConfig}
SCHEMA = study_schema()
FIELDS = numeric_fields(SCHEMA)
BOUNDED = [(steps, prop) for steps, prop in FIELDS if has_domain(prop)]
TESTED = [(steps, prop) for steps, prop in BOUNDED if not shared_field(steps)]

# ------------------------------------------------------------------ values outside a domain

#: Written into the TOML text as is: TOML reads ``1e400`` as inf (the float overflows).
OVERFLOW = "1e400"


class Raw(float):
    """A float written as its own text (``1e400``) in the TOML file."""


def outside(prop: dict) -> st.SearchStrategy:
    """Values just outside ``prop``'s domain, beyond it, and the non-finite ones."""
    integer = prop.get("type") == "integer"
    options = [st.sampled_from([math.nan, math.inf, -math.inf, Raw(math.inf)])]
    lo = prop.get("exclusiveMinimum", prop.get("minimum"))
    hi = prop.get("exclusiveMaximum", prop.get("maximum"))
    if lo is not None:
        edge = lo if "exclusiveMinimum" in prop else (
            lo - 1 if integer else math.nextafter(lo, -math.inf))
        options.append(st.just(edge))
        options.append(st.integers(-(2**63), edge) if integer else
                       st.floats(max_value=edge, allow_nan=False, allow_infinity=False))
    if "enum" in prop:  # a few allowed values: any other
        allowed = prop["enum"]
        options.append(st.integers(-(2**63), 2**63 - 1).filter(lambda v: v not in allowed))
    if hi is not None and hi < 2**63:
        edge = hi if "exclusiveMaximum" in prop else (
            hi + 1 if integer else math.nextafter(hi, math.inf))
        options.append(st.just(edge))
        options.append(st.integers(edge, 2**63 - 1) if integer else
                       st.floats(min_value=edge, allow_nan=False, allow_infinity=False))
    return st.one_of(options)


def write_study(doc: dict, path: Path) -> None:
    text = toml_document(doc)
    # hypothesis' floats are written by repr; the overflowing literal is put in by hand
    path.write_text(text.replace("inf_as_1e400", OVERFLOW), encoding="utf-8")


def with_value(steps: tuple, value) -> dict:
    marker = "inf_as_1e400"
    doc = place(copy.deepcopy(VALID_STUDY), steps, marker if isinstance(value, Raw) else value)
    return doc


def refused(doc: dict, name: str, tmp_path: Path, capsys) -> str:
    """Run the study file; assert exit 2, one line naming the file and ``name``, no
    traceback and no study directory; return the line."""
    path = tmp_path / "study.toml"
    write_study(doc, path)
    text = path.read_text()
    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    code, stdout, stderr = ablab_cli(["run", str(path), "--out", str(out)], capsys)
    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, (text, stdout, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and str(path) in lines[0], lines[0]
    assert name in lines[0], (text, lines[0])
    assert not out.exists(), f"{out} written for a refused file"
    return lines[0]


# ------------------------------------------------------------------ the properties


def test_the_schema_declares_domains_for_the_numbers_that_need_one():
    # the walk finds what a user writes most: a sanity check of the walk itself
    labels = {label(steps) for steps, _ in BOUNDED}
    for expected in ("base.optimizer<sgd>.lr", "base.optimizer<adam>.beta1",
                     "base.dataset<moons>.noise", "base.dataset<moons>.val_fraction",
                     "base.model<mlp>.dropout", "base.early_stopping.min_delta",
                     "base.schedule<reduce_on_plateau>.factor", "equivalence_margin",
                     "base.loss<cross_entropy>.label_smoothing", "tune.trials"):
        assert expected in labels, sorted(labels)
    assert len(TESTED) > 60
    # numbers without a domain: only those where any finite value means something
    free = sorted(label(steps) for steps, prop in FIELDS if not has_domain(prop))
    # a declared metric's range takes inf / -inf for "no bound" (nan is refused)
    assert free == ["base.metric.range[]", "metric.range[]", "outcomes[].range[]",
                    "reference[].value"], free


def test_the_valid_study_is_accepted(tmp_path, capsys, no_training):  # noqa: F811
    path = tmp_path / "study.toml"
    write_study(VALID_STUDY, path)
    code, _, stderr = ablab_cli(["run", str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 1, stderr  # planned and stored; the stand-in executor runs nothing


@pytest.mark.parametrize("steps", [steps for steps, _ in TESTED], ids=label)
@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_number_outside_its_domain_is_refused(steps, data, tmp_path, capsys,
                                                    no_training):  # noqa: F811
    prop = dict(BOUNDED)[steps]
    value = data.draw(outside(prop), label=label(steps))
    line = refused(with_value(steps, value), field_name(steps), tmp_path, capsys)
    if isinstance(value, float) and math.isfinite(value):
        assert "must be" in line, line  # the domain in words, e.g. "must be ... > 0"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, Raw(math.inf)],
                         ids=["nan", "inf", "-inf", "1e400"])
def test_a_number_with_no_domain_must_still_be_finite(value, tmp_path, capsys,
                                                      no_training):  # noqa: F811
    (steps, _), = [(s, p) for s, p in FIELDS
                   if not has_domain(p) and label(s) == "reference[].value"]
    refused(with_value(steps, value), "value", tmp_path, capsys)


@pytest.mark.parametrize("text", ["loguniform(1e-4, inf)", "uniform(nan, 0.5)",
                                  "uniform(-inf, 0.5)", "choice(0.01, inf)",
                                  "loguniform(1e-4, 1e400)"])
def test_tuning_ranges_must_be_finite(text, tmp_path, capsys, no_training):  # noqa: F811
    doc = copy.deepcopy(VALID_STUDY)
    doc["tune"] = {"params": {"optimizer.lr": text}, "trials": 1, "seeds": [1000]}
    refused(doc, "tune.params", tmp_path, capsys)


# ------------------------------------------------------------------ the issue's two files


ISSUE_FILES = {
    "lr_inf": ('optimizer = { name = "sgd", lr = inf }',
               "optimizer.lr: must be a finite number > 0 (got inf)"),
    "moons_3": ('dataset = { name = "moons", n_samples = 3 }',
                "dataset 'moons' has 3 examples of 2 classes"),
}


@pytest.mark.parametrize("case", sorted(ISSUE_FILES))
@pytest.mark.parametrize("command", ["train", "run"])
def test_the_issues_two_files_are_refused(case, command, tmp_path, capsys,
                                          no_training):  # noqa: F811
    line_in_file, expected = ISSUE_FILES[case]
    run = ['epochs = 2', 'model = { name = "mlp", hidden = [8] }']
    if "dataset" not in line_in_file:
        run.append('dataset = { name = "moons", n_samples = 200 }')
    run.append(line_in_file)
    if command == "train":
        text = "\n".join(run) + "\n"
    else:
        text = 'name = "issue30"\nseeds = [0]\n[base]\n' + "\n".join(run) + "\n"
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    out = tmp_path / "out"
    code, stdout, stderr = ablab_cli([command, str(path), "--out", str(out)], capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, stdout + stderr
    assert str(path) in lines[0] and expected in lines[0], lines[0]
    assert "Traceback" not in stdout + stderr
    assert not out.exists()


# ------------------------------------------------------------------ non-finite numbers on disk


def test_json_files_never_hold_a_non_finite_number(tmp_path):
    from ablab.store.files import atomic_write_json

    path = tmp_path / "summary.json"
    atomic_write_json(path, {"loss": math.inf, "history": [1.0, math.nan, -math.inf],
                             "nested": {"x": (math.nan, 2)}, "ok": 0.5})
    import json

    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"loss": None, "history": [1.0, None, None],
                                "nested": {"x": [None, 2]}, "ok": 0.5}


def test_a_diverging_run_writes_its_summary(tmp_path, capsys):
    """A learning rate that is finite but absurd: the run diverges, is marked so, and
    ``summary.json`` is written as JSON (exit 1, no traceback)."""
    from conftest import cli_in_process

    path = tmp_path / "run.toml"
    path.write_text('epochs = 3\ndevice = "cpu"\nbatch_size = 32\n'
                    'dataset = { name = "moons", n_samples = 200 }\n'
                    'model = { name = "mlp", hidden = [16] }\n'
                    'optimizer = { name = "sgd", lr = 1e30 }\n')
    out = tmp_path / "out"
    code, stdout, stderr = cli_in_process(["train", str(path), "--out", str(out)], capsys)
    assert "Traceback" not in stdout + stderr
    assert code == 1 and "diverged" in stderr, stdout + stderr
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"


# ------------------------------------------------------------------ data too small for its split


def _run_study(doc: dict, tmp_path: Path, capsys) -> tuple[int, list[str]]:
    path = tmp_path / "study.toml"
    write_study(doc, path)
    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    code, stdout, stderr = ablab_cli(["run", str(path), "--out", str(out)], capsys)
    assert "Traceback" not in stdout + stderr
    return code, [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(("dataset", "expected"), [
    ({"name": "moons", "n_samples": 3},
     "with test_fraction = 0.2, val_fraction = 0.2 its train / val / test splits hold "
     "1 / 1 / 1: the train split cannot hold one of each of the 2 classes"),
    ({"name": "digits", "subset": 5},
     "dataset 'digits' has 1797 examples of 10 classes; with test_fraction = 0.2, "
     "val_fraction = 0.2, subset = 5"),
    ({"name": "fashion_mnist", "eval_subset": 9},
     "the val split cannot hold one of each of the 10 classes"),
    ({"name": "circles", "n_samples": 100, "val_fraction": 0.01},
     "the val split cannot hold one of each of the 2 classes"),
])
def test_built_in_data_too_small_for_its_split_is_refused(dataset, expected, tmp_path, capsys,
                                                          no_training):  # noqa: F811
    doc = copy.deepcopy(VALID_STUDY)
    doc["base"]["dataset"] = dataset
    code, lines = _run_study(doc, tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "base.dataset" in lines[0] and expected in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_a_users_table_too_small_for_its_split_is_refused(tmp_path, capsys,
                                                          no_training):  # noqa: F811
    """A CSV whose rarest class has two rows cannot give one to each of three splits: the
    split is computed on its labels, exactly as a run computes it, and refused."""
    rows = ["x,y,label"] + [f"{i},{i % 7},a" for i in range(30)] + [
        f"{i},{i % 5},b" for i in range(30)] + ["1,1,c", "2,2,c"]
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")
    doc = copy.deepcopy(VALID_STUDY)
    doc["base"]["dataset"] = {"name": "csv", "path": "points.csv", "target": "label"}
    code, lines = _run_study(doc, tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "dataset 'csv' has 62 examples of 3 classes" in lines[0], lines[0]
    assert "has no example of class 'c'" in lines[0], lines[0]
    # with enough of every class, the same file is planned (the stand-in runs nothing)
    rows += [f"{i},{i},c" for i in range(3, 20)]
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")
    code, lines = _run_study(doc, tmp_path, capsys)
    assert code == 1, lines


@pytest.mark.parametrize("init", ["normal(0, 1e400)", "normal(1e999, 0.1)"])
def test_an_init_string_must_hold_finite_numbers(init, tmp_path, capsys,
                                                 no_training):  # noqa: F811
    doc = copy.deepcopy(VALID_STUDY)
    doc["base"]["model"]["init"] = init
    line = refused(doc, "model.init", tmp_path, capsys)
    assert "needs finite numbers" in line, line


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(4, 400), test_fraction=st.floats(0.01, 0.9), val_fraction=st.floats(0, 0.9),
       subset=st.one_of(st.none(), st.integers(1, 300)),
       eval_subset=st.one_of(st.none(), st.integers(1, 300)))
def test_planned_split_sizes_are_those_a_run_gets(n, test_fraction, val_fraction, subset,
                                                  eval_subset):
    """The sizes the plan check computes from a dataset's declared size are the sizes of
    the splits a run makes (computed here by splitting real labels); where the run's split
    would fail (an empty split), or a split is smaller than the class count, the plan check
    refuses the dataset."""
    import numpy as np

    from ablab.config import parse_run
    from ablab.data.loading import _cap, split_indices
    from ablab.data.plan_check import check_split_sizes, planned_sizes
    from ablab.errors import ConfigError

    dataset = {"name": "moons", "n_samples": n, "test_fraction": test_fraction,
               "val_fraction": val_fraction, "subset": subset, "eval_subset": eval_subset}
    cfg = parse_run({"epochs": 1, "dataset": dataset, "model": "mlp"}).dataset
    planned = planned_sizes(cfg, n, has_test=False)
    y = np.arange(n) % 2
    try:
        ids = split_indices(y, has_test=False, val_fraction=val_fraction,
                            test_fraction=test_fraction, subset=subset, seed=0)
    except ValueError:  # scikit-learn refuses a split that would be empty
        real = None
    else:
        real = {"train": len(ids["train"])}
        if ids["val"] is not None:
            real["val"] = len(_cap(ids["val"], y, eval_subset))
        real["test"] = len(_cap(ids["test"], y, eval_subset))
        assert planned == {k: v for k, v in real.items()}
    if real is None or min(planned.values()) < 2:
        with pytest.raises(ConfigError, match="examples of 2 classes"):
            check_split_sizes(cfg, 0, "study.toml: base.dataset")
    else:
        check_split_sizes(cfg, 0, "study.toml: base.dataset")
