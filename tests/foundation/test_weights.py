"""Weight files: every damaged or unsafe file is refused with its name, before any use."""

from __future__ import annotations

import os

import pytest
import torch

from foundation.errors import UserError
from foundation.weights import (
    UnreadableWeightsError,
    WrongNetworkError,
    check_fits,
    check_torch_file,
    load_into,
    load_state_dict,
    load_torch_file,
)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


@pytest.fixture
def files(tmp_path):
    state = {"layer.weight": torch.arange(4000, dtype=torch.float32)}
    good = tmp_path / "good.pth"
    torch.save(state, good)
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:2000])
    legacy_truncated = tmp_path / "legacy_truncated.pth"
    legacy_truncated.write_bytes(legacy.read_bytes()[:2000])
    pickled = tmp_path / "pickled.pth"
    torch.save({"layer.weight": _Exploit()}, pickled)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    return {
        "good": good,
        "legacy": legacy,
        "truncated": truncated,
        "legacy_truncated": legacy_truncated,
        "pickled": pickled,
        "empty": empty,
    }


def test_good_files_load_in_both_formats(files):
    for name in ("good", "legacy"):
        check_torch_file(files[name])
        assert torch.equal(load_state_dict(files[name])["layer.weight"], torch.arange(4000.0))


@pytest.mark.parametrize("name", ["truncated", "legacy_truncated", "empty"])
def test_a_damaged_file_is_named(files, name):
    for call in (check_torch_file, load_state_dict):
        with pytest.raises(UnreadableWeightsError, match="cannot be read") as raised:
            call(files[name])
        assert str(files[name]) in str(raised.value) and "\n" not in str(raised.value)
        assert isinstance(raised.value, UserError)


def test_pickled_code_is_refused_and_never_run(files, capfd):
    with pytest.raises(UnreadableWeightsError, match="was refused") as raised:
        load_torch_file(files["pickled"], what="generator checkpoint")
    message = str(raised.value)
    assert message.startswith(f"generator checkpoint {files['pickled']} ") and "\n" not in message
    assert "owned" not in capfd.readouterr().out


def test_a_missing_file_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        check_torch_file(tmp_path / "absent.pth")


def test_a_state_dict_of_another_network_is_named_and_not_loaded():
    """Missing, unexpected and reshaped tensors are counted with their first name; a BatchNorm
    count that older files lack is not missing; the module keeps its weights."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fitting = {k: torch.ones_like(v) for k, v in before.items() if "num_batches" not in k}
    load_into(net, fitting, path="ok.pth", network="toy")
    assert torch.equal(net[0].weight, torch.ones(4, 3, 3, 3))
    wrong = {**fitting, "0.weight": torch.zeros(4, 3, 5, 5), "head.weight": torch.zeros(2)}
    del wrong["1.bias"]
    with pytest.raises(WrongNetworkError) as raised:
        load_into(net, wrong, path="other.pth", network="toy", official="toy.pth")
    assert str(raised.value) == (
        "weights file other.pth is not a toy file: 1 of its 7 tensors missing (1.bias...); "
        "1 it does not have (head.weight...); 1 of other shapes (0.weight is [4, 3, 5, 5], "
        "not [4, 3, 3, 3]); give the official file (toy.pth)"
    )
    assert isinstance(raised.value, UserError)
    assert torch.equal(net[0].weight, torch.ones(4, 3, 3, 3))
    check_fits(wrong, {"0.bias": (4,)}, path="part.pth", network="toy", extra=True)


@pytest.mark.parametrize(
    "environment",
    [{"TORCH_HOME": "th"}, {"XDG_CACHE_HOME": "xdg"}, {}],
    ids=["TORCH_HOME", "XDG_CACHE_HOME", "home"],
)
def test_torch_hub_dir_without_torch_is_torchs_own(tmp_path, environment):
    """Finding a weights file does not load torch, and looks where torch.hub would."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
    env |= {key: str(tmp_path / value) for key, value in environment.items()}
    env["HOME"] = str(tmp_path / "home")
    script = (
        "import sys; from foundation.weights import torch_hub_dir; first = torch_hub_dir(); "
        "assert 'torch' not in sys.modules; import torch; "
        "print(first == torch_hub_dir(), first)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("True "), out
