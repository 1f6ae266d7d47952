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
from reid.models import ReIDModelConfig
from reid.train import (
    TrainConfig,
    _augment,
    _Sampler,
    extract_features,
    load_trained_model,
    train_reid,
)

TINY = TrainConfig(
    model=ReIDModelConfig(arch="resnet18", pretrained=False),
    height=32,
    width=16,
    pad=2,
    batch_size=8,
    epochs=4,
    lr_milestones=(2,),
    lr=0.01,
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


def test_siamese_sampler_pairs():
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    config = dataclasses.replace(TINY, batch_size=24, positive_fraction=0.5)
    sampler = _Sampler(targets, config, siamese=True)
    indices, same = sampler(0)
    assert same is not None and len(indices) == 2 * len(same) == 24
    anchors, partners = indices[:12], indices[12:]
    assert sorted(anchors.tolist()) == list(range(12))  # one epoch = every image as an anchor
    assert torch.equal(targets[anchors] == targets[partners], same)
    assert bool((anchors[same] != partners[same]).all())  # positives are other images
    assert 0 < int(same.sum()) < 12
    again, _ = sampler(0)
    assert torch.equal(again, indices)  # a pure function of (seed, step)


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
    assert losses[-4:].mean() < 0.6 * losses[:4].mean()
    features = extract_features(
        result.model, images, batch_size=10, size=(32, 16), flip=True, normalize=True
    )
    assert features.shape == (24, 512)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(24))
    similarity = features @ features.T
    same = labels[:, None] == labels[None, :]
    assert similarity[same].mean() > similarity[~same].mean()


DDP_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {root!r})
from reid.models import ReIDModelConfig
from reid.train import TrainConfig, train_reid
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
