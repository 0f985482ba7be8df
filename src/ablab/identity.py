"""What makes two runs the same run, defined once.

A run's identity is its fully resolved config without the settings that only label it,
choose hardware or change how fast it goes (up to float rounding). Run ids, variant ids
(a run's identity without its seed), the grouping of seeds into batched units and the
analysis' "these configs differ" check all read it from here.

    >>> cfg = {"seed": 3, "name": "x", "device": "cpu", "epochs": 2, "precision": "fp32"}
    >>> identity(cfg)
    {'seed': 3, 'epochs': 2}
    >>> identity(cfg, with_seed=False)
    {'epochs': 2}

Works on a ``RunConfig`` (anything with ``resolved()``) or its resolved plain data, so it
sits at the bottom of the layers and imports nothing of ablab.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Top-level settings that label a run (``name``), choose hardware (``device``), what is
#: saved or where code is found (``keep``, ``plugins``), or how fast it goes
#: (``eval_batch_size``, ``memory_format``, ``compile``), how long it may take
#: (``timeout``) or how its results are read (``metric``, the study's declared outcome):
#: not part of what a run means.
NOT_IN_IDENTITY = (
    "name", "device", "eval_batch_size", "keep", "plugins", "memory_format", "compile",
    "timeout", "metric",
)
#: Settings added after run ids were first issued: left out at their default, so existing
#: study directories keep their ids (bf16 and TF32 change the numbers, so they are in the
#: identity).
IN_IDENTITY_UNLESS_DEFAULT: dict[str, Any] = {"precision": "fp32", "tf32": False}
#: Fields inside a table that say where files are, not what is read: a dataset's
#: ``base_dir`` (the study file's folder, which relative data paths start from; the path as
#: written stays in the identity, and the files' content is checked by the data
#: fingerprints), so a project moved to another folder keeps its run ids.
#: Likewise a trainer's ``cwd`` (the ``command`` trainer runs in the study file's folder).
NESTED_NOT_IN_IDENTITY: dict[str, tuple[str, ...]] = {
    "dataset": ("base_dir",), "trainer": ("cwd",),
}
_MISSING = object()


def _plain(config: Any) -> dict[str, Any]:
    if hasattr(config, "resolved"):
        return config.resolved()
    return dict(config)


def identity(config: Any, with_seed: bool = True) -> dict[str, Any]:
    """The part of a resolved config that says what the run computes."""
    data = {
        k: v
        for k, v in _plain(config).items()
        if k not in NOT_IN_IDENTITY and IN_IDENTITY_UNLESS_DEFAULT.get(k, _MISSING) != v
    }
    for table, keys in NESTED_NOT_IN_IDENTITY.items():
        if isinstance(data.get(table), dict) and any(k in data[table] for k in keys):
            data[table] = {k: v for k, v in data[table].items() if k not in keys}
    if not with_seed:
        data.pop("seed", None)
    return data


def identity_key(config: Any, with_seed: bool = True) -> str:
    """The identity as canonical JSON (a dict key)."""
    return json.dumps(identity(config, with_seed), sort_keys=True, separators=(",", ":"))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def run_id(config: Any) -> str:
    """Stable run id: 12 hex digits of the identity's hash."""
    return _digest(identity_key(config))


def variant_id(config: Any) -> str:
    """What a variant is: the identity without the seed, hashed like a run id."""
    return _digest(identity_key(config, with_seed=False))


def outside_identity(path: str) -> bool:
    """True for a dotted config path that never makes two runs different (``seed`` too:
    seeds are replicates of one variant)."""
    top = path.split(".", 1)[0].split("[", 1)[0]
    inner = path.split(".")
    if len(inner) == 2 and inner[1] in NESTED_NOT_IN_IDENTITY.get(top, ()):
        return True
    return top == "seed" or top in NOT_IN_IDENTITY
