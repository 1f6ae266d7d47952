"""The command line reads naturally: commands in pipeline order, boolean pairs without
``--no-no-``, ``info``'s findings as ``key=value``."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from augment_market.cli import COMMAND_ORDER, main


def run(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return exited.value.code, out + err


def test_help_lists_commands_in_pipeline_order(capsys):
    _, out = run(capsys, "--help")
    listed = re.findall(r"^│ ([a-z][a-z-]+) ", out, flags=re.MULTILINE)
    assert listed == list(COMMAND_ORDER)


def test_boolean_options_read_as_pairs(capsys):
    _, out = run(capsys, "train", "--help")
    assert "--perceptual" in out and "--no-perceptual" in out
    assert "--mask-inputs" in out and "--no-mask-inputs" in out
    groups = {"ingest": "market1501", "segment": "masks", "reid": "train"}
    for command in COMMAND_ORDER:
        _, out = run(capsys, *filter(None, (command, groups.get(command))), "--help")
        assert "--no-no-" not in out, command


def test_info_prints_findings_as_key_value(capsys, small_store, tmp_path):
    folder = tmp_path / "provided" / "masks"
    folder.mkdir(parents=True)
    for name, mask in zip(small_store.index["filename"], small_store.read("masks"), strict=True):
        Image.fromarray(mask * 255).save(folder / name.replace(".jpg", ".png"))
    code, _ = run(capsys, "segment", "masks", small_store.url, "--provided", tmp_path / "provided")
    assert code == 0
    code, out = run(capsys, "info", small_store.url)
    assert code == 0
    findings = [line for line in out.splitlines() if line.startswith("    ")]
    assert findings and "{" not in out
    assert all(re.fullmatch(r"    (\S+=\S+ ?)+", line) for line in findings), findings
