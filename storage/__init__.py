"""The Zarr person store: the only package that touches the on-disk format."""

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
    PersonStore,
    StoreLocationError,
    StoreNotFoundError,
    StoreSummary,
    StoreValidationError,
    create_store,
    open_store,
)

__all__ = [
    "LIP_LABELS",
    "NUM_PARSING_LABELS",
    "SPLITS",
    "MissingInputError",
    "PersonStore",
    "StageBusyError",
    "StageRun",
    "StageStamp",
    "StoreLocationError",
    "StoreNotFoundError",
    "StoreSummary",
    "StoreValidationError",
    "config_hash",
    "create_store",
    "open_store",
]
