"""The Zarr person store: the only package that touches the on-disk format."""

from storage.migrate import MigrationError, MigrationResult, migrate_store
from storage.stages import (
    MissingInputError,
    StageBusyError,
    StageRun,
    StageStamp,
    config_hash,
)
from storage.store import (
    LIP_LABELS,
    NUM_PARSING_LABELS,
    SPLITS,
    DamagedStoreError,
    PersonStore,
    RowReader,
    StoreLocationError,
    StoreNotFoundError,
    StoreSummary,
    StoreValidationError,
    create_store,
    open_store,
)

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
    "migrate_store",
    "open_store",
]
