"""``ablab export DIR --to mlflow | tensorboard``: read back through each tool's own
reader (MlflowClient, TensorBoard's EventAccumulator)."""

import sys

import pytest
from conftest import moons_study

from ablab.errors import UserError
from ablab.report import write_tables
from ablab.store import StudyStore, atomic_write_text
from ablab.study import load_study
from ablab.train import fit


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A finished two-run study, trained in this process (no workers) to stay quick."""
    root = tmp_path_factory.mktemp("export")
    study = load_study(moons_study(root, "export-study", seeds=(0,),
                                   base='probes = ["activations"]\n'))
    store = StudyStore(root / "out")
    with store.locked():
        store.sync_plan(study)
        for planned in study.runs:
            store.record_result(fit(planned.config).to_dict())
        write_tables(store)
    store.close()
    # the exporter ships whatever report is there; the report itself is tested elsewhere
    atomic_write_text(root / "out" / "report.html", "<html>the report</html>")
    return root / "out", study


def test_mlflow_export_reads_back_through_mlflow(study_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, study = study_dir
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = _cli(monkeypatch, "export", str(out), "--to", "mlflow", "--tracking-uri", uri)
    assert code in (0, None)
    printed = capsys.readouterr().out
    assert "2 runs exported" in printed
    assert f"view: mlflow ui --backend-store-uri {uri}" in " ".join(printed.split())

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("export-study")
    runs = client.search_runs([experiment.experiment_id])
    by_kind = {}
    for run in runs:
        by_kind.setdefault(run.data.tags["ablab.kind"], []).append(run)
    (parent,) = by_kind["study"]
    children = {r.data.tags["ablab.run_id"]: r for r in by_kind["run"]}
    assert set(children) == {r.run_id for r in study.runs}
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "results.csv", "summary.csv", "study.toml"} <= artifacts

    planned = study.runs[1]
    child = children[planned.run_id]
    record = StudyStore.existing(out).load_record(planned.run_id)
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.run_name == planned.label
    params = child.data.params
    assert params["model.activation.name"] == "tanh"
    assert params["optimizer.lr"] == "0.01"
    assert params["model.hidden"] == "[32, 32]"
    assert params["probes.0.name"] == "activations"
    history = client.get_metric_history(child.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [h["val_accuracy"] for h in record["history"]]
    )
    assert child.data.metrics["test_accuracy"] == pytest.approx(record["final"]["test_accuracy"])
    assert "record.json" in {a.path for a in client.list_artifacts(child.info.run_id)}

    # exporting again adds nothing
    code = _cli(monkeypatch, "export", str(out), "--to", "mlflow", "--tracking-uri", uri)
    assert "0 runs exported, 2 already there" in capsys.readouterr().out
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_tensorboard_export_reads_back_with_event_accumulator(study_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ablab.export import export_tensorboard
    from ablab.export.to_tensorboard import run_folder

    out, study = study_dir
    info = export_tensorboard(out, logdir=tmp_path / "tb")
    assert info["runs"] == 2 and info["histograms"] > 0
    planned = study.runs[0]
    record = StudyStore.existing(out).load_record(planned.run_id)
    events = EventAccumulator(
        str(tmp_path / "tb" / run_folder(planned.label, planned.run_id)),
        size_guidance={"scalars": 0, "histograms": 0, "tensors": 0},
    )
    events.Reload()
    tags = events.Tags()
    val = events.Scalars("accuracy/val")
    assert [e.step for e in val] == [1, 2, 3]
    assert [e.value for e in val] == pytest.approx([h["val_accuracy"] for h in record["history"]])
    final = events.Scalars("final/test_accuracy")
    assert final[0].value == pytest.approx(record["final"]["test_accuracy"])

    probe = record["probes"]["activations"]
    layer = probe["layers"][0]
    assert f"activations/{layer}" in tags["histograms"]
    hists = events.Histograms(f"activations/{layer}")
    assert [h.step for h in hists] == probe["epochs"]  # epoch 0 (before training) onwards
    first = hists[0].histogram_value
    assert first.num == sum(probe["hist"][0][0])
    assert list(first.bucket) == probe["hist"][0][0]

    again = export_tensorboard(out, logdir=tmp_path / "tb")  # rewrites, no duplicates
    assert again["runs"] == 2
    folder = tmp_path / "tb" / run_folder(planned.label, planned.run_id)
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1


@pytest.mark.parametrize("target", ["mlflow", "tensorboard"])
def test_missing_extra_is_one_line_exit_2(study_dir, target, monkeypatch, capsys):
    import importlib

    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name.split(".")[0] == target:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr("ablab.export.common.importlib.import_module", fake)
    out, _ = study_dir
    code = _cli(monkeypatch, "export", str(out), "--to", target)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"pip install 'ablab[{target}]'" in err[0]


def test_export_of_a_non_study_dir_is_a_user_error(tmp_path):
    from ablab.export import export_tensorboard

    with pytest.raises(UserError, match="not a study directory"):
        export_tensorboard(tmp_path)


def _cli(monkeypatch, *args):
    from ablab import cli

    monkeypatch.setattr(sys, "argv", ["ablab", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code
