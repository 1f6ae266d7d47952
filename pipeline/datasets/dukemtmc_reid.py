"""DukeMTMC-reID: Market-1501's three folders, names ``pid_c<camera>_f<frame>``, cameras 1-8,
boxes of every size (stretched to the store's)."""

from __future__ import annotations

import re

from pipeline.datasets.layout import Dataset, FolderDataset

DUKEMTMC_REID = FolderDataset(
    title="DukeMTMC-reID",
    name_pattern=re.compile(r"^(?P<pid>-?\d+)_c(?P<cam>\d+)_f(?P<frame>\d+)$"),
    name_form="pid_cC_fFRAME.jpg, e.g. 0001_c2_f0046182.jpg",
    cameras=range(1, 9),
    # Frame 9, row, draw: nine digits where the real frame numbers have seven.
    generated_name="{pid:04d}_c{camera}_f9{row:06d}{draw:02d}.jpg",
)
DATASET = Dataset(
    name="dukemtmc_reid",
    title="DukeMTMC-reID",
    help="Ingest DukeMTMC-reID (8 cameras; images stretched to 256x128).",
    source_help="DukeMTMC-reID folder (bounding_box_train, _test, query).",
    command="dukemtmc-reid",
    layout=DUKEMTMC_REID,
    official_counts={"train": 16_522, "query": 2_228, "gallery": 17_661},
    # The 256x128 that torchreid and fast-reid resize the original boxes to.
    image_size=(256, 128),
)
