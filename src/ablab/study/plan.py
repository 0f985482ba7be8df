"""The plan of a study: its planned runs (:class:`PlannedRun`, each with its id, variant
and seed), the runs grouped by variant, and :class:`Study` itself; the checks other layers
register on every expanded plan, and the hook through which ``Study.run`` reaches the
runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ablab import identity
from ablab.config import RunConfig
from ablab.study.study_config import StudyConfig


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    variant_id: str
    variant: dict[str, Any]  # factor column → value, for tables ("activation": "tanh")
    variant_label: str  # "activation=tanh, dataset=moons"
    seed: int
    config: RunConfig
    #: Its place in a ``variance = "sources"`` design: ``{"of": variant id, "split": i,
    #: "init": j, "order": l}`` (None outside one); see :func:`variance_design`.
    variance_cell: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        prefix = f"{self.variant_label}, " if self.variant_label else ""
        extra = "".join(
            f", {key}={value}"
            for key in ("init_seed", "order_seed")
            if (value := getattr(self.config, key)) is not None
        )
        return f"{prefix}seed={self.seed}{extra}"

    @property
    def in_design_only(self) -> bool:
        """A run of a variance design beside the study's own runs (another init or order
        seed): the verdicts leave it out; the decomposition uses it."""
        cell = self.variance_cell
        return bool(cell and (cell["init"] or cell["order"]))

    def __repr__(self) -> str:  # the config is kilobytes: run.config shows it
        return f"<PlannedRun {self.run_id} {self.label}>"


class Variants(dict):
    """Variant id → its planned runs (one per seed), in plan order. Also indexable by
    position: ``variants[0]`` is the first variant's runs, ``variants[:2]`` the first two
    variants (a ``Variants`` again)."""

    def __getitem__(self, key):
        if isinstance(key, slice):
            return Variants(list(self.items())[key])
        if isinstance(key, int) and not isinstance(key, bool):
            return list(self.values())[key]
        return super().__getitem__(key)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{runs[0].variant_label or 'base'!r}: {len(runs)} runs" for runs in self.values()
        )
        return f"<Variants {len(self)}: {shown}>"


@dataclass
class Study:
    config: StudyConfig
    source: str  # the file it came from (or the built-in name)
    text: str  # the study file exactly as written, for the report
    factors: list[list[str]]  # dotted paths of each factor
    columns: dict[str, str]  # dotted path → column name in tables
    runs: list[PlannedRun] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    #: per factor: "treatment" / "context" as its ``_role`` says (None: the default)
    roles: list[str | None] = field(default_factory=list)
    #: per factor: True when its levels keep the test set (a dataset option its dataset
    #: declares ``keeps_test``), None when ablab decides from the path
    keeps_test: list[bool | None] = field(default_factory=list)
    # True for the evaluation plan of a study with [tune] (each variant at its best
    # setting): only such a plan may be run without tuning first.
    tuned: bool = False

    def __repr__(self) -> str:
        n_variants = len(self.variants())
        return (f"<Study {self.name!r}: {len(self.runs)} runs, {n_variants} variants × "
                f"{len(self.config.seeds)} seeds, from {self.source}>")

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def plugins(self) -> list[str]:
        """The plugin modules every run imports (as resolved: absolute paths or names)."""
        out: list[str] = []
        for run in self.runs:
            out += [p for p in run.config.plugins if p not in out]
        return out

    def variants(self) -> Variants:
        """Variant id → its runs (a variance design's runs under the variant they belong
        to); ``study.variants()[:2]``: the first two variants."""
        out = Variants()
        for run in self.runs:
            key = run.variance_cell["of"] if run.variance_cell else run.variant_id
            out.setdefault(key, []).append(run)
        return out

    def resolved(self) -> dict[str, Any]:
        """Plain data: the study and every run's resolved config."""
        return {
            "name": self.name,
            "description": self.config.description,
            "seeds": self.config.seeds,
            "factors": self.factors,
            "columns": self.columns,
            "overrides": self.overrides,
            "plugins": self.plugins,
            "equivalence_margin": self.config.equivalence_margin,
            **({"metric": self.config.metric.model_dump()} if self.config.metric else {}),
            **({"outcomes": [o if isinstance(o, str) else o.model_dump()
                             for o in self.config.outcomes]}
               if self.config.outcomes is not None else {}),
            **({"roles": self.roles} if any(r is not None for r in self.roles) else {}),
            **({"keeps_test": self.keeps_test}
               if any(k is not None for k in self.keeps_test) else {}),
            "runs": [
                {
                    "run_id": r.run_id,
                    "variant_id": r.variant_id,
                    "variant": r.variant,
                    "variant_label": r.variant_label,
                    "seed": r.seed,
                    "config": r.config.resolved(),
                    **({"variance_cell": r.variance_cell} if r.variance_cell else {}),
                }
                for r in self.runs
            ],
            **({"variance": self.config.variance} if self.config.variance else {}),
        }


#: Checks every expanded study passes (``check(study)`` raises ConfigError), registered by
#: the layers that know more than the config does (``ablab.models`` registers the check
#: that every varied generic model option is read by the model's builder).
_plan_checks: list[Callable[[Study], None]] = []


def add_plan_check(check: Callable[[Study], None]) -> None:
    """Register a check run on every expanded study (once per function)."""
    if check not in _plan_checks:
        _plan_checks.append(check)


def variant_id(cfg: RunConfig) -> str:
    """What a variant is: the run's identity with the seed left out."""
    return identity.variant_id(cfg)


def run_plan_checks(study: Study) -> None:
    """Run every registered plan check on an expanded study (each raises ConfigError)."""
    for check in _plan_checks:
        check(study)
