"""Checkpoint I/O: atomic writes, weights_only reads."""

from __future__ import annotations

import pickle

import pytest
import torch

from reid.checkpoint import imagenet_state_dict, load_checkpoint, save_checkpoint


def test_round_trip_leaves_no_temporary(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "step": 7, "config": {"lr": 0.1, "ms": (1, 2)}}
    path = save_checkpoint(tmp_path / "run" / "last.pt", state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and loaded["config"] == {"lr": 0.1, "ms": (1, 2)}
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", {"step": 1})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint(path, {"step": 2, "bad": lambda: None})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_weights_only_refuses_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": pytest.approx(1)}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_unknown_arch_has_no_weights():
    with pytest.raises(KeyError, match="resnet50"):
        imagenet_state_dict("vgg19")
