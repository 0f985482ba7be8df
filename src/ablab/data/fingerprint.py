"""What data a study reads, whether it is there, and whether it changed.

Two checks the runner makes before any worker starts:

- :func:`unavailable`: every dataset the study's runs name can be had (its files found,
  or downloaded now when downloads are allowed); otherwise one line per dataset with the
  exact files and folder it needs. Nothing is created while looking.
- :func:`fingerprints`: for a dataset read from files, each file's size and modification
  time (the fast check) and SHA-256 (the confirmation), so a study resumed against
  changed files is refused instead of mixing old and new runs.

Which files a dataset reads: a built-in file dataset's ``locate`` (MNIST, Fashion-MNIST,
CIFAR-10); a plugin dataset names them in its registry entry, ``files=[...]`` (paths) or
``files=lambda options: [...]`` (from its resolved options), or opts out with
``files=()``. A dataset that is generated (moons) or ships with a library (digits)
reads none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ablab.data.sources import DataLocation, download_allowed, fetch, locate
from ablab.data.user_files import file_sha256, path_options, resolve_paths
from ablab.errors import DataMissingError
from ablab.registry import DATASETS

__all__ = [
    "DataChangedError",
    "DataUnavailableError",
    "changed_files",
    "dataset_files",
    "dataset_key",
    "fingerprints",
    "unavailable",
]


class DataUnavailableError(DataMissingError):
    """Datasets a study needs are missing; ``lines``: one per dataset."""

    def __init__(self, lines: list[str]):
        super().__init__("; ".join(lines))
        self.lines = lines


class DataChangedError(DataMissingError):
    """A data file changed since stored runs read it."""


def dataset_key(dataset: dict[str, Any]) -> str:
    """A run's resolved ``dataset`` table as one string (what it reads, with which options;
    without ``base_dir``, where its relative paths start, so a moved project keeps its
    keys)."""
    dataset = {k: v for k, v in dataset.items() if k != "base_dir"}
    return json.dumps(dataset, sort_keys=True, separators=(",", ":"))


def _options(dataset: dict[str, Any]) -> dict[str, Any]:
    entry = DATASETS.get(dataset["name"])
    options = {k: v for k, v in dataset.items() if k in entry.options.model_fields}
    if path_options(dataset["name"]):  # the user's files: relative to the study's folder
        return resolve_paths(dataset["name"], options, dataset.get("base_dir"))
    return options


def _file_names(paths: list[Path]) -> list[str]:
    """How each file is named in a fingerprint: its name, or, when two share a name (an
    image folder's cat/1.png and dog/1.png), its path below their common folder."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names) or len(paths) < 2:
        return names
    import os

    common = Path(os.path.commonpath([str(p) for p in paths]))
    return [str(p.relative_to(common)) if p != common else p.name for p in paths]


def _found_files(where: DataLocation) -> list[Path]:
    out = []
    for name in where.files:  # MNIST's files may sit there unpacked (no .gz)
        for cand in (where.found / name, where.found / name.removesuffix(".gz")):
            if cand.is_file():
                out.append(cand)
                break
    return out


def dataset_files(dataset: dict[str, Any]) -> list[Path] | None:
    """The files a dataset (a resolved ``dataset`` table) reads; None when it reads none
    or does not say (a plugin dataset without ``files``) or is not there (see
    :func:`unavailable`)."""
    entry = DATASETS.get(dataset["name"])
    declared = entry.meta.get("files")
    if declared is not None:
        files = declared(_options(dataset)) if callable(declared) else declared
        return [Path(f).expanduser().absolute() for f in files]
    where = locate(dataset["name"])
    if where is None or where.found is None:
        return None
    return _found_files(where)


def silent_plugin_datasets(datasets: list[dict[str, Any]]) -> list[str]:
    """Plugin datasets that neither name their files nor opt out (``files=()``)."""
    out = []
    for dataset in datasets:
        meta = DATASETS.get(dataset["name"]).meta
        if meta.get("plugin") and "files" not in meta and "locate" not in meta:
            out.append(dataset["name"])
    return list(dict.fromkeys(out))


def unavailable(datasets: list[dict[str, Any]]) -> list[str]:
    """One line per dataset (resolved ``dataset`` tables) that cannot be had: the exact
    files and folder it needs. Downloads what is missing when downloads are allowed."""
    lines = []
    for name in dict.fromkeys(d["name"] for d in datasets):
        where = locate(name)
        if where is not None and where.found is None:
            if download_allowed():
                try:
                    fetch(name)
                    continue
                except DataMissingError as exc:
                    lines.append(str(exc))
                    continue
            searched = ", ".join(str(p) for p in where.searched)
            lines.append(
                f"dataset {name}: missing; needs {', '.join(where.files)} in {where.folder} "
                f"from {where.url} (looked in {searched}; downloads are off: ABLAB_DOWNLOAD=0)"
            )
    for dataset in datasets:
        declared = DATASETS.get(dataset["name"]).meta.get("files")
        if declared is None:
            continue
        files = dataset_files(dataset) or []
        missing = [str(f) for f in files if not f.is_file()]
        line = f"dataset {dataset['name']}: missing {', '.join(missing)}"
        if missing and line not in lines:
            lines.append(line)
    return lines


def fingerprints(
    datasets: list[dict[str, Any]], known: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Dataset key → file name → ``{path, size, mtime_ns, sha256}`` for every dataset that
    reads files. A file whose size and modification time match ``known`` (earlier
    fingerprints, same shape) keeps its known hash without being read again."""
    known = known or {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    hashed: dict[Path, str] = {}
    for dataset in datasets:
        key = dataset_key(dataset)
        if key in out:
            continue
        files = dataset_files(dataset)
        if not files:
            continue
        entry: dict[str, dict[str, Any]] = {}
        for path, name in zip(files, _file_names(files), strict=True):
            stat = path.stat()
            old = known.get(key, {}).get(name)
            if old and old["size"] == stat.st_size and old["mtime_ns"] == stat.st_mtime_ns:
                sha = old["sha256"]
            else:
                sha = hashed.get(path) or file_sha256(path)
                hashed[path] = sha
            entry[name] = {
                "path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "sha256": sha,
            }
        out[key] = entry
    return out


def changed_files(
    known: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]
) -> dict[str, list[str]]:
    """Dataset key → paths of files whose content differs from ``known`` (or that are
    gone)."""
    out: dict[str, list[str]] = {}
    for key, files in known.items():
        if key not in now:
            continue
        for name, old in files.items():
            new = now[key].get(name)
            if new is None or new["sha256"] != old["sha256"]:
                out.setdefault(key, []).append(new["path"] if new else old["path"])
    return out
