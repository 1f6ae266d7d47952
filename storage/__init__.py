"""The Zarr person store: the only package that touches the on-disk format.

Everything other packages use is named here; the modules inside are the store's own.
"""

from storage.base import (
    LIP_LABELS,
    NUM_PARSING_LABELS,
    SPLITS,
    DamagedStoreError,
    StoreLocationError,
    StoreNotFoundError,
    StoreValidationError,
)
from storage.elements import RowReader
from storage.encoding import decode_element, encode_labels, encode_rgb, keeps_verbatim
from storage.locks import StageBusyError
from storage.migrate import MigrationError, MigrationResult, migrate_store
from storage.stages import MissingInputError, StageRun
from storage.stamps import StageStamp, config_hash
from storage.store import PersonStore, StoreSummary, create_store, open_store

__all__ = [
    "DamagedStoreError",
    "LIP_LABELS",
    "NUM_PARSING_LABELS",
    "SPLITS",
    "MigrationError",
    "MigrationResult",
    "MissingInputError",
    "PersonStore",
    "RowReader",
    "StageBusyError",
    "StageRun",
    "StageStamp",
    "StoreLocationError",
    "StoreNotFoundError",
    "StoreSummary",
    "StoreValidationError",
    "config_hash",
    "create_store",
    "decode_element",
    "encode_labels",
    "encode_rgb",
    "keeps_verbatim",
    "migrate_store",
    "open_store",
]
