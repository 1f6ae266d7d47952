"""scripts/download_weights.py: every file of the README's table, checked by its sha256 prefix."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

from flows.offline import every_weights_file
from foundation.weights import WeightsFile, sha256_of

PROJECT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "download_weights", PROJECT / "scripts" / "download_weights.py"
)
assert spec is not None and spec.loader is not None
download_weights = importlib.util.module_from_spec(spec)
spec.loader.exec_module(download_weights)


def test_the_script_fetches_the_readme_table():
    readme = (PROJECT / "README.md").read_text()
    table = readme.split("## Pretrained weights")[1].split("\n#")[0]
    names = set(re.findall(r"`([\w.-]+\.pth)`", table))
    assert {spec.file_name for spec in every_weights_file()} == names
    drive = next(s for s in every_weights_file() if "drive.google.com" in s.url)
    assert download_weights.download_url(drive).startswith("https://drive.usercontent.google.com")


def test_fetch_checks_the_hash_and_keeps_a_present_file(tmp_path):
    source = tmp_path / "published" / "tiny-weights.pth"
    source.parent.mkdir()
    torch.save({"w": torch.ones(2)}, source)
    prefix = sha256_of(source)[:8]
    dest = tmp_path / "weights"
    dest.mkdir()
    good = WeightsFile(source.name, source.as_uri(), prefix)
    assert download_weights.fetch(good, dest).startswith("fetched")
    assert sha256_of(dest / source.name) == sha256_of(source)
    assert download_weights.fetch(good, dest).startswith("present")

    wrong = WeightsFile("other.pth", source.as_uri(), "00000000")
    with pytest.raises(RuntimeError, match="other.pth"):
        download_weights.fetch(wrong, dest)
    assert sorted(p.name for p in dest.iterdir()) == [source.name], "nothing partial is left"
