"""Outcomes beyond accuracy on studies that train: a plugin dataset option that keeps the
test set is judged, a batch-size study gets a cost verdict, the report leads with its
answers, and the built-in moons/circles study gets verdicts on its diagnostics, on cost and
pooled across the datasets (issue #32)."""

from __future__ import annotations

import re

import pytest

from ablab.analysis import analyze
from ablab.runner import run_study
from ablab.store import StudyStore
from ablab.study import load_study

SHUFFLE_PLUGIN = '''
import numpy as np
import ablab
from ablab.data import RawData


@ablab.register_dataset("outcomes_toy", "two blobs in 6 features; shuffle permutes them",
                        shape=(6,), keeps_test=("shuffle",), files=())
def outcomes_toy(*, shuffle: bool = False, n: int = 240) -> RawData:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 0] += 1.5 * y  # the signal sits in the first feature
    x[:, 1] -= 1.0 * y
    if shuffle:  # one fixed permutation of the features, train and test alike
        x = x[:, [3, 5, 0, 4, 1, 2]]
    return RawData(x, y.astype(np.int64), ["a", "b"], "standard")
'''

SHUFFLE_STUDY = """
name = "shuffle-option"
seeds = [0, 1, 2]
plugins = ["outcomes_toy_data.py"]
[base]
epochs = 3
device = "cpu"
batch_size = 32
dataset = { name = "outcomes_toy" }
model = { name = "mlp", hidden = [8] }
optimizer = { name = "adam", lr = 0.01 }
[[vary]]
"dataset.shuffle" = [false, true]
[[vary]]
"model.hidden" = [[8], [16]]
"""


@pytest.mark.slow
def test_a_dataset_option_that_keeps_the_test_set_is_judged_per_model(tmp_path):
    (tmp_path / "outcomes_toy_data.py").write_text(SHUFFLE_PLUGIN)
    path, out = tmp_path / "s.toml", tmp_path / "out"
    path.write_text(SHUFFLE_STUDY)
    study = load_study(path, allow_plugins=True)
    assert study.resolved()["keeps_test"] == [True, None]
    run_study(study, out, workers=1, threads=1, report=False)
    a = analyze(StudyStore.existing(out))
    primary = a.comparisons_on("test_accuracy")
    shuffle = [(c, v) for c, v in zip(primary, a.verdicts, strict=True)
               if c.factor == "shuffle"]
    assert sorted(c.stratum for c, _ in shuffle) == ["hidden=[16]", "hidden=[8]"]
    assert all(c.paired for c, _ in shuffle)  # the same test samples: paired by seed
    assert all(re.match(r"On hidden=\[(8|16)\], shuffle=", v) for _, v in shuffle)


def test_roles_decide_what_is_judged():
    from ablab.analysis import build_factors

    rows = [{"variant": {"shuffle": "False", "noise": "0.1"}}]
    base = {"factors": [["dataset.shuffle"], ["dataset.noise"]],
            "columns": {"dataset.shuffle": "shuffle", "dataset.noise": "noise"}}
    shuffle, noise = build_factors(base, rows)
    assert shuffle.is_context and noise.is_context  # ablab's default: other test data
    shuffle, noise = build_factors({**base, "keeps_test": [True, None]}, rows)
    assert not shuffle.is_context and not shuffle.on_different_data
    shuffle, noise = build_factors(
        {**base, "keeps_test": [True, None], "roles": ["context", "treatment"]}, rows)
    assert shuffle.is_context and not noise.is_context and noise.on_different_data


BATCH_STUDY = """
name = "batch-cost"
seeds = [0, 1, 2]
[base]
epochs = 3
device = "cpu"
dataset = { name = "moons", n_samples = 300 }
model = { name = "mlp", hidden = [8] }
[[vary]]
batch_size = [16, "full"]
"""


@pytest.mark.slow
def test_a_batch_size_study_gets_a_cost_verdict_beside_the_accuracy_one(tmp_path):
    path, out = tmp_path / "b.toml", tmp_path / "out"
    path.write_text(BATCH_STUDY)
    run_study(load_study(path), out, workers=1, threads=1, report=True)
    a = analyze(StudyStore.existing(out))
    assert [o.name for o in a.outcomes.others] == ["test_cross_entropy", "seconds"]
    (acc,) = a.comparisons_on("test_accuracy")
    (cost,) = a.comparisons_on("seconds")
    assert cost.spec.family == "cost" and cost.result.n_a == 3
    (section,) = [s for n, _, _, s in a.outcome_verdicts if n == "seconds"]
    assert re.match(r"batch_size=(16|full) (beats|vs|and) batch_size=", section[0])
    assert "time per run" in section[0]
    html = (out / "report.html").read_text()
    assert "Time per run" in html and html.index('id="verdicts"') < html.index('id="outcomes"')
    # every interval on seconds is a difference of seconds; the means' intervals are > 0
    low = a.summary["seconds_ci_low"].dropna()
    assert (low > 0).all()


def _first_screen_order(html: str) -> list[int]:
    """Where the headline, the verdict table, the first decided verdict, the undecided ones
    and the study's description stand in the page."""
    marks = ['class="headline"', 'class="verdict-table"', '<ul class="verdicts decided">',
             "<h3>Undecided</h3>", 'id="about"']
    return [html.index(m) for m in marks if m in html]


@pytest.mark.slow
def test_moons_circles_at_5_seeds_judges_diagnostics_cost_and_pools(tmp_path):
    """The built-in study at 5 seeds (40 epochs: minutes, not the hour of 300): verdicts on
    the zero-activation fraction (relu vs leaky_relu per dataset; sigmoid not applicable),
    on time per run, pooled across moons and circles with I²; the source's dead-ReLU claims
    judged by the same verdicts; the report's first screen leads with its answers."""
    out = tmp_path / "moons"
    study = load_study("moons-circles-activations", seeds=5, sets=["epochs=40"])
    run_study(study, out, workers=2, threads=1, report=True)
    a = analyze(StudyStore.existing(out))
    names = [n for n, *_ in a.outcome_verdicts]
    assert names[:2] == ["zero_activation_fraction_mean", "dead_unit_fraction"]
    assert "seconds" in names
    zero = a.comparisons_on("zero_activation_fraction_mean")
    assert {c.stratum for c in zero} == {"dataset=moons", "dataset=circles"}
    applicable = [c for c in zero if c.outcome != "not applicable"]
    assert {(c.level_a, c.level_b) for c in applicable} == {("relu", "leaky_relu")}
    assert all(c.not_applicable == ["sigmoid"] for c in zero if c not in applicable)
    for c in applicable:  # fractions: differences inside [-1, 1]
        assert -1 <= c.decision_low <= c.decision_high <= 1
    pooled = [s for s in a.pooled_sentences if "zero-activation fraction (mean" in s]
    assert pooled and re.search(r"I² = \d+ %", pooled[0])
    assert pooled[0].startswith("Across dataset=moons and dataset=circles, activation=")
    acc_pooled = [p for p in a.pooled if p.metric == "test_accuracy"]
    assert len(acc_pooled) == 3 and all(0 <= p.i2 <= 1 for p in acc_pooled)
    html = (out / "report.html").read_text()
    order = _first_screen_order(html)
    assert len(order) >= 4 and order == sorted(order)
    claims = re.findall(r"The source&#39;s “LeakyReLU has fewer dead activations[^<]*", html)
    assert len(claims) == 2
    assert all("by the study&#39;s own verdict" in c and "zero-activation fraction" in c
               for c in claims)
    headline = re.search(r'<p class="headline">([^<]*)</p>', html).group(1)
    assert re.fullmatch(r"\d+ decided, \d+ undecided(, \d+ interactions?)? "
                        r"\(on test accuracy\)", headline)
