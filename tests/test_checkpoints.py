"""Kept weights: ``keep = "best" | "last"``, returned by fit, saved by the store as
safetensors, rebuilt by ``ablab.load_model``."""

import json

import pytest
import torch
from conftest import tiny_run

import ablab
from ablab.config import parse_run, run_id
from ablab.data import load_data
from ablab.errors import UserError
from ablab.models import build_model
from ablab.store import StudyStore
from ablab.study import load_study
from ablab.train import fit

STUDY = """
name = "keep"
seeds = [0]
[base]
epochs = 3
batch_size = 64
device = "cpu"
keep = "{keep}"
dataset = {{ name = "moons", n_samples = 300, noise = 0.2 }}
model = {{ name = "mlp", hidden = [16] }}
"""


def _store_with(tmp_path, keep: str):
    """A study directory holding one run trained in this process (no worker spawn)."""
    path = tmp_path / "keep.toml"
    path.write_text(STUDY.format(keep=keep))
    study = load_study(path)
    with StudyStore(tmp_path / "out") as store, store.locked():
        store.sync_plan(study)
        result = fit(study.runs[0].config)
        payload = result.to_dict()
        if result.weights is not None:
            payload["weights"] = result.weights_bytes()  # as run_task sends it
        store.record_result(payload)
    return study.runs[0], result


def test_fit_returns_weights_only_when_asked():
    assert fit(parse_run(tiny_run())).weights is None
    result = fit(parse_run(tiny_run(keep="last")))
    assert result.final["kept_epoch"] == result.final["weights_epoch"] == 3
    assert all(t.device.type == "cpu" for t in result.weights.values())
    record = result.to_dict()
    assert "weights" not in record and record["input_shape"] == [2]
    assert record["num_classes"] == 2
    json.dumps(record)  # the record stays plain data


def test_keep_best_is_the_best_validation_epoch():
    result = fit(parse_run(tiny_run(keep="best", epochs=4)))
    assert result.final["kept_epoch"] == result.final["best_val_epoch"]


def test_keep_does_not_change_run_ids_and_disables_batching():
    from ablab.train.batched import can_batch

    plain, kept = parse_run(tiny_run()), parse_run(tiny_run(keep="best"))
    assert run_id(plain) == run_id(kept)
    seeds = [parse_run(tiny_run(keep="last", seed=s)) for s in (0, 1)]
    assert not can_batch(seeds)


def test_saved_weights_load_back_with_identical_predictions(tmp_path):
    planned, result = _store_with(tmp_path, "last")
    out = tmp_path / "out"
    weights = out / "runs" / f"{planned.run_id}.safetensors"
    assert weights.exists()
    record = json.loads((out / "runs" / f"{planned.run_id}.json").read_text())
    assert "weights" not in record

    cfg = planned.config
    direct = build_model(cfg.model, tuple(result.input_shape), result.num_classes)
    direct.load_state_dict(result.weights)
    direct.eval()
    loaded = ablab.load_model(out, planned.run_id[:6])  # a unique prefix is enough
    assert not loaded.training

    bundle = load_data(cfg.dataset, cfg.seed, torch.device("cpu"))
    x = bundle.normalize(bundle.test.x)
    with torch.inference_mode():
        expected, got = direct(x), loaded(x)
    assert torch.equal(expected, got)
    accuracy = (got.argmax(1) == bundle.test.y).float().mean().item()
    assert accuracy == pytest.approx(record["final"]["test_accuracy"], abs=1e-6)


def test_load_model_without_kept_weights_says_why(tmp_path):
    planned, _ = _store_with(tmp_path, "none")
    with pytest.raises(UserError, match="kept no weights"):
        ablab.load_model(tmp_path / "out", planned.run_id)
    with pytest.raises(UserError, match="not a run of this study"):
        ablab.load_model(tmp_path / "out", "zzzz")
