"""What a study file or run file may say, from the same source validation uses.

The pydantic models of :mod:`ablab.config` / :mod:`ablab.study` give the fields every
entry shares (``dropout`` for every model, ``subset`` for every dataset, ...); the
registries give each entry's own options. This module puts the two together twice:

- :func:`catalogue` / :func:`entry_fields`: rows (field, allowed values, default) for
  ``ablab list``;
- :func:`study_schema` / :func:`run_schema`: a JSON Schema of a study file / run file, for
  ``ablab schema`` and for editors (taplo / Even Better TOML read a ``#:schema`` line).

Nothing here is written by hand per field: a new field or option shows up in both.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ablab.config import (
    BUILTIN_NEEDS,
    BUILTIN_TRAINER,
    ActivationConfig,
    Component,
    DatasetConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    ProbeConfig,
    RunConfig,
    ScheduleConfig,
    TrainerConfig,
)
from ablab.registry import Entry, Registry
from ablab.study import StudyConfig

#: Catalogue name (``ablab list NAME``) → the component class its entries are validated by.
COMPONENTS: dict[str, type[Component]] = {
    "models": ModelConfig,
    "datasets": DatasetConfig,
    "activations": ActivationConfig,
    "losses": LossConfig,
    "optimizers": OptimizerConfig,
    "schedules": ScheduleConfig,
    "probes": ProbeConfig,
    "trainers": TrainerConfig,
}

#: Catalogues of plain fields (no registry): the top level of a run file and a study file.
FIELD_TABLES: dict[str, type[BaseModel]] = {"run": RunConfig, "study": StudyConfig}


def registry_of(catalogue: str) -> Registry:
    return COMPONENTS[catalogue].registry


def catalogue_of(reg: Registry) -> str:
    return next(name for name, cls in COMPONENTS.items() if cls.registry is reg)


# ---------------------------------------------------------------- describing a field


def toml_value(value: Any) -> str:
    """A default as a study file writes it: ``true``, ``"max"``, ``[256, 128]``."""
    if isinstance(value, Component):
        return json.dumps(value.name)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _bounds(prop: dict[str, Any]) -> str:
    parts = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"),
                      ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in prop and abs(prop[key]) < 2**53:  # a seed's 2**63 says nothing useful
            parts.append(f"{sign} {prop[key]:g}" if isinstance(prop[key], float)
                         else f"{sign} {prop[key]}")
    return " " + ", ".join(parts) if parts else ""


def describe(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A JSON Schema property as a short phrase: ``number >= 0, < 1 | unset``."""
    if "x-allowed" in prop:
        return prop["x-allowed"]
    if "$ref" in prop:
        target = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        return describe(target, defs)
    if "x-ablab-registry" in prop:
        kind = prop["x-ablab-registry"]
        what = registry_of(kind).kind
        article = "an" if what[0] in "aeiou" else "a"
        return f"{article} {what} (see ablab list {kind})"
    if "anyOf" in prop or "oneOf" in prop:
        options = [describe(p, defs) for p in prop.get("anyOf") or prop.get("oneOf")]
        return " | ".join(dict.fromkeys(options))
    if "enum" in prop:
        return " | ".join(toml_value(v) for v in prop["enum"])
    if "const" in prop:
        return toml_value(prop["const"])
    kind = prop.get("type")
    if kind == "null":
        return "unset"
    if kind == "boolean":
        return "true | false"
    if kind in ("integer", "number"):
        return kind + _bounds(prop)
    if kind == "array":
        inner = describe(prop.get("items", {}), defs) if prop.get("items") else "values"
        return f"list of {inner}"
    if kind == "object":
        fields = list(prop.get("properties", {}))
        return f"table ({', '.join(fields)})" if fields else "table"
    return kind or "any value"


@dataclass(frozen=True)
class FieldRow:
    """One line of ``ablab list``: a field, what it accepts, its default."""

    name: str
    allowed: str
    default: str  # "" when required
    generic: bool = False  # shared by every entry of the registry


def _component_annotation(field_info: Any) -> str | None:
    """The catalogue a field's annotation is a component of (``model`` → "models")."""
    ann = field_info.annotation
    for candidate in (ann, *getattr(ann, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, Component):
            return catalogue_of(candidate.registry)
        for inner in getattr(candidate, "__args__", ()):  # list[ProbeConfig]
            if isinstance(inner, type) and issubclass(inner, Component):
                return catalogue_of(inner.registry)
    return None


def model_rows(model: type[BaseModel], skip: tuple[str, ...] = ("name",),
               generic: bool = False) -> list[FieldRow]:
    """Rows for the declared fields of a pydantic model (defaults from the model itself,
    allowed values from its JSON Schema)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    rows = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        prop = schema.get("properties", {}).get(name, {})
        component = _component_annotation(info)
        if component is not None:
            allowed = describe({"x-ablab-registry": component}, defs)
            if info.annotation is not None and "list" in str(info.annotation):
                allowed = "list of " + allowed.split(" ", 1)[1].replace(" (", "s (", 1)
        else:
            allowed = describe(prop, defs)
        default = "" if info.is_required() else toml_value(
            info.get_default(call_default_factory=True)
        )
        rows.append(FieldRow(name, allowed, default, generic))
    return rows


def entry_fields(catalogue: str, entry: Entry) -> list[FieldRow]:
    """Every field ``entry`` accepts: its own options, then the fields every entry of its
    registry takes, with this entry's defaults (a model's own dropout / batch norm)."""
    own = model_rows(entry.options)
    generic = model_rows(COMPONENTS[catalogue], generic=True)
    if catalogue == "models":
        from ablab.models.plan_check import architecture_defaults

        arch = architecture_defaults(entry)
        generic = [
            FieldRow(r.name, r.allowed, f"{toml_value(arch[r.name])} ({entry.name}'s own)", True)
            if r.name in arch else r
            for r in generic
        ]
    return own + generic


def catalogue() -> dict[str, list[Entry]]:
    """Every registry's entries by catalogue name (plugins included once loaded)."""
    return {name: list(cls.registry) for name, cls in COMPONENTS.items()}


# ---------------------------------------------------------------- JSON Schema


def _entry_schema(
    catalogue_name: str, entry: Entry
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One entry's table and the definitions it refers to."""
    cls = COMPONENTS[catalogue_name]
    own = entry.options.model_json_schema()
    generic = cls.model_json_schema()
    props = {"name": {"const": entry.name}}
    props.update(own.get("properties", {}))
    props.update({k: v for k, v in generic.get("properties", {}).items() if k != "name"})
    out = {
        "type": "object",
        "title": entry.name,
        "properties": props,
        "required": ["name"],
        "additionalProperties": False,
    }
    if entry.summary:
        out["description"] = entry.summary
    return out, {**own.get("$defs", {}), **generic.get("$defs", {})}


def _component_schema(catalogue_name: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A component field: a name (shorthand) or a table naming one entry with its
    options. Entries whose tables are alike are told apart by ``name``'s const."""
    reg = registry_of(catalogue_name)
    branches: list[dict[str, Any]] = [{"type": "string", "enum": reg.names()}]
    for entry in reg:
        schema, extra_defs = _entry_schema(catalogue_name, entry)
        defs.update(extra_defs)
        branches.append(schema)
    return {"anyOf": branches, "description": f"a {reg.kind}: see `ablab list {catalogue_name}`"}


def _with_components(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace pydantic's open ``ModelConfig``-style definitions by the registries'
    entries (names as enums, each entry's options)."""
    defs = schema.setdefault("$defs", {})
    for name, cls in COMPONENTS.items():
        if cls.__name__ in defs:
            defs[cls.__name__] = _component_schema(name, defs)
    return schema


def run_schema() -> dict[str, Any]:
    """JSON Schema of a run file (``ablab train``)."""
    schema = _with_components(RunConfig.model_json_schema())
    schema["title"] = "ablab run file"
    # the built-in trainer (no ``trainer``, or "builtin") needs epochs, dataset and model
    builtin = {"anyOf": [{"const": BUILTIN_TRAINER},
                         {"type": "object", "properties": {"name": {"const": BUILTIN_TRAINER}}}]}
    schema["if"] = {"anyOf": [{"not": {"required": ["trainer"]}},
                              {"properties": {"trainer": builtin}}]}
    schema["then"] = {"required": list(BUILTIN_NEEDS)}
    return schema


def study_schema() -> dict[str, Any]:
    """JSON Schema of a study file: the top level, and ``[base]`` as a run file without
    ``seed`` (the study's ``seeds``) and without required fields (a factor may set them)."""
    schema = StudyConfig.model_json_schema()
    run = run_schema()
    defs = schema.setdefault("$defs", {})
    defs.update(run.pop("$defs", {}))
    base = copy.deepcopy(run)
    base.pop("required", None)
    for key in ("title", "if", "then"):
        base.pop(key, None)
    base["properties"].pop("seed", None)
    base["description"] = "The recipe every run starts from: any run-file field but seed."
    schema["properties"]["base"] = base
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ablab study file"
    return schema
