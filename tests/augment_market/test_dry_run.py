"""``train --dry-run`` and ``reid train --dry-run``: FLOPs equal to what torch's counter
reports for a real step on real tensors, the run's steps, and nothing written."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from augment_market.cli import main
from reid.config import TrainConfig
from reid.cost import training_cost as reid_cost
from reid.models import ReIDModelConfig, build_reid_model
from reid.train import _Objective
from san_model.config import SANConfig
from san_model.discriminator import build_discriminator
from san_model.generator import build_generator
from san_model.image_pool import ImagePool
from san_model.losses import build_perceptual_loss
from san_model.train import ModelBatch, train_step


def dry_run(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def exact(out: str, label: str) -> int:
    """The exact FLOP figure of the output line starting with ``label``."""
    line = next(line for line in out.splitlines() if line.startswith(label))
    return int(re.search(r"\(([\d,]+) FLOP\)", line).group(1).replace(",", ""))


def san_step_flops(config: SANConfig) -> int:
    """One real training step of ``config`` on random CPU tensors, under torch's counter."""
    gen = torch.Generator().manual_seed(1)
    b, (h, w), classes = config.batch_size, config.image_size, config.parsing_classes
    image = lambda: torch.rand(b, 3, h, w, generator=gen) * 2 - 1  # noqa: E731
    mask = lambda: (torch.rand(b, 1, h, w, generator=gen) > 0.5).float()  # noqa: E731
    labels = lambda: torch.randint(classes, (b, h, w), generator=gen)  # noqa: E731
    one_hot = lambda: torch.nn.functional.one_hot(labels(), classes).permute(0, 3, 1, 2).float()  # noqa: E731
    batch = ModelBatch(image(), mask(), one_hot(), image(), mask(), one_hot())
    generator, discriminator = build_generator(config=config), build_discriminator(config=config)
    with FlopCounterMode(display=False) as counter:
        train_step(
            generator=generator,
            discriminator=discriminator,
            perceptual=build_perceptual_loss(config=config, pretrained=False),
            opt_g=torch.optim.Adam(generator.parameters()),
            opt_d=torch.optim.Adam(discriminator.parameters()),
            batch=batch,
            config=config,
            pool=ImagePool(config.pool_size, seed=0),
        )
    return counter.get_total_flops()


def test_train_dry_run_counts_the_real_step_and_writes_nothing(
    capsys, small_store, snapshot, tmp_path
):
    before = snapshot(small_store)
    run = tmp_path / "run"
    code, out, err = dry_run(
        capsys, "train", small_store.url, "--out", run, "--preset", "tiny", "--dry-run"
    )
    assert code == 0, err
    config = SANConfig.tiny()
    per_step = exact(out, "one training step (4 pairs)")
    assert per_step == san_step_flops(config) > 0
    assert f"the run: {config.total_steps:,} steps" in out
    assert exact(out, "the run:") == per_step * config.total_steps
    assert "A100" in out and "H100" in out and "estimates" in out
    assert out.rstrip().endswith("nothing was written")
    assert not run.exists() and snapshot(small_store) == before


def test_train_dry_run_says_when_max_steps_cuts_the_schedule(capsys, small_store, tmp_path):
    args = ("train", small_store.url, "--out", tmp_path / "run", "--preset", "tiny", "--dry-run")
    _, out, _ = dry_run(capsys, *args, "--max-steps", 3)
    assert "the run: 3 steps" in out
    assert "note: max_steps 3 stops training before the schedule's 8 steps" in out
    assert "the learning rate still decays over all 8 (it ends at 62% of its start)" in out
    _, out, _ = dry_run(capsys, *args, "--no-perceptual")
    assert "perceptual" not in out.splitlines()[1]  # no VGG-19 is counted without eq. 6


def test_train_dry_run_checks_the_image_size(capsys, small_store, tmp_path):
    code, _, err = dry_run(
        capsys, "train", small_store.url, "--out", tmp_path / "run", "--dry-run"
    )  # the paper preset is 128x64, the store 64x32
    assert code == 1 and err.startswith("error: config.image_size (128, 64) differs")
    assert not (tmp_path / "run").exists()


def test_reid_dry_run_counts_the_real_step_and_writes_nothing(
    capsys, small_store, snapshot, tmp_path
):
    before = snapshot(small_store)
    out_dir = tmp_path / "reid"
    code, out, err = dry_run(
        capsys,
        "reid", "train", small_store.url, "--out", out_dir, "--arch", "resnet18",
        "--batch-size", 4, "--epochs", 2, "--no-pretrained", "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    config = TrainConfig(
        model=ReIDModelConfig(arch="resnet18", pretrained=False), batch_size=4, epochs=2
    )
    model = build_reid_model(config=config.model, num_classes=3)  # 3 training identities
    images = torch.rand(4, 3, config.height, config.width)
    with FlopCounterMode(display=False) as counter:
        _Objective(model, config)(images, torch.tensor([0, 1, 2, 0]), None).backward()
    assert exact(out, "one training step (4 images)") == counter.get_total_flops()
    n_train = 12  # 3 identities x 4 images
    assert f"the run: {2 * (n_train // 4)} steps" in out
    assert not out_dir.exists() and snapshot(small_store) == before


def test_reid_cost_needs_one_batch():
    config = TrainConfig(model=ReIDModelConfig(arch="resnet18", pretrained=False), batch_size=8)
    with pytest.raises(ValueError, match="cannot fill one step"):
        reid_cost(config, torch.tensor([1, 1, 2]))
