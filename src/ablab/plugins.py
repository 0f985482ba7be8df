"""Extending ablab without forking: register your own components from your own code.

A component is one decorated function, exactly like the built-in ones; its keyword-only
parameters are the options a study file may give it (validated, unknown ones refused)::

    # my_models.py
    import ablab
    from torch import nn

    @ablab.register_model("tiny_net", "One hidden layer")
    def tiny_net(spec, *, width: int = 32) -> nn.Module:
        n_in = 1
        for d in spec.input_shape:
            n_in *= d
        return nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), spec.act(),
                             nn.Linear(width, spec.num_classes))

A study (or run) file names the modules that register its components, so ``ablab run``
and every worker process import them before validating a run::

    plugins = ["my_models"]          # an importable module, or a file: "lib/my_models.py"

A name that is not importable but sits next to the study file (``my_models.py``) is
found there. File paths are relative to the study file and are stored absolute in the
resolved config (``RunConfig.plugins``), which is what reaches worker processes.

Consent: a plugin is code, so a study or run file naming one is a program. Plugins are
imported only when loading a file with consent (``--allow-plugins`` on the command line,
``allow_plugins=True`` in Python, or ``ABLAB_ALLOW_PLUGINS=1`` in the environment, for
notebooks and workers); without it loading stops with one line naming the plugin and the
flag. This holds for installed modules too: a module name in a study file chooses which
installed code runs at import (anything on ``sys.path``, including a file beside the study
that shadows a name), so only modules this process has already imported need no consent.
Validating a config never imports: a config naming a plugin that is not loaded is refused
with a clear error. Worker processes import exactly the plugins of the tasks their parent
sends them, after the parent loaded (and so consented to) them.

This module sits at the left end of the pipeline, beside the registries.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ablab.errors import UserError
from ablab.registry import (
    ACTIVATIONS,
    DATASETS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    PROBES,
    SCHEDULES,
    TRAINERS,
    Registry,
)

__all__ = [
    "CONSENT_ENV",
    "PluginConsentError",
    "PluginError",
    "consent_from_env",
    "import_plugins",
    "is_loaded",
    "plugins_used",
    "register_activation",
    "register_dataset",
    "register_loss",
    "register_model",
    "register_optimizer",
    "register_probe",
    "register_schedule",
    "register_trainer",
    "resolve_plugins",
]

#: Set on a module imported from a file path: the path, which other processes can import.
PLUGIN_ATTR = "__ablab_plugin__"


#: The environment variable that gives consent to import plugins (notebooks, workers).
CONSENT_ENV = "ABLAB_ALLOW_PLUGINS"


class PluginError(UserError):
    """A plugin module named by a study or run file cannot be imported."""


class PluginConsentError(PluginError):
    """A plugin would be imported (run) without the user's consent."""


def consent_from_env() -> bool:
    """Whether ``ABLAB_ALLOW_PLUGINS`` gives consent (1, true, yes, on)."""
    value = __import__("os").environ.get(CONSENT_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


_IMPORTED: set[str] = set()  # specs imported by this process (configs are validated often)


# ---------------------------------------------------------------- registering


def _origin(fn: Callable[..., Any]) -> tuple[str, str]:
    code = getattr(fn, "__code__", None)
    return getattr(fn, "__qualname__", ""), getattr(code, "co_filename", "")


def _plugin_spec(fn: Callable[..., Any]) -> str | None:
    """How another process imports the module that defines ``fn``: its name, or the file
    path it was imported from; None for ``__main__`` (a script or a notebook)."""
    module_name = getattr(fn, "__module__", None)
    if not module_name or module_name in ("__main__", "__mp_main__"):
        return None
    module = sys.modules.get(module_name)
    return getattr(module, PLUGIN_ATTR, None) or module_name


def _register(registry: Registry, name: str, summary: str, meta: dict[str, Any]):
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in registry:
            old = registry.get(name).fn
            # The same function defined again (a notebook cell run twice, a module imported
            # by name and by path), or a notebook cell edited and run again, replaces the
            # entry; a different one is refused.
            same = _origin(old) == _origin(fn) and getattr(old, "__module__", None) is not None
            # An edited notebook cell run again: both from __main__, a new cell file name.
            redefined = {getattr(old, "__module__", None), getattr(fn, "__module__", None)} <= {
                "__main__"
            }
            if same or redefined:
                registry._entries.pop(name)  # noqa: SLF001 - same package
        spec = _plugin_spec(fn)
        if spec is not None:
            meta.setdefault("plugin", spec)
        return registry.register(name, summary, **meta)(fn)

    return decorator


def register_model(name: str, summary: str = "", **meta: Any):
    """Register an architecture: ``fn(spec: ModelSpec, *, options...) -> nn.Module``.

    ``spec`` carries ``input_shape``, ``num_classes``, ``act()`` (a new activation module
    of the study's choice), ``dropout_or(d)`` and ``batch_norm_or(b)``. ``min_hw=N`` in
    ``meta`` declares that the model needs images of at least N×N. Optional, so that a
    study's plan need not build the model to know them: ``honours=`` the generic options
    the builder reads (a tuple, or a function of its resolved options), ``defaults=`` its
    own value of each, ``flops=`` a function ``(options, input_shape, num_classes)`` giving
    its forward FLOPs per example (``ablab.models.check_model`` compares ``honours``).

    >>> @register_model("doc_linear")
    ... def doc_linear(spec, *, bias: bool = True):
    ...     from torch import nn
    ...     return nn.Sequential(nn.Flatten(), nn.LazyLinear(spec.num_classes, bias=bias))
    """
    return _register(MODELS, name, summary, meta)


def register_dataset(name: str, summary: str = "", **meta: Any):
    """Register a dataset: ``fn(*, options...) -> ablab.data.RawData`` (or the loader the
    built-ins use). Give ``shape=(C, H, W)`` or ``(F,)`` in ``meta`` so configs are
    checked against models before any training, and ``official_test=True`` when the
    function returns an official test split."""
    return _register(DATASETS, name, summary, meta)


def register_activation(name: str, summary: str = "", **meta: Any):
    """Register an activation: ``fn(*, options...) -> nn.Module``."""
    return _register(ACTIVATIONS, name, summary, meta)


def register_probe(name: str, summary: str = "", **meta: Any):
    """Register a probe: ``fn(ctx: ProbeContext, *, options...)`` returning an object
    with the probe protocol of :mod:`ablab.probes.base`."""
    return _register(PROBES, name, summary, meta)


def register_loss(name: str, summary: str = "", **meta: Any):
    """Register a loss (same signature as the built-ins in :mod:`ablab.train.losses`)."""
    return _register(LOSSES, name, summary, meta)


def register_optimizer(name: str, summary: str = "", **meta: Any):
    """Register an optimizer (as in :mod:`ablab.train.optimizers`)."""
    return _register(OPTIMIZERS, name, summary, meta)


def register_schedule(name: str, summary: str = "", **meta: Any):
    """Register a learning-rate schedule (as in :mod:`ablab.train.schedules`)."""
    return _register(SCHEDULES, name, summary, meta)


def register_trainer(name: str, summary: str = "", **meta: Any):
    """Register a trainer: ``fn(run: ablab.train.trainers.Run, *, options...) -> dict``.

    The function trains one run its own way and returns its final metrics (numbers by
    name); ``run`` carries the seeds, device, thread budget, an artefacts folder,
    ``run.data("train" | "val" | "test")`` (the study's dataset as ablab splits it) and
    ``run.log(step, **metrics)`` for curves. Keyword-only parameters are its options, set
    and varied in a study as ``trainer.NAME``.

    >>> @register_trainer("doc_constant")
    ... def doc_constant(run, *, value: float = 0.5) -> dict:
    ...     return {"score": value}
    """
    return _register(TRAINERS, name, summary, meta)


def plugins_used(components: Iterable[tuple[Registry, str]]) -> list[str]:
    """The plugin modules that registered these ``(registry, name)`` components, so a
    config that names a component registered by user code (imported in a notebook, say)
    records where it comes from and worker processes can import it too."""
    out: list[str] = []
    for registry, name in components:
        if name in registry:
            spec = registry.get(name).meta.get("plugin")
            if spec and spec not in out:
                out.append(spec)
    return out


# ---------------------------------------------------------------- importing


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def resolve_plugins(specs: Iterable[Any], base_dir: str | Path | None = None) -> list[Any]:
    """Plugin specs as another process can import them: file paths made absolute
    (relative to ``base_dir``, the study file's folder), and a module name that is not
    importable but sits in ``base_dir`` (``NAME.py`` or ``NAME/__init__.py``) turned into
    that file's path. Anything that is not a string is left for validation to refuse."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    out: list[Any] = []
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            out.append(spec)
            continue
        spec = spec.strip()
        if _is_path(spec):
            try:
                path = Path(spec).expanduser()
                out.append(str((path if path.is_absolute() else base / path).resolve()))
            except (RuntimeError, OSError, ValueError):  # "~nobody/x.py", a NUL byte
                out.append(spec)  # import_plugins says, in one line, it is no such file
            continue
        if spec in sys.modules or _findable(spec):
            out.append(spec)
            continue
        rel = spec.replace(".", "/")
        local = [base / f"{rel}.py", base / rel / "__init__.py"]
        found = next((p for p in local if p.is_file()), None)
        out.append(str(found.resolve()) if found else spec)
    return out


def _findable(name: str) -> bool:
    """Whether ``name``'s top-level package is importable, found without importing
    anything (``find_spec("a.b")`` would run ``a/__init__.py``)."""
    top = name.split(".")[0]
    if not top.isidentifier():
        return False
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _import_file(path: Path) -> None:
    path = path.resolve()
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and _same_file(module.__file__, path):
            return  # already imported (by name or by path)
    if not path.is_file():
        raise PluginError(f"plugins: {str(path)!r}: no such file")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    stem = path.parent.name if path.name == "__init__.py" else path.stem
    name = f"ablab_plugin_{''.join(c if c.isalnum() else '_' for c in stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugins: {str(path)!r}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    setattr(module, PLUGIN_ATTR, str(path))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _same_file(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b
    except OSError:
        return False


def is_loaded(spec: Any) -> bool:
    """Whether the plugin ``spec`` (a module name or a ``.py`` path) is imported in this
    process (by ablab, or by the user's own code)."""
    if not isinstance(spec, str) or not spec.strip():
        return True  # not a plugin spec: validation refuses it on its own
    spec = spec.strip()
    if not _is_path(spec):
        return spec in sys.modules
    try:
        path = Path(spec).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # "~nobody/…", a NUL byte
        return False
    return any(
        getattr(m, "__file__", None) and _same_file(m.__file__, path)
        for m in list(sys.modules.values())
    )


def _consent_line(spec: str) -> str:
    return (
        f"plugins: {spec!r} is code and is imported only with consent; pass "
        f"--allow-plugins (or set {CONSENT_ENV}=1, or allow_plugins=True in Python) "
        "if you trust it"
    )


def import_plugins(specs: Iterable[Any], allow: bool | None = None) -> None:
    """Import each plugin module (a module name or a ``.py`` path); already imported ones
    are skipped. ``allow``: consent to run plugin code (None: ``ABLAB_ALLOW_PLUGINS``);
    without it a plugin not yet imported raises :class:`PluginConsentError`. Raises
    :class:`PluginError` with one line naming the module."""
    specs = [s.strip() for s in specs if isinstance(s, str) and s.strip()]
    todo = [s for s in specs if not is_loaded(s)]
    if not todo:
        _IMPORTED.update(specs)
        return
    if not (consent_from_env() if allow is None else allow):
        raise PluginConsentError(_consent_line(todo[0]))
    for spec in specs:
        if spec in _IMPORTED and is_loaded(spec):
            continue
        try:
            if _is_path(spec):
                _import_file(Path(spec))
            elif spec not in sys.modules:
                importlib.import_module(spec)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of user code: one line
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise PluginError(
                f"plugins: cannot import {spec!r} ({type(exc).__name__}: {detail})"
            ) from None
        _IMPORTED.add(spec)


def require_consent_to_run(configs: Iterable[Any], allow: bool | None = None) -> None:
    """A trainer that runs a program (registry meta ``runs_program``: the ``command``
    trainer) makes a study or run file a program as much as a plugin does: it is refused
    without consent (``allow``; None: ``ABLAB_ALLOW_PLUGINS``), with one line naming the
    program. ``configs``: validated run configs."""
    if consent_from_env() if allow is None else allow:
        return
    for cfg in configs:
        entry = TRAINERS.get(cfg.trainer.name)
        if entry.meta.get("runs_program"):
            program = str((cfg.trainer.options.get("argv") or ["?"])[0])
            program = program.replace("{python}", sys.executable)
            raise PluginConsentError(
                f"trainer {entry.name!r} runs {program!r}, a program, only with consent; pass "
                f"--allow-plugins (or set {CONSENT_ENV}=1, or allow_plugins=True in Python) "
                "if you trust it"
            )


def unloaded_plugins(specs: Iterable[Any]) -> list[str]:
    """The plugin specs among ``specs`` that this process has not imported."""
    return [s for s in specs if not is_loaded(s)]
