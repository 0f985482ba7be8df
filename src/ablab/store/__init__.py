"""The study directory on disk: run records, histories, resume."""

from ablab.store.files import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text"]
