"""The user's own data (csv / parquet, npz, image folders) as built-in datasets, run from a
directory other than the study's, with one-line errors; and the plugin author's model
check (``ablab check-model``). Everything trains in this process on tiny generated files
(the local executor is told to stay here: no worker process to start)."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_in_process

import ablab
import ablab.execute.local
from ablab.data import load_data, load_raw
from ablab.data.fingerprint import dataset_files, fingerprints
from ablab.registry import MODELS
from ablab.runner import run_study
from ablab.study import load_study

STUDY = """
name = "{name}"
seeds = [0]
[base]
epochs = {epochs}
batch_size = 16
device = "cpu"
dataset = {dataset}
model = {{ name = "mlp", hidden = [16] }}
optimizer = {{ name = "adam", lr = 0.05 }}
"""


@pytest.fixture
def places(tmp_path, monkeypatch):
    """(project folder holding the study and its data, another folder as the cwd); the
    local executor trains in this process; caches go to a fresh ABLAB_DATA."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("ABLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(ablab.execute.local, "pack_or_stay_here", lambda workers: (None, True))
    return project, elsewhere


def _study(project: Path, dataset: str, name: str = "mine", epochs: int = 4) -> Path:
    path = project / f"{name}.toml"
    path.write_text(STUDY.format(name=name, dataset=dataset, epochs=epochs))
    return path


def _blobs(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well separated Gaussian blobs in 3 features (any classifier: ~100%)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 3)) + np.where(y[:, None] == 1, 2.5, -2.5)
    return x.astype(np.float32), y


def _write_csv(path: Path, x: np.ndarray, labels: list[str], extra: dict | None = None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "label", *(extra or {})])
        for i, (row, label) in enumerate(zip(x, labels, strict=True)):
            w.writerow([*(f"{v:.4f}" for v in row), label,
                        *(vals[i] for vals in (extra or {}).values())])


def _accuracy(out: Path) -> float:
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["done"]
    return float(rows[0]["test_accuracy"])


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    return cli_in_process(["run", *map(str, args), "--workers", "1", "--threads", "1"], capsys)


def _train(study: Path, out: str, **options):
    """``ablab run`` without the report (its figures are most of a tiny study's time)."""
    outcome = run_study(load_study(study), out, workers=1, threads=1, report=False, **options)
    assert outcome.counts.get("done") == 1, outcome.failures
    return outcome


# ---------------------------------------------------------------- end to end


def test_csv_study_from_another_directory_and_a_changed_file_is_retrained(places, capsys):
    project, elsewhere = places
    x, y = _blobs()
    _write_csv(project / "data" / "points.csv", x, [["cat", "dog"][v] for v in y])
    study = _study(project, '{ name = "csv", path = "data/points.csv", target = "label" }')

    _train(study, "out")
    assert _accuracy(elsewhere / "out") >= 0.9
    record = json.loads(next((elsewhere / "out" / "runs").glob("*.json")).read_text())
    dataset = record["config"]["dataset"]
    assert dataset["path"] == "data/points.csv"  # as written: the run id does not hold the
    assert dataset["base_dir"] == str(project.resolve())  # folder, the config does
    assert record["data_files"]["points.csv"]["path"] == str(project / "data" / "points.csv")
    bundle = load_data(load_study(study).runs[0].config.dataset, 0)
    assert bundle.class_names == ["cat", "dog"] and bundle.input_shape == (3,)

    # the same study in another folder: same run ids (base_dir is not in the identity)
    moved = shutil.copytree(project, project.parent / "moved")
    assert ([r.run_id for r in load_study(moved / "mine.toml").runs]
            == [r.run_id for r in load_study(study).runs])

    _write_csv(project / "data" / "points.csv", x[::-1], [["cat", "dog"][v] for v in y])
    code, out, err = _run([study, "--out", "out"], capsys)
    assert code == 2 and "points.csv: changed since these runs" in err
    outcome = _train(study, "out", rerun_changed=True)
    assert outcome.ran == 1
    assert "re-training 1 stored runs whose data changed (--rerun-changed)" in outcome.notes


def test_npz_study_with_its_own_test_arrays(places):
    project, elsewhere = places
    x, y = _blobs(200)
    np.savez(project / "data" / "arrays.npz", x=x[:150], y=y[:150], x_test=x[150:],
             y_test=y[150:])
    study = _study(project, '{ name = "npz", path = "data/arrays.npz", val_fraction = 0.25 }')
    raw = load_raw("npz", {"path": str(project / "data" / "arrays.npz")})
    assert raw.has_official_test and len(raw.y_test) == 50
    _train(study, "npz-out")
    assert _accuracy(elsewhere / "npz-out") >= 0.9
    record = json.loads(next((elsewhere / "npz-out" / "runs").glob("*.json")).read_text())
    assert record["sizes"] == {"train": 112, "val": 38, "test": 50}


def _images(root: Path, n: int = 24, size: tuple[int, int] = (10, 10), classes=None):
    """Per class, noisy grey images: dark ones, light ones (trivially separable)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for name, level in (classes or {"dark": 50, "light": 200}).items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.clip(rng.normal(level, 25, size), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder_study_decoded_once_and_cached(places, monkeypatch):
    project, elsewhere = places
    _images(project / "data" / "shapes")
    study = _study(project, '{ name = "image_folder", path = "data/shapes", size = [8, 8], '
                            'normalize = "standard" }', epochs=5)
    _train(study, "img-out")
    assert _accuracy(elsewhere / "img-out") >= 0.9
    cached = list((elsewhere.parent / "cache" / "user-images").glob("*.npz"))
    assert len(cached) == 1
    options = load_study(study).runs[0].config.dataset
    bundle = load_data(options, 0)
    assert bundle.class_names == ["dark", "light"] and bundle.input_shape == (1, 8, 8)
    # the cache is read, not the images: decoding again would fail here
    from ablab.data import user_images

    ablab.data.clear_cache()
    monkeypatch.setattr(user_images, "_decode", lambda *a: pytest.fail("decoded again"))
    assert load_data(options, 0).input_shape == (1, 8, 8)
    # the fingerprint names every image (cat/1.png and dog/1.png do not collide)
    files = dataset_files(load_study(study).runs[0].config.resolved()["dataset"])
    assert len(files) == 48
    names = next(iter(fingerprints([load_study(study).runs[0].config.resolved()["dataset"]])
                      .values()))
    assert len(names) == 48 and "dark/0.png" in names


def test_parquet_and_features_and_integer_labels(places):
    project, _ = places
    import pandas as pd

    x, y = _blobs(40)
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "note": ["t"] * 40, "label": y + 3})
    frame.to_parquet(project / "data" / "t.parquet")
    raw = load_raw("csv", {"path": str(project / "data" / "t.parquet"), "target": "label",
                           "features": ["a", "b"]})
    assert raw.x.shape == (40, 2) and raw.class_names == ["3", "4"]
    assert sorted(set(raw.y.tolist())) == [0, 1]


# ---------------------------------------------------------------- one-line errors


def _bad_csv(project: Path) -> None:
    x, y = _blobs(20)
    _write_csv(project / "data" / "text.csv", x, [str(v) for v in y],
               {"colour": ["red", "blue"] * 10})
    _write_csv(project / "data" / "one.csv", x, ["cat"] * 20)


ERRORS = {
    "missing file": ('{ name = "csv", path = "data/nope.csv" }',
                     ["base.dataset.path", "nope.csv: no such file"]),
    "missing target": ('{ name = "csv", path = "data/text.csv", target = "y" }',
                       ["base.dataset.target", "no column 'y'", "columns: a, b, c, label"]),
    "missing feature": ('{ name = "csv", path = "data/text.csv", features = ["a", "z"] }',
                        ["base.dataset.features", "no column 'z'"]),
    "non-numeric": ('{ name = "csv", path = "data/text.csv" }',
                    ["base.dataset.features", "column 'colour' is not numeric", "'red'"]),
    "one class": ('{ name = "csv", path = "data/one.csv" }',
                  ["base.dataset.target", "only one class ('cat')"]),
    "unsupported extension": ('{ name = "csv", path = "data/a.xlsx" }',
                              ["base.dataset.path", "a.xlsx: unsupported file type '.xlsx'",
                               ".csv"]),
    "npz key": ('{ name = "npz", path = "data/a.npz", y_key = "labels" }',
                ["base.dataset.y_key", "no array 'labels'; arrays: x, y"]),
    "mixed sizes": ('{ name = "image_folder", path = "data/mixed" }',
                    ["base.dataset.size", "images of different sizes", "set size ="]),
    "empty folder": ('{ name = "image_folder", path = "data/empty" }',
                     ["base.dataset.path", "empty folder"]),
    "empty class": ('{ name = "image_folder", path = "data/hollow", size = [4, 4] }',
                    ["base.dataset.path", "empty class folder"]),
    "no path": ('{ name = "csv" }',
                ["base.dataset.path: required option of 'csv' is missing"]),
    "unknown option": ('{ name = "csv", path = "data/text.csv", tagret = "label" }',
                       ["dataset.tagret: unknown option for 'csv'", "did you mean 'target'?"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_user_data_is_one_line_before_anything_runs(places, capsys, case):
    project, elsewhere = places
    _bad_csv(project)
    (project / "data" / "a.xlsx").write_bytes(b"PK")
    x, y = _blobs(20)
    np.savez(project / "data" / "a.npz", x=x, y=y)
    _images(project / "data" / "mixed", n=2, size=(6, 6))
    _images(project / "data" / "mixed" / "big", n=1, size=(9, 9), classes={"x": 99})
    (project / "data" / "empty").mkdir()
    _images(project / "data" / "hollow", n=2)
    (project / "data" / "hollow" / "nothing").mkdir()
    dataset, fragments = ERRORS[case]
    study = _study(project, dataset)
    code, out, err = _run([study, "--out", "out"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err + out, err + out
    assert lines[0].startswith(f"error: {study}: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (elsewhere / "out").exists()


# ---------------------------------------------------------------- the model check


def test_check_model_names_what_a_plugin_ignores(capsys):
    from torch import nn

    @ablab.register_model("ud_plain_net", "ignores the generic options")
    def ud_plain_net(spec, *, width: int = 8) -> nn.Module:
        n_in = int(np.prod(spec.input_shape))
        return nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), nn.ReLU(),
                             nn.Linear(width, spec.num_classes))

    try:
        result = ablab.check_model("ud_plain_net", input_shape=(4,))
        assert result.ignored == ["activation", "dropout", "batch_norm"]
        assert result.status["init"] == "honoured"
        assert "never calls spec.dropout_or(default)" in result.why["dropout"]
        code, out, _ = cli_in_process(["check-model", "ud_plain_net", "--input-shape", "4"],
                                      capsys)
        assert code == 1 and "ignored: activation, dropout, batch_norm" in out
    finally:
        MODELS._entries.pop("ud_plain_net", None)
    assert ablab.check_model("mlp").ok
    code, out, _ = cli_in_process(["check-model", "simple_cnn"], capsys)
    assert code == 0 and "batch_norm: honoured" in out
    code, _, err = cli_in_process(["check-model", "mlpp"], capsys)
    assert code == 2 and "did you mean 'mlp'?" in err


def _idx(path: Path, arr: np.ndarray) -> None:
    """An IDX file (MNIST's format), as torchvision reads it."""
    import struct

    arr = np.asarray(arr, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape))
        f.write(arr.tobytes())


def test_a_torchvision_dataset_already_on_disk(places, capsys):
    project, _ = places
    raw_dir = project / "tv" / "KMNIST" / "raw"
    raw_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        y = np.arange(n) % 2
        _idx(raw_dir / f"{prefix}-images-idx3-ubyte",
             np.where(y[:, None, None] == 1, 200, 30) + rng.integers(0, 20, (n, 6, 6)))
        _idx(raw_dir / f"{prefix}-labels-idx1-ubyte", y)
    study = _study(project, '{ name = "torchvision", dataset = "KMNIST", root = "tv" }')
    cfg = load_study(study).runs[0].config.dataset
    bundle = load_data(cfg, 0)
    assert bundle.sizes()["test"] == 20 and bundle.input_shape == (1, 6, 6)
    assert bundle.class_names[:2] == ["o", "ki"]  # torchvision's KMNIST classes
    assert len(dataset_files(cfg.model_dump(mode="json"))) == 4  # fingerprinted
    for dataset, fragment in (('"KMNST"', "did you mean 'KMNIST'?"),
                              ('"CIFAR10"', "ablab does not download it")):
        bad = _study(project, f'{{ name = "torchvision", dataset = {dataset}, root = "tv" }}',
                     name="bad")
        code, out, err = _run([bad, "--out", "o"], capsys)
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_separate_test_files_are_the_official_test_set(places):
    project, _ = places
    x, y = _blobs(30)
    _write_csv(project / "data" / "train.csv", x, [["cat", "dog"][v] for v in y])
    _write_csv(project / "data" / "test.csv", x[:10], [["cat", "dog"][v] for v in y[:10]])
    raw = load_raw("csv", {"path": str(project / "data" / "train.csv"),
                           "test_path": str(project / "data" / "test.csv")})
    assert raw.has_official_test and raw.x_test.shape == (10, 3)
    assert raw.y_test.tolist() == y[:10].tolist()
    _images(project / "data" / "train_img", n=3)
    _images(project / "data" / "test_img", n=2, classes={"light": 200})
    raw = load_raw("image_folder", {"path": str(project / "data" / "train_img"),
                                    "test_path": str(project / "data" / "test_img")})
    assert raw.class_names == ["dark", "light"] and raw.y_test.tolist() == [1, 1]
    _write_csv(project / "data" / "odd.csv", x[:4], ["cat", "cow", "cat", "dog"])
    with pytest.raises(ablab.data.UserDataError, match=r"classes \['cow'\] are not in"):
        load_raw("csv", {"path": str(project / "data" / "train.csv"),
                         "test_path": str(project / "data" / "odd.csv")})
