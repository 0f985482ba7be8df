"""Run records on disk: what a whole one looks like, and where damaged ones go.

A record (``DIR/runs/ID.json``) is the only copy of a finished run's results; the index
is derived from the records and the study file. Every read checks the record; one that
does not parse or is not about its own run is moved to ``DIR/runs/quarantine/`` so the
run is trained again instead of crashing every command that reads the study.

On disk a record is compact JSON whose numeric arrays are packed (:func:`pack_record`):
a list of numbers (or a rectangular nested list) becomes ``{"__array__": dtype, "shape":
[...], "data": base64}`` — float32 where every value is exactly a float32 (what torch
gives), else float64; integers in the narrowest type that holds them — and a list of
same-keyed dicts (the epoch history) becomes columns. :func:`read_record` unpacks, so
every reader sees the same lists of Python floats and ints as before, bit for bit;
records written before (plain lists) read as they are.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

#: The fields every record has, with their JSON types (``RunResult.to_dict``).
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "run_id": str,
    "config": dict,
    "status": str,
    "history": list,
    "final": dict,
    "sizes": dict,
}
RECORD_STATUSES = ("done", "diverged")
QUARANTINE = "quarantine"


#: Arrays shorter than this stay JSON lists (packing them saves nothing).
PACK_MIN = 8
ARRAY, TABLE = "__array__", "__table__"


def _leaf_types(value: list) -> set[type]:
    """The types of the leaves of a nested list (``list`` itself where lists and leaves
    are mixed at one level: never a packable array). One ``set(map(type, ...))`` per
    list, not a Python step per number."""
    kinds = set(map(type, value))
    if list not in kinds:
        return kinds
    if len(kinds) > 1:
        return kinds
    leaves: set[type] = set()
    for item in value:
        leaves |= _leaf_types(item)
    return leaves


def _pack_array(value: list) -> dict[str, Any] | None:
    """``value`` as a packed array, or None when it is not a rectangular array of all
    floats or all ints (bools, None, strings, ragged lists and short lists stay lists)."""
    import numpy as np

    kinds = _leaf_types(value)
    if kinds not in ({float}, {int}):
        return None
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError):  # ragged, or an int beyond int64
        return None
    if arr.size < PACK_MIN or arr.dtype.kind not in "fi":
        return None
    if arr.dtype.kind == "f":
        small = arr.astype("<f4")
        if np.array_equal(small.astype("<f8"), arr):  # exactly float32: no value changes
            arr = small
        else:
            arr = arr.astype("<f8")
    else:
        low, high = int(arr.min()), int(arr.max())
        fits = [t for t in ("i1", "<i2", "<i4", "<i8")
                if np.iinfo(t).min <= low and high <= np.iinfo(t).max]
        arr = arr.astype(fits[0])  # the narrowest integer type that holds every value
    return {ARRAY: arr.dtype.str, "shape": list(arr.shape),
            "data": base64.b64encode(arr.tobytes()).decode("ascii")}


def _pack(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pack(v) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) >= 2 and all(isinstance(v, dict) for v in value):
            keys = list(value[0])
            if all(list(v) == keys for v in value):  # same keys, same order: columns
                return {TABLE: keys, "columns": [_pack([v[k] for v in value]) for k in keys]}
        packed = _pack_array(value) if value else None
        return packed if packed is not None else [_pack(v) for v in value]
    return value


def _unpack(value: Any, arrays: bool = False) -> Any:
    """``value`` unpacked; with ``arrays``, packed arrays become read-only numpy arrays
    (no Python list per value: what the analysis folds) except the columns of a table
    (the epoch history stays a list of dicts of Python numbers). Numbers and strings are
    returned as they are without a call each (most of a record)."""
    if isinstance(value, dict):
        if ARRAY in value:
            import numpy as np

            raw = base64.b64decode(value["data"], validate=True)
            array = np.frombuffer(raw, dtype=value[ARRAY]).reshape(value["shape"])
            return array if arrays else array.tolist()
        if TABLE in value:
            columns = [_unpack(c) for c in value["columns"]]
            return [dict(zip(value[TABLE], row, strict=True)) for row in zip(*columns, strict=True)]
        return {k: _unpack(v, arrays) if isinstance(v, _NESTED) else v
                for k, v in value.items()}
    if isinstance(value, list):
        if not any(isinstance(v, _NESTED) for v in value):
            return value  # plain numbers or strings (a record written before packing)
        return [_unpack(v, arrays) if isinstance(v, _NESTED) else v for v in value]
    return value


_NESTED = (dict, list)


def _checked(value: Any) -> Any:
    """What :func:`_unpack` checks, without building anything: each packed array's data
    decodes to exactly its shape's values, a table's columns have one length and one key
    each; raises what ``_unpack`` raises. Returns a stand-in of the unpacked value's
    type (a list of the right length for an array or a table), for :func:`record_problem`."""
    if isinstance(value, dict):
        if ARRAY in value:
            raw = base64.b64decode(value["data"], validate=True)
            shape = value["shape"]
            dtype = _dtype(value[ARRAY])
            if any(not isinstance(d, int) or d < 0 for d in shape) or shape == []:
                import numpy as np  # an unusual shape: let numpy judge it, as unpacking does

                return np.frombuffer(raw, dtype=dtype).reshape(shape).tolist()
            if len(raw) % dtype.itemsize or len(raw) // dtype.itemsize != math.prod(shape):
                raise ValueError(f"{len(raw)} bytes do not hold an array of shape {shape}")
            return [None] * shape[0]
        if TABLE in value:
            keys, columns = value[TABLE], [_checked(c) for c in value["columns"]]
            lengths = {len(c) for c in columns}
            if len(lengths) > 1:
                raise ValueError("table columns of different lengths")
            if lengths and lengths != {0} and len(keys) != len(columns):
                raise ValueError("a table with more or fewer keys than columns")
            return [None] * (lengths.pop() if lengths else 0)
        for v in value.values():
            if isinstance(v, _NESTED):
                _checked(v)
        return value
    if isinstance(value, list):
        for v in value:
            if isinstance(v, _NESTED):
                _checked(v)
    return value


@functools.cache
def _dtype(name: str):
    import numpy as np

    return np.dtype(name)


#: The fields whose arrays are packed: the per-epoch and per-batch data. The config, the
#: final metrics and the sizes stay readable JSON.
PACKED_FIELDS = ("history", "batch_losses", "probes")


def pack_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record as stored: numeric arrays packed, epoch history as columns."""
    return {k: _pack(v) if k in PACKED_FIELDS else v for k, v in record.items()}


def unpack_record(data: Any, arrays: bool = False) -> Any:
    """A stored record as it was given to :func:`pack_record` (a plain one unchanged);
    with ``arrays``, its packed arrays as read-only numpy arrays (same values) instead
    of lists. Only :data:`PACKED_FIELDS` are looked into: :func:`pack_record` packs
    nothing else (the config, final metrics and sizes are read as they are)."""
    if not isinstance(data, dict):
        return data
    return {k: _unpack(v, arrays) if k in PACKED_FIELDS and isinstance(v, _NESTED) else v
            for k, v in data.items()}


def record_text(record: dict[str, Any]) -> str:
    """The record file's text: packed, compact JSON (no NaN, as every store file)."""
    return json.dumps(pack_record(record), separators=(",", ":"), allow_nan=False) + "\n"


class DamagedRecord(Exception):
    """A record file that is not a whole record of its run (the message says why)."""


def record_problem(data: Any, run_id: str) -> str | None:
    """Why ``data`` (a parsed record) is not a whole record of ``run_id``; None if it is."""
    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    for key, kind in RECORD_FIELDS.items():
        if key not in data:
            return f"no {key!r} field"
        if not isinstance(data[key], kind):
            return f"{key!r} is {type(data[key]).__name__}, not {kind.__name__}"
    if data["run_id"] != run_id:
        return f"it is the record of run {data['run_id']!r}, not of {run_id!r}"
    if data["status"] not in RECORD_STATUSES:
        return f"status {data['status']!r} is not one of {', '.join(RECORD_STATUSES)}"
    return None


def check_record(path: Path, run_id: str | None = None) -> None:
    """Raise :class:`DamagedRecord` where :func:`read_record` would, without unpacking
    (``StudyStore.heal``: every record is checked, the analysis then reads it once)."""
    read_record(path, run_id, arrays=None)


def read_record(
    path: Path, run_id: str | None = None, arrays: bool | None = False
) -> dict[str, Any]:
    """The record in ``path``, checked; raises :class:`DamagedRecord` saying why not.
    ``arrays``: packed arrays as numpy arrays (see :func:`unpack_record`); every check is
    the same (each array decoded and shaped), only the conversion to lists is left out."""
    run_id = run_id or path.stem
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DamagedRecord(f"cannot read it ({exc.strerror})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DamagedRecord("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        what = "empty" if not raw.strip() else f"not valid JSON ({exc.msg} at byte {exc.pos})"
        raise DamagedRecord(what) from None
    except RecursionError:
        raise DamagedRecord("not valid JSON (nested too deeply)") from None
    try:
        if arrays is None and isinstance(data, dict):  # check_record: check, build nothing
            data = {k: _checked(v) if k in PACKED_FIELDS and isinstance(v, _NESTED) else v
                    for k, v in data.items()}
        else:
            data = unpack_record(data, bool(arrays))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise DamagedRecord(f"a packed array does not decode ({exc})") from None
    problem = record_problem(data, run_id)
    if problem is not None:
        raise DamagedRecord(problem)
    return data


def quarantine_file(path: Path) -> Path:
    """Move a damaged file to ``runs/quarantine/`` (never overwriting an earlier one)."""
    folder = path.parent / QUARANTINE
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / path.name
    n = 1
    while dest.exists():
        dest = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    os.replace(path, dest)
    return dest


def warn(message: str) -> None:
    """One warning line on stderr (the store has no other way to tell the user)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
