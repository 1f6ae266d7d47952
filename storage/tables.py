"""The store's index (one row per image) and its tables (``tables/<name>.parquet``)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from storage.base import INDEX_COLUMNS, StoreBase


class IndexAndTables(StoreBase):
    """The index and tables of a store (part of :class:`storage.PersonStore`)."""

    _index: pd.DataFrame | None = None

    @property
    def index(self) -> pd.DataFrame:
        """Index-aligned columns ``person_id``, ``camera``, ``split``, ``filename`` (cached)."""
        if self._index is None:
            self._index = pd.DataFrame(
                {column: np.asarray(self._array(column)[:]) for column in INDEX_COLUMNS}
            )
        return self._index

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        """Write ``tables/<name>.parquet`` atomically where the filesystem allows."""
        self._begin_writes()
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        self._atomic_write(self._path("tables", f"{name}.parquet"), buffer.getvalue())

    def read_table(self, name: str) -> pd.DataFrame:
        path = self._path("tables", f"{name}.parquet")
        if not self.fs.exists(path):
            raise FileNotFoundError(f"table '{name}' not in store {self.url} ({path})")
        with self.fs.open(path, "rb") as handle:
            return pd.read_parquet(handle)

    def has_table(self, name: str) -> bool:
        return bool(self.fs.exists(self._path("tables", f"{name}.parquet")))
