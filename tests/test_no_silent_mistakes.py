"""A factor that changes nothing, an ignored override, stale artefacts, stale
data or missing data never passes silently."""

import json

import pytest
from conftest import assert_one_line_error, cli_env, run_cli

import ablab  # noqa: F401  (fills the registries)
from ablab.analysis import analyze
from ablab.errors import ConfigError
from ablab.runner import run_study
from ablab.store import StudyStore
from ablab.study import load_study

PLUGIN = '''
import ablab
from torch import nn


def _net(spec, width):
    n_in = 1
    for d in spec.input_shape:
        n_in *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), spec.act(),
                         nn.Linear(width, spec.num_classes))


@ablab.register_model("trust_plain_net", "never calls spec.dropout_or (as the README shows)")
def trust_plain_net(spec, *, width: int = 8) -> nn.Module:
    return _net(spec, width)


@ablab.register_model("trust_claims_net", "declares dropout but ignores it",
                      honours=("activation", "dropout"))
def trust_claims_net(spec, *, width: int = 8) -> nn.Module:
    return _net(spec, width)
'''

BASE = """
name = "trust"
seeds = [0, 1]
plugins = ["ablab_trust_models.py"]

[base]
epochs = 2
batch_size = 64
device = "cpu"
dataset = {{ name = "moons", n_samples = 200, noise = 0.2 }}
model = {{ name = "{model}", width = 8 }}
"""


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trust_plugins")
    (folder / "ablab_trust_models.py").write_text(PLUGIN)
    return folder


def _study(folder, model, vary):
    path = folder / f"study-{model}.toml"
    path.write_text(BASE.format(model=model) + vary)
    return path


def test_a_varied_option_the_plugin_model_never_reads_is_refused(plugin_dir):
    path = _study(plugin_dir, "trust_plain_net", '[[vary]]\n"model.dropout" = [0.0, 0.5]\n')
    with pytest.raises(ConfigError, match="never reads dropout"):
        load_study(path, allow_plugins=True)
    proc = run_cli("run", path, "--out", plugin_dir / "refused", "--allow-plugins")
    assert_one_line_error(
        proc, 'vary[0]."model.dropout": model \'trust_plain_net\' never reads dropout',
        "spec.dropout_or(default)",
    )
    assert not (plugin_dir / "refused").exists()
    # what it does read may be varied
    ok = _study(plugin_dir, "trust_plain_net", '[[vary]]\n"model.activation" = ["relu", "tanh"]\n')
    assert len(load_study(ok, allow_plugins=True).runs) == 4


@pytest.mark.slow
def test_levels_that_train_identical_runs_get_a_warning_and_no_verdict(plugin_dir, tmp_path):
    path = _study(plugin_dir, "trust_claims_net", '[[vary]]\n"model.dropout" = [0.0, 0.5]\n')
    study = load_study(path, allow_plugins=True)  # it claims to honour dropout: planned
    out = tmp_path / "out"
    run_study(study, out, workers=1, threads=1)
    with StudyStore.existing(out) as store:
        a = analyze(store)
    assert list(a.inert) == ["dropout"]
    assert "bit-identical final metrics for every seed (2)" in a.inert["dropout"]
    assert a.inert["dropout"] in a.warnings
    assert not [c for c in a.comparisons if c.factor == "dropout"]
    assert a.verdicts == []
    md = (out / "report.md").read_text()
    head = md.split("## Verdicts")[0]
    assert "WARNING:** dropout: dropout=0 and dropout=0.5 gave bit-identical" in head


OPTIMIZERS = """
name = "trust-optimizers"
seeds = [0]
[base]
epochs = 1
device = "cpu"
dataset = { name = "moons", n_samples = 200 }
model = { name = "mlp", hidden = [8] }
[[vary]]
"optimizer" = [{ name = "adam", lr = 0.001 }, { name = "sgd", lr = 0.01, momentum = 0.9 }]
"""


def test_set_reaches_every_level_of_a_varied_table_and_a_typo_is_refused(tmp_path):
    path = tmp_path / "optimizers.toml"
    path.write_text(OPTIMIZERS)
    study = load_study(path, sets=["optimizer.lr=0.5"])
    assert [r.config.optimizer.name for r in study.runs] == ["adam", "sgd"]
    assert [r.config.optimizer.options["lr"] for r in study.runs] == [0.5, 0.5]
    assert study.runs[1].config.optimizer.options["momentum"] == 0.9  # the rest is kept
    with pytest.raises(ConfigError, match="collides with the varied field"):
        load_study(_varying_lr(tmp_path), sets=["optimizer=sgd"])
    proc = run_cli("run", path, "--out", tmp_path / "out", "--set", "optimizer.lrr=0.1")
    assert_one_line_error(proc, 'vary[0]."optimizer".lrr: unknown option for \'adam\'',
                          "(did you mean 'lr'?)")
    assert not (tmp_path / "out").exists()


def _varying_lr(folder):
    path = folder / "lr.toml"
    varied = OPTIMIZERS.split("[[vary]]")[0] + '[[vary]]\n"optimizer.lr" = [0.01, 0.1]\n'
    path.write_text(varied)
    return path


KEEP = """
name = "trust-keep"
seeds = [0, 1]
[base]
epochs = 2
batch_size = 64
device = "cpu"
dataset = { name = "moons", n_samples = 200, noise = 0.2 }
model = { name = "mlp", hidden = [8] }
"""


def _finals(out):
    with StudyStore.existing(out) as store:
        return {r["run_id"]: (r["final"]["test_accuracy"], r["final"]["test_loss"])
                for r in store.rows()}


def test_keep_added_later_retrains_those_runs_with_identical_metrics(tmp_path, capsys):
    path, out = tmp_path / "keep.toml", tmp_path / "out"
    path.write_text(KEEP)
    first = run_study(load_study(path), out, workers=1, threads=1, report=False)
    assert first.ran == 2 and first.notes == []
    before = _finals(out)
    with pytest.raises(ablab.errors.UserError, match="kept no weights|keep"):
        ablab.load_model(out, next(iter(before)))
    path.write_text(KEEP + 'keep = "last"\n')
    said: list[str] = []  # the library says it through on_line; the CLI prints it
    again = run_study(load_study(path), out, workers=1, threads=1, report=False,
                      on_line=said.append)
    assert again.ran == 2
    assert again.notes == said == [
        're-training 2 stored runs with the same seeds: the study file asks '
        'for weights they did not keep (keep = "last")']
    assert capsys.readouterr().out == ""
    assert _finals(out) == before  # same runs, same seeds: identical metrics
    for rid in before:
        assert ablab.load_model(out, rid) is not None
    assert 'keep = "last"' in (out / "study.toml").read_text()
    assert run_study(load_study(path), out, workers=1, threads=1, report=False).ran == 0
    # probes are part of a run's identity: turning one on re-trains under new ids
    path.write_text(KEEP + 'keep = "last"\nprobes = ["weights"]\n')
    probed = run_study(load_study(path), out, workers=1, threads=1, report=False)
    assert probed.ran == 2 and "turns on probes" in probed.notes[0]
    after = _finals(out)
    assert sorted(after.values()) == sorted(before.values())
    with StudyStore.existing(out) as store:
        assert all(store.load_record(rid)["probes"].get("weights") for rid in after)


CSV_PLUGIN = '''
import numpy as np
import ablab
from ablab.data import RawData


@ablab.register_dataset("trust_csv", "points from a CSV file", shape=(2,),
                        files=lambda options: [options["path"]])
def trust_csv(*, path: str = "points.csv") -> RawData:
    data = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return RawData(data[:, :2], data[:, 2].astype(np.int64), ["0", "1"], "standard")
'''

CSV_STUDY = """
name = "trust-csv"
seeds = [0]
plugins = ["ablab_trust_data.py"]
[base]
epochs = 1
device = "cpu"
dataset = {{ name = "trust_csv", path = "{csv}" }}
model = {{ name = "mlp", hidden = [4] }}
"""


def _points(path, flip=False):
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=120, noise=0.2, random_state=0)
    y = 1 - y if flip else y
    path.write_text("\n".join(f"{a:.6f},{b:.6f},{c}" for (a, b), c in zip(x, y, strict=True)))


def test_a_study_resumed_against_changed_data_is_refused(tmp_path):
    (tmp_path / "ablab_trust_data.py").write_text(CSV_PLUGIN)
    csv = tmp_path / "points.csv"
    _points(csv)
    path, out = tmp_path / "csv.toml", tmp_path / "out"
    path.write_text(CSV_STUDY.format(csv=csv))
    assert run_study(load_study(path, allow_plugins=True), out, workers=1, threads=1,
                     report=False).ran == 1
    with StudyStore.existing(out) as store:
        rid = store.rows()[0]["run_id"]
        stored = json.loads(store.meta("data_files"))
        assert store.load_record(rid)["data_files"] == next(iter(stored.values()))
    text_before = (out / "study.toml").read_text()
    _points(csv, flip=True)  # the same file, other labels
    path.write_text(CSV_STUDY.format(csv=csv) + "# edited\n")
    with pytest.raises(ablab.errors.UserError) as info:
        run_study(load_study(path, allow_plugins=True), out, workers=1, threads=1, report=False)
    assert str(info.value) == (f"{csv}: changed since these runs (1 stored runs read it): "
                               "use a new --out, or --rerun-changed")
    assert (out / "study.toml").read_text() == text_before  # refused: nothing written
    again = run_study(load_study(path, allow_plugins=True), out, workers=1, threads=1,
                      report=False, rerun_changed=True)
    assert again.ran == 1 and "whose data changed" in again.notes[-1]
    # the same content written again (a new mtime) is not a change
    content = csv.read_bytes()
    csv.write_bytes(content)
    assert run_study(load_study(path, allow_plugins=True), out, workers=1, threads=1,
                     report=False).ran == 0


FASHION = """
name = "trust-fashion"
seeds = [0]
[base]
epochs = 1
device = "cpu"
dataset = { name = "fashion_mnist", subset = 100 }
model = { name = "mlp", hidden = [4] }
[[vary]]
"dataset.name" = ["fashion_mnist", "digits"]
"""


def test_missing_data_is_exit_2_before_any_run(tmp_path):
    path, out, data = tmp_path / "f.toml", tmp_path / "out", tmp_path / "data"
    path.write_text(FASHION)
    system = tmp_path / "system"
    system.mkdir()
    data.mkdir()
    env = cli_env(ABLAB_SYSTEM_DATA=str(system), ABLAB_DATA=str(data))  # ABLAB_DOWNLOAD=0
    proc = run_cli("run", path, "--out", out, env=env)
    line = assert_one_line_error(
        proc, "error: dataset fashion_mnist: missing; needs train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in "
        f"{data / 'FashionMNIST' / 'raw'}")
    assert "ABLAB_DOWNLOAD=0" in line
    assert not out.exists()  # no runs recorded as failed: no directory at all
    assert list(data.iterdir()) == [] and list(system.iterdir()) == []  # no cache folders
