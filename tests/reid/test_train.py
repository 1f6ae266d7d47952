"""Training loop: learning on a toy set, exact resume, Siamese sampling, DDP on 2 CPU processes,
feature extraction."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reid.checkpoint import load_checkpoint
from reid.models import IDENet, ReIDModelConfig
from reid.sampling import BatchSampler
from reid.train import (
    TrainConfig,
    _augment,
    extract_features,
    load_trained_model,
    train_reid,
)
from tests.reid_recipes import TOY_INPUT, tiny_recipe

TINY = tiny_recipe(
    **TOY_INPUT,
    epochs=4,
    lr_milestones=(2,),
    lr=0.01,
    random_erasing=TrainConfig.random_erasing,
    checkpoint_every=1000,
    log_every=1,
)


def toy_set(num_ids=4, per_id=6, seed=0):
    """Identity = a flat colour per id plus noise: learnable in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_ids).repeat_interleave(per_id) * 10 + 3  # non-contiguous pids
    colours = torch.randint(0, 256, (num_ids, 3), generator=gen)
    noise = torch.randint(-20, 21, (len(labels), 24, 12, 3), generator=gen)
    images = (colours[labels // 10][:, None, None, :] + noise).clamp(0, 255).to(torch.uint8)
    return images, labels


def test_exact_resume(tmp_path):
    images, labels = toy_set()
    full = train_reid(TINY, images, labels, tmp_path / "full", max_steps=4)
    half = train_reid(TINY, images, labels, tmp_path / "split", max_steps=2)
    assert half.steps == 2 and load_checkpoint(half.checkpoint)["step"] == 2
    resumed = train_reid(TINY, images, labels, tmp_path / "split", max_steps=4)
    assert resumed.steps == 4 and [s for s, _ in resumed.losses] == [3, 4]
    assert resumed.losses == full.losses[2:]
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="another config"):
        train_reid(dataclasses.replace(TINY, lr=0.5), images, labels, tmp_path / "split")


def test_cpu_training_runs_on_one_thread_whatever_the_callers_count(tmp_path):
    """The steps run on one intra-op thread (foundation.cpu): a resume under another thread
    count continues the uninterrupted run exactly, and the caller's count comes back."""
    images, labels = toy_set()
    before = torch.get_num_threads()
    seen = set()
    try:
        torch.set_num_threads(2)
        full = train_reid(
            TINY, images, labels, tmp_path / "full", max_steps=4,
            progress=lambda done, total: seen.add(torch.get_num_threads()),
        )  # fmt: skip
        assert torch.get_num_threads() == 2
        train_reid(TINY, images, labels, tmp_path / "split", max_steps=2)
        torch.set_num_threads(1)
        resumed = train_reid(TINY, images, labels, tmp_path / "split", max_steps=4)
    finally:
        torch.set_num_threads(before)
    assert seen == {1}
    assert resumed.losses == full.losses[2:]
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_siamese_trains_and_reloads(tmp_path):
    images, labels = toy_set()
    config = dataclasses.replace(
        TINY, model=dataclasses.replace(TINY.model, kind="siamese"), optimizer="amsgrad", lr=1e-3
    )
    seen = []
    result = train_reid(
        config,
        images,
        labels,
        tmp_path,
        max_steps=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in result.losses)
    model, loaded_config, classes = load_trained_model(result.checkpoint)
    assert loaded_config == config and classes.tolist() == [3, 13, 23, 33]
    for a, b in zip(model.state_dict().values(), result.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_augment_keeps_shape_and_erases():
    x = torch.rand(6, 3, 32, 16)
    config = dataclasses.replace(TINY, random_erasing=1.0)
    out = _augment(x, config, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert all(bool((out[i] == 0).all(0).any()) for i in range(6))  # every image has a hole
    plain = dataclasses.replace(TINY, flip=False, pad=0, random_erasing=0.0)
    out = _augment(x, plain, torch.Generator().manual_seed(0))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    torch.testing.assert_close(out * torch.tensor([0.229, 0.224, 0.225])[:, None, None] + mean, x)


def test_training_learns_and_features_separate_ids(tmp_path):
    images, labels = toy_set()
    config = dataclasses.replace(
        TINY,
        random_erasing=0.0,
        epochs=20,
        lr_milestones=(15,),
        optimizer="amsgrad",
        lr=3e-4,
        backbone_lr_mult=1.0,
    )
    result = train_reid(config, images, labels, tmp_path, max_steps=24)
    losses = torch.tensor([loss for _, loss in result.losses])
    assert losses[-6:].median() < 0.6 * losses[:4].mean()  # median: one hard batch may spike
    features = extract_features(
        result.model, images, batch_size=10, size=(32, 16), flip=True, normalize=True
    )
    assert features.shape == (24, 512)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(24))
    similarity = features @ features.T
    same = labels[:, None] == labels[None, :]
    assert similarity[same].mean() > similarity[~same].mean()


class _FirstRow(torch.nn.Module):
    """A stand-in backbone: the red channel of the top row, [B, W]."""

    def forward(self, x):
        return x[:, 0, 0, :]


@pytest.mark.parametrize(
    ("flip", "normalize", "expected"),
    [
        # Red 0 and 255 normalised: (0 - 0.485) / 0.229 = -2.117904, (1 - 0.485) / 0.229 =
        # 2.248908; the mirror swaps them; L2 norm sqrt(2.117904^2 + 2.248908^2) = 3.089188.
        (False, False, [-2.117904, 2.248908]),
        (True, False, [0.065502, 0.065502]),
        (False, True, [-0.685585, 0.727994]),
        (True, True, [0.707107, 0.707107]),
    ],
)
def test_extract_features_flip_and_normalize_hand_case(flip, normalize, expected):
    model = IDENet(
        backbone=_FirstRow(), feature_dim=2, num_classes=2, bottleneck_dim=None, dropout=0.0
    )
    image = torch.zeros(1, 1, 2, 3, dtype=torch.uint8)
    image[0, 0, 1] = 255  # [H=1, W=2]: black, then white
    features = extract_features(model, image, size=(1, 2), flip=flip, normalize=normalize)
    torch.testing.assert_close(features, torch.tensor([expected]), atol=1e-5, rtol=0)


def test_ide_original_preset_is_the_caffe_recipe():
    config = TrainConfig.ide_original()
    assert (config.height, config.width, config.pad, config.flip) == (224, 224, 0, True)
    assert (config.random_erasing, config.label_smoothing, config.model.dropout) == (0, 0, 0)
    assert (config.batch_size, config.lr, config.backbone_lr_mult) == (16, 1e-3, 1.0)
    assert (config.momentum, config.weight_decay, config.lr_gamma) == (0.9, 5e-4, 0.1)
    assert config.freeze_bn_stats and config.optimizer == "sgd"
    # Market-1501: 12,936 training images / 16 = 808 steps per epoch; the solver's 50,000
    # iterations with the step at 20,000 become 62 * 808 = 50,096 and 25 * 808 = 20,200.
    targets = torch.arange(12_936) % 751
    per_epoch = BatchSampler(targets, batch_size=config.batch_size, seed=0).steps_per_epoch
    assert per_epoch * config.epochs == 50_096
    assert per_epoch * config.lr_milestones[0] == 20_200
    assert TrainConfig.ide_original(epochs=1, seed=3).epochs == 1
    assert TrainConfig.modern() == TrainConfig()
    assert TrainConfig.modern(lr=0.1).lr == 0.1


@pytest.mark.parametrize("frozen", [False, True])
def test_freeze_bn_stats_keeps_imagenet_statistics(tmp_path, frozen):
    images, labels = toy_set()
    config = dataclasses.replace(TINY, freeze_bn_stats=frozen)
    start = train_reid(config, images, labels, tmp_path / "start", max_steps=0).model
    trained = train_reid(config, images, labels, tmp_path / "run", max_steps=1).model
    before, after = start.backbone.bn1, trained.backbone.bn1
    assert torch.equal(before.running_mean, after.running_mean) == frozen
    assert torch.equal(before.num_batches_tracked, after.num_batches_tracked) == frozen
    assert not torch.equal(before.bias, after.bias)  # scale and shift learn either way


DDP_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {root!r})
from reid.models import IDENet, ReIDModelConfig
from reid.sampling import BatchSampler
from reid.config import TrainConfig
from reid.train import train_reid
config = TrainConfig(model=ReIDModelConfig(arch="resnet18", pretrained=False), height=32,
                     width=16, pad=2, batch_size=8)
gen = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (16, 24, 12, 3), generator=gen, dtype=torch.uint8)
labels = torch.arange(16) % 4
result = train_reid(config, images, labels, {run_dir!r}, max_steps=2)
torch.save(result.model.state_dict(), os.path.join({run_dir!r}, f"rank{{os.environ['RANK']}}.pt"))
"""


def test_ddp_two_cpu_processes(tmp_path):
    """Two gloo ranks started with the environment torchrun gives its workers (starting them
    directly saves the launcher's own torch import, seconds on a loaded CI machine)."""
    script = tmp_path / "ddp.py"
    root = str(Path(__file__).resolve().parents[2])
    script.write_text(DDP_SCRIPT.format(root=root, run_dir=str(tmp_path)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, "RANK": r, "LOCAL_RANK": r},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in ("0", "1")
    ]
    outputs = [worker.communicate(timeout=180)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # DDP keeps the parameters identical (BatchNorm running stats stay per rank until the next
    # forward broadcasts rank 0's).
    for name, value in load_trained_model(tmp_path / "last.pt")[0].named_parameters():
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.equal(rank0[name], value), name


def test_same_numbers_whatever_runs_beside_it(tmp_path):
    """Stages run as threads of one process: two Siamese trainings (dropout, random backbone)
    side by side, each with the global RNG disturbed meanwhile, equal the same run alone."""
    import threading

    images, labels = toy_set()
    config = dataclasses.replace(
        TINY, model=dataclasses.replace(TINY.model, kind="siamese", dropout=0.5)
    )
    alone = train_reid(config, images, labels, tmp_path / "alone", max_steps=3)
    results = {}

    def run(name: str) -> None:
        torch.manual_seed(len(name))  # what another stage in the process might do
        results[name] = train_reid(config, images, labels, tmp_path / name, max_steps=3)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second!")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results.values():
        assert result.losses == alone.losses
        for name, value in alone.model.state_dict().items():
            assert torch.equal(value, result.model.state_dict()[name]), name


def test_a_checkpoint_with_another_run_tag_is_not_resumed(tmp_path):
    images, labels = toy_set()
    train_reid(TINY, images, labels, tmp_path / "run", max_steps=2, run_tag="alpha3")
    switched = train_reid(TINY, images, labels, tmp_path / "run", max_steps=2, run_tag="alpha2")
    assert switched.resumed_at is None and switched.steps == 2
    assert load_checkpoint(switched.checkpoint)["run_tag"] == "alpha2"
    fresh = train_reid(TINY, images, labels, tmp_path / "fresh", max_steps=2, run_tag="alpha2")
    assert switched.losses == fresh.losses
    again = train_reid(TINY, images, labels, tmp_path / "run", max_steps=3, run_tag="alpha2")
    assert again.resumed_at == 2 and again.steps == 3


def test_checkpoints_by_time_as_well_as_by_steps(tmp_path):
    """A crash before the first step interval loses at most checkpoint_minutes of training."""
    images, labels = toy_set()

    def saved_steps(config, run_dir):
        seen = []

        def progress(done, total):  # called after each step, before its checkpoint
            path = run_dir / "last.pt"
            seen.append(load_checkpoint(path)["step"] if path.exists() else None)

        train_reid(config, images, labels, run_dir, max_steps=3, progress=progress)
        return seen

    assert saved_steps(TINY, tmp_path / "steps") == [None, None, None]
    overdue_at_once = dataclasses.replace(TINY, checkpoint_minutes=1e-9)
    assert saved_steps(overdue_at_once, tmp_path / "time") == [None, 1, 2]


def test_checkpoint_intervals_may_change_between_a_run_and_its_resume(tmp_path):
    images, labels = toy_set()
    train_reid(TINY, images, labels, tmp_path, max_steps=2, run_tag="t")
    every_step = dataclasses.replace(TINY, checkpoint_every=1, checkpoint_minutes=0.5, log_every=2)
    resumed = train_reid(every_step, images, labels, tmp_path, max_steps=3, run_tag="t")
    assert resumed.resumed_at == 2 and resumed.steps == 3
    with pytest.raises(ValueError, match="another config"):
        train_reid(dataclasses.replace(TINY, lr=0.02), images, labels, tmp_path, max_steps=4)


def test_warmup_then_steps():
    from reid.train import lr_schedule

    config = TrainConfig.bot()
    factor = lr_schedule(config, steps_per_epoch=10)
    assert factor(0) == pytest.approx(0.1)  # warmup starts at 0.1x
    assert factor(50) == pytest.approx(0.1 + 0.9 * 50 / 100)  # halfway through 10 epochs
    assert factor(100) == 1.0 and factor(399) == 1.0
    assert factor(400) == pytest.approx(0.1) and factor(700) == pytest.approx(0.01)
    assert lr_schedule(TINY, steps_per_epoch=10)(0) == 1.0  # no warmup by default


def test_bot_recipe_trains_with_pk_batches_and_triplet_loss(tmp_path):
    images, labels = toy_set(num_ids=4, per_id=6)
    config = TrainConfig.bot(
        model=ReIDModelConfig(kind="bot", arch="resnet18", pretrained=False, last_stride=1),
        **TOY_INPUT,
        instances_per_id=2,
        epochs=8,
        warmup_epochs=1,
        lr_milestones=(6,),
        lr=1e-3,
        log_every=1,
    )
    result = train_reid(config, images, labels, tmp_path, max_steps=24)
    losses = torch.tensor([loss for _, loss in result.losses])
    assert torch.isfinite(losses).all()
    assert losses[-6:].median() < 0.8 * losses[:4].mean()
    features = extract_features(result.model, images, size=(32, 16), normalize=True)
    assert features.shape == (24, 512)


def test_each_kind_gets_its_recipe():
    from reid.config import recipe

    assert recipe("bot", "ide_original") == TrainConfig.bot()
    ide = recipe("ide", "ide_original", seed=3)
    assert ide == TrainConfig.ide_original(seed=3) and ide.model.kind == "ide"
    assert recipe("siamese").model.kind == "siamese" and recipe("siamese").lr == TrainConfig().lr
