"""Study files: a base recipe, the factors that vary, and the seeds — expanded into runs.

Part of the config stage: it validates and expands, and trains nothing::

    name = "moons-activations"
    seeds = [0, 1, 2]
    [base]
    epochs = 300
    dataset = { name = "moons" }
    model = { name = "mlp", hidden = [256, 128] }
    [[vary]]                                 # each [[vary]] is one factor; factors multiply
    "model.activation" = ["relu", "tanh"]
    [[vary]]                                 # keys inside one factor move together (zip)
    "dataset.name" = ["moons", "circles"]
    "dataset.noise" = [0.3, 0.2]

Each run gets a stable id (a hash of its identity, see :mod:`ablab.identity`: the fully
resolved config without what only labels it or sets its speed, so editing an unrelated
factor leaves other runs' ids alone) and a label naming only what varies:
``activation=tanh, dataset=moons, seed=3``.

The package, from the top down (each module imports only from those below it; the
import-linter contract "study: ..." in pyproject.toml holds it):

- ``loading``: a study file or built-in name → :class:`Study` (plugins, ``--seeds``, ``--set``)
- ``expansion``: factors × seeds → validated planned runs with ids and labels
- ``variance_plan`` (``variance = "sources"``) | ``tune_checks`` (``[tune]`` against the plan)
- ``plan``: :class:`PlannedRun`, :class:`Study`, the plan checks other layers register
- ``study_config``: the file's top level as pydantic validates it (:class:`StudyConfig`)
- ``tune_config``: the ``[tune]`` table and its distributions
- ``labels``: column names and values shown as text
"""

from ablab.study.expansion import expand
from ablab.study.labels import column_names, format_value
from ablab.study.loading import BUILTIN_DIR, builtin_studies, load_study, resolve_study_path
from ablab.study.plan import (
    PlannedRun,
    Study,
    Variants,
    add_plan_check,
    variant_id,
)
from ablab.study.study_config import StudyConfig
from ablab.study.tune_checks import check_tune
from ablab.study.tune_config import (
    TUNE_METRICS,
    TUNE_PRUNERS,
    TUNE_SAMPLERS,
    Distribution,
    TuneConfig,
    parse_distribution,
)
from ablab.study.variance_plan import DESIGN_SEED_STRIDE, variance_design

__all__ = [
    "BUILTIN_DIR",
    "DESIGN_SEED_STRIDE",
    "TUNE_METRICS",
    "TUNE_PRUNERS",
    "TUNE_SAMPLERS",
    "Distribution",
    "PlannedRun",
    "Study",
    "StudyConfig",
    "TuneConfig",
    "Variants",
    "add_plan_check",
    "builtin_studies",
    "check_tune",
    "column_names",
    "expand",
    "format_value",
    "load_study",
    "parse_distribution",
    "resolve_study_path",
    "variance_design",
    "variant_id",
]
