"""``variance = "sources"``: the nested design (data split → initialisation → training order)
that separates the three sources of seed-to-seed noise, added to a study's runs."""

from __future__ import annotations

import dataclasses
import itertools

from ablab.config import RunConfig, run_id
from ablab.errors import ConfigError
from ablab.study.plan import PlannedRun, Study, variant_id

#: Stride between the seeds a variance design derives from a study seed ``s``: the j-th
#: initialisation under split ``s`` has ``init_seed = s + j * DESIGN_SEED_STRIDE`` and the
#: l-th order of it ``order_seed = s + (j * k + l) * DESIGN_SEED_STRIDE`` (k levels); j = l = 0
#: is the study's own run of seed ``s`` (every seed at its default).
DESIGN_SEED_STRIDE = 100_003


def variance_design(study: Study, source: str) -> list[PlannedRun]:
    """The study's runs plus, for each variant, the nested design that separates the three
    sources of seed-to-seed noise (``variance = "sources"``): with the study's k seeds as
    k data splits, k initialisations inside each split and k training orders inside each
    initialisation, k³ runs per variant (k² − 1 new ones per seed). Every initialisation
    and order seed is distinct, so each level is a fresh draw of its source, as the
    nested random-effects model assumes (:mod:`ablab.analysis.variance`). The study's
    own runs are the cells (split, 0, 0); the new ones come after all of them, so the
    verdicts' runs train first."""
    cfg = study.config
    taken = [
        f"{where}{key}"
        for where, data in [("base.", cfg.base)] + [(f"vary[{i}].", f) for i, f in
                                                      enumerate(cfg.vary)]
        for key in data
        if key in ("init_seed", "order_seed", "split_seed", "dataset.split_seed")
        or (key == "dataset" and isinstance(data[key], dict) and "split_seed" in data[key])
    ]
    if taken:
        raise ConfigError(
            f'{source}: {taken[0]}: variance = "sources" draws the split, init and order '
            "seeds itself; remove it, or leave variance out to fix or vary it"
        )
    if cfg.tune is not None:
        raise ConfigError(
            f'{source}: variance: "sources" and [tune] cannot be combined; run the '
            "decomposition on the tuned settings written into [base]"
        )
    k = len(cfg.seeds)
    plain, extra = [], []
    for run in study.runs:
        split = cfg.seeds.index(run.seed)
        cell = {"of": run.variant_id, "split": split, "init": 0, "order": 0}
        plain.append(dataclasses.replace(run, variance_cell=cell))
        for j, order in itertools.product(range(k), range(k)):
            if j == order == 0:
                continue
            data = run.config.resolved()
            if j:
                data["init_seed"] = run.seed + j * DESIGN_SEED_STRIDE
            data["order_seed"] = run.seed + (j * k + order) * DESIGN_SEED_STRIDE
            run_cfg = RunConfig.model_validate(data)
            extra.append(PlannedRun(
                run_id(run_cfg), variant_id(run_cfg), run.variant, run.variant_label,
                run.seed, run_cfg, {**cell, "init": j, "order": order},
            ))
    return plain + extra
