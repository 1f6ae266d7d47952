"""Person Re-ID and pose-transfer dataset kinds: which images a dataset folder holds, with
identity, camera and split, and how the ingest stores them.

One module per kind declares it (:class:`Dataset`: layout, file-name parsing, official counts,
store size, help texts): :mod:`.market1501`, :mod:`.dukemtmc_reid`, :mod:`.msmt17`,
:mod:`.cuhk03` (two kinds, detected and labeled boxes), :mod:`.deepfashion`. :mod:`.registry`
lists them (:data:`DATASETS`, the only list); :mod:`.layout` holds what they share, among it
Market-1501's three folders (:func:`scan_folders`). docs/datasets.md describes each layout.
"""

from pipeline.datasets.layout import (
    CANDIDATE_COLUMNS,
    IMAGE_SUFFIXES,
    MARKET_FOLDERS,
    Dataset,
    DatasetLayoutError,
    FolderDataset,
    ScanResult,
    scan_folders,
)
from pipeline.datasets.market1501 import MARKET1501
from pipeline.datasets.msmt17 import msmt17_labels
from pipeline.datasets.registry import (
    CUSTOM,
    DATASETS,
    FOLDER_DATASETS,
    DatasetKind,
    dataset_names,
    dataset_title,
    get_dataset,
    official_count_differences,
)

__all__ = [
    "CANDIDATE_COLUMNS",
    "CUSTOM",
    "DATASETS",
    "FOLDER_DATASETS",
    "IMAGE_SUFFIXES",
    "MARKET1501",
    "MARKET_FOLDERS",
    "Dataset",
    "DatasetKind",
    "DatasetLayoutError",
    "FolderDataset",
    "ScanResult",
    "dataset_names",
    "dataset_title",
    "get_dataset",
    "msmt17_labels",
    "official_count_differences",
    "scan_folders",
]
