"""The study directory on disk: run records, the run index, resume."""

from ablab.store.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from ablab.store.study_store import STATUSES, StudyDirError, StudyStore, peek_statuses

__all__ = [
    "STATUSES",
    "StudyDirError",
    "StudyStore",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "peek_statuses",
]
