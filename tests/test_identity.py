"""Run identity, defined once (ablab.identity): run ids, variant ids, seed units, analysis."""

import pytest
from conftest import assert_one_line_error, run_cli, tiny_run

from ablab.analysis.checks import config_differences
from ablab.config import parse_run, run_id
from ablab.errors import ConfigError
from ablab.execute.base import Task, plan_units
from ablab.identity import NOT_IN_IDENTITY, identity, outside_identity
from ablab.study import StudyConfig, expand, variant_id

MF_STUDY = """
name = "mf"
seeds = [0]
[base]
epochs = 1
dataset = { name = "digits" }
model = { name = "mnist_cnn3" }
[[vary]]
"memory_format" = ["auto", "contiguous"]
"""


def test_stored_run_ids_do_not_change():
    # Study directories written by earlier versions resume only if these strings hold.
    assert run_id(parse_run(tiny_run())) == "9a5cd1bf6f59"
    digits = {"epochs": 1, "dataset": {"name": "digits"}, "model": {"name": "mnist_cnn3"}}
    assert run_id(parse_run(digits)) == "f3cb0a4ee88f"
    assert run_id(parse_run({**digits, "precision": "bf16"})) == "199e2c32cc5c"


def test_run_and_variant_ids_read_one_identity():
    a = parse_run(tiny_run(seed=0))
    b = parse_run(tiny_run(seed=1, memory_format="contiguous", keep="last", name="x"))
    assert identity(a, with_seed=False) == identity(b, with_seed=False)
    assert variant_id(a) == variant_id(b) and run_id(a) != run_id(b)
    assert identity(a.resolved()) == identity(a)  # plain data and RunConfig alike
    assert "seed" in identity(a) and "seed" not in identity(a, with_seed=False)
    c = parse_run(tiny_run(optimizer={"name": "adam", "lr": 0.02}))
    assert variant_id(a) != variant_id(c)


def test_seed_units_and_analysis_use_the_identity(monkeypatch):
    import ablab.train.batched as batched

    # Batching as on a GPU: the units are then the variants (runs differing in seed only).
    monkeypatch.setattr(batched, "worth_batching", lambda configs: True)
    monkeypatch.setattr(batched, "can_batch", lambda configs: True)
    configs = [tiny_run(seed=0), tiny_run(seed=1, device="auto", eval_batch_size=99)]
    tasks = [Task(f"r{i}", f"r{i}", parse_run(c).resolved()) for i, c in enumerate(configs)]
    assert len(plan_units(tasks)) == 1  # one variant: one unit of work
    other = Task("r2", "r2", parse_run(tiny_run(epochs=4)).resolved())
    assert len(plan_units(tasks + [other])) == 2
    for field in NOT_IN_IDENTITY:
        assert outside_identity(field) and outside_identity(field + ".sub")
    assert not outside_identity("precision") and not outside_identity("optimizer.lr")
    a, b = parse_run(tiny_run()).resolved(), parse_run(tiny_run(keep="last")).resolved()
    assert config_differences(a, b, []) == []
    assert config_differences(a, parse_run(tiny_run(epochs=4)).resolved(), []) == ["epochs"]


@pytest.mark.parametrize("field,values", [
    ("memory_format", ["auto", "contiguous"]),
    ("compile", [False, True]),
    ("device", ["cpu", "auto"]),
    ("keep", ["none", "last"]),
])
def test_varying_a_field_outside_the_identity_is_refused(field, values):
    base = {k: v for k, v in tiny_run().items() if k != "seed"}
    cfg = StudyConfig.model_validate({"name": "t", "seeds": [0], "base": base,
                                      "vary": [{field: values}]})
    with pytest.raises(ConfigError) as info:
        expand(cfg, "s.toml")
    assert str(info.value).startswith(f's.toml: vary[0]."{field}": does not change')


def test_cli_refuses_the_memory_format_study_at_plan_time(tmp_path):
    path = tmp_path / "mf.toml"
    path.write_text(MF_STUDY)
    proc = run_cli("run", path, "--out", tmp_path / "X")
    line = assert_one_line_error(proc, 'vary[0]."memory_format"', "does not change")
    assert "UNIQUE" not in line and not (tmp_path / "X" / "index.sqlite").exists()


def test_resuming_a_directory_refreshes_stored_variant_ids(tmp_path):
    from ablab.store import StudyStore
    from ablab.study import load_study

    path = tmp_path / "s.toml"
    path.write_text(MF_STUDY.replace('"memory_format" = ["auto", "contiguous"]',
                                     '"epochs" = [1, 2]'))
    study = load_study(path)
    with StudyStore(tmp_path / "out") as store, store.locked():
        store.sync_plan(study)
        store.db.execute("UPDATE runs SET variant_id='written-by-an-older-ablab'")
        store.sync_plan(study)  # what `ablab run` does when it resumes
        stored = {r["run_id"]: r["variant_id"] for r in store.rows()}
    assert stored == {r.run_id: r.variant_id for r in study.runs}
