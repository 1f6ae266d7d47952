"""SAN training: exact resume, checkpoints, LR schedule, sampling, outputs, DDP on Gloo."""

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from san_model.checkpoint import load_checkpoint, load_generator
from san_model.config import SANConfig
from san_model.generator import generate
from san_model.train import PairSampler, SANTrainData, train_san


def make_data(config: SANConfig, images: int = 10, pairs: int = 24, seed: int = 0) -> SANTrainData:
    rng = np.random.default_rng(seed)
    height, width = config.image_size
    return SANTrainData(
        images=rng.integers(0, 256, (images, height, width, 3), dtype=np.uint8),
        masks=rng.integers(0, 2, (images, height, width), dtype=np.uint8),
        parsing=rng.integers(0, 20, (images, height, width), dtype=np.uint8),
        pairs=rng.integers(0, images, (pairs, 2), dtype=np.int64),
    )


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_continues_exactly(tmp_path: Path) -> None:
    config = SANConfig.tiny()
    data = make_data(config)
    straight = train_san(config, data, tmp_path / "straight", max_steps=4, pretrained_vgg=False)
    half = train_san(config, data, tmp_path / "split", max_steps=2, pretrained_vgg=False)
    assert half.step == 2
    resumed = train_san(
        config, data, tmp_path / "split", resume=True, max_steps=4, pretrained_vgg=False
    )
    assert straight.step == resumed.step == 4
    a, b = load_checkpoint(straight.run_dir), load_checkpoint(resumed.run_dir)
    for part in ("generator", "discriminator"):
        assert_same_state(a[part], b[part])
    for part in ("opt_g", "opt_d"):
        for index, state in a[part]["state"].items():
            assert_same_state(state, b[part]["state"][index])
    assert torch.equal(a["sampler_rng"], b["sampler_rng"])
    assert straight.losses == resumed.losses
    # Non-trivial: the steps after the resume changed the weights and the losses.
    assert half.losses != straight.losses
    fresh = train_san(config, data, tmp_path / "fresh", max_steps=2, pretrained_vgg=False)
    weights = load_checkpoint(fresh.run_dir)["generator"]
    assert any(not torch.equal(weights[k], a["generator"][k]) for k in weights)


def test_cpu_training_runs_on_one_thread_whatever_the_callers_count(tmp_path: Path) -> None:
    """The steps run on one intra-op thread (foundation.cpu), so a run resumed under another
    thread count still continues the uninterrupted run exactly; the caller's count comes back."""
    config = SANConfig.tiny()
    data = make_data(config)
    before = torch.get_num_threads()
    seen: set[int] = set()

    def progress(done: int, total: int) -> None:
        seen.add(torch.get_num_threads())

    try:
        torch.set_num_threads(2)
        straight = train_san(
            config, data, tmp_path / "straight", max_steps=4, pretrained_vgg=False,
            progress=progress,
        )  # fmt: skip
        assert torch.get_num_threads() == 2
        train_san(config, data, tmp_path / "split", max_steps=2, pretrained_vgg=False)
        torch.set_num_threads(1)
        resumed = train_san(
            config, data, tmp_path / "split", resume=True, max_steps=4, pretrained_vgg=False
        )
    finally:
        torch.set_num_threads(before)
    assert seen == {1}
    a, b = load_checkpoint(straight.run_dir), load_checkpoint(resumed.run_dir)
    for part in ("generator", "discriminator"):
        assert_same_state(a[part], b[part])
    assert straight.losses == resumed.losses


def test_checkpoint_contents_and_linear_lr_decay(tmp_path: Path) -> None:
    config = SANConfig.tiny()
    result = train_san(config, make_data(config), tmp_path, max_steps=4, pretrained_vgg=False)
    assert result.total_steps == config.total_steps == 2 * 16 // 4
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert state["step"] == 4
    assert SANConfig.from_dict(state["config"]) == config
    expected_lr = config.lr * (1 - 4 / config.total_steps)  # halfway down the linear decay
    for optimizer in ("opt_g", "opt_d"):
        group = state[optimizer]["param_groups"][0]
        assert group["lr"] == pytest.approx(expected_lr)
        assert tuple(group["betas"]) == (0.5, 0.999)
    assert set(result.losses) == {"g_total", "g_adversarial", "g_l1", "g_perceptual", "d"}
    assert all(np.isfinite(value) for value in result.losses.values())
    assert result.pairs_per_second > 0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))  # atomic write left no temp


def test_sample_grid_png_is_written(tmp_path: Path) -> None:
    from PIL import Image

    config = SANConfig.tiny(sample_interval=2)
    train_san(config, make_data(config), tmp_path, max_steps=2, pretrained_vgg=False)
    grid = np.asarray(Image.open(tmp_path / "samples" / "step_0000002.png"))
    assert grid.shape == (4 * 64, 4 * 32, 3)  # 4 rows of source | pose | generated | truth


def test_whole_schedule_is_the_default_and_rerun_with_resume_is_a_no_op(tmp_path: Path) -> None:
    config = SANConfig.tiny(epochs=1, epoch_length=8)  # 2 steps
    data = make_data(config)
    first = train_san(config, data, tmp_path, pretrained_vgg=False)
    assert first.step == first.total_steps == 2
    again = train_san(config, data, tmp_path, resume=True, pretrained_vgg=False)
    assert again.step == 2 and again.losses == {}


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    config = SANConfig.tiny(use_perceptual=False)
    data = make_data(config)
    train_san(config, data, tmp_path, max_steps=1)
    with pytest.raises(ValueError, match="lr"):
        train_san(replace(config, lr=1e-3), data, tmp_path, resume=True, max_steps=2)
    # Logging intervals may change between a run and its continuation.
    resumed = train_san(replace(config, log_interval=1), data, tmp_path, resume=True, max_steps=2)
    assert resumed.step == 2


def test_load_generator_returns_trained_weights_in_eval_mode(tmp_path: Path) -> None:
    config = SANConfig.tiny(use_perceptual=False)
    data = make_data(config)
    train_san(config, data, tmp_path, max_steps=1)
    generator, loaded_config = load_generator(tmp_path, device="cpu")
    assert loaded_config == config and not generator.training
    assert_same_state(generator.state_dict(), load_checkpoint(tmp_path)["generator"])
    images = torch.as_tensor(data.images[:2])
    masks, parsing = torch.as_tensor(data.masks[:2]), torch.as_tensor(data.parsing[:2])
    output = generate(generator, images, masks, parsing, masks.flip(0), parsing.flip(0))
    assert output.shape == (2, 64, 32, 3) and output.dtype == torch.uint8


def test_sampler_shards_one_global_batch_across_ranks() -> None:
    data = make_data(SANConfig.tiny(), pairs=50)
    single = PairSampler(data, batch_size=8, seed=3)
    ranks = [PairSampler(data, batch_size=8, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(3):
        whole = single.next_pairs()
        parts = [sampler.next_pairs() for sampler in ranks]
        assert torch.equal(parts[0], whole[0::2]) and torch.equal(parts[1], whole[1::2])
    with pytest.raises(ValueError, match="divisible"):
        PairSampler(data, batch_size=7, seed=0, world_size=2)


def test_gather_returns_the_indexed_arrays() -> None:
    data = make_data(SANConfig.tiny())
    sampler = PairSampler(data, batch_size=2, seed=0)
    batch = sampler.gather(torch.tensor([[3, 7], [1, 1]]), torch.device("cpu"))
    assert np.array_equal(batch.source_image.numpy(), data.images[[3, 1]])
    assert np.array_equal(batch.target_parsing.numpy(), data.parsing[[7, 1]])
    assert np.array_equal(batch.target_mask.numpy(), data.masks[[7, 1]])


def test_train_data_is_validated() -> None:
    data = make_data(SANConfig.tiny())
    with pytest.raises(ValueError, match="uint8"):
        replace(data, images=data.images.astype(np.float32))
    with pytest.raises(ValueError, match="pair indices"):
        replace(data, pairs=np.array([[0, 10]]))
    with pytest.raises(ValueError, match="masks"):
        replace(data, masks=data.masks[:, :-1])


def test_train_san_rejects_data_that_does_not_fit_the_config(tmp_path: Path) -> None:
    config = SANConfig.tiny(use_perceptual=False)
    data = make_data(config)
    with pytest.raises(ValueError, match="config says"):
        train_san(SANConfig.tiny(image_size=(32, 32)), data, tmp_path, max_steps=1)
    wrong_labels = replace(data, parsing=np.full_like(data.parsing, 20))
    with pytest.raises(ValueError, match="parsing_classes"):
        train_san(config, wrong_labels, tmp_path, max_steps=1)
    assert not (tmp_path / "checkpoints").exists()


DDP_RANK = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
from san_model.config import SANConfig
from san_model.train import SANTrainData, train_san
config = SANConfig.tiny(use_perceptual=False)  # the test is about the group, not the loss
rng = np.random.default_rng(0)
h, w = config.image_size
data = SANTrainData(images=rng.integers(0, 256, (8, h, w, 3), dtype=np.uint8),
                    masks=rng.integers(0, 2, (8, h, w), dtype=np.uint8),
                    parsing=rng.integers(0, 20, (8, h, w), dtype=np.uint8),
                    pairs=rng.integers(0, 8, (16, 2), dtype=np.int64))
assert train_san(config, data, {run_dir!r}, max_steps=2).step == 2
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ddp_two_cpu_processes_on_gloo(tmp_path: Path) -> None:
    """Two gloo ranks in fresh processes with the environment torchrun gives its workers
    (forking the test process instead breaks once other tests have started threads)."""
    run_dir = tmp_path / "run"
    script = tmp_path / "rank.py"
    script.write_text(
        DDP_RANK.format(root=str(Path(__file__).resolve().parents[2]), run_dir=str(run_dir))
    )
    port = str(free_port())
    ranks = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={
                **os.environ,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "WORLD_SIZE": "2",
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "OMP_NUM_THREADS": "1",
            },
        )
        for rank in range(2)
    ]
    assert [rank.wait(timeout=300) for rank in ranks] == [0, 0]
    state = load_checkpoint(run_dir)
    assert state["step"] == 2
    # Only rank 0 writes: one event file, one sample grid.
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1
    assert [p.name for p in (run_dir / "samples").iterdir()] == ["step_0000002.png"]


def test_resume_with_a_full_image_pool_continues_exactly(tmp_path: Path) -> None:
    config = SANConfig.tiny(use_perceptual=False, pool_size=3)  # full after the first step
    data = make_data(config)
    straight = train_san(config, data, tmp_path / "straight", max_steps=4)
    train_san(config, data, tmp_path / "split", max_steps=2)
    resumed = train_san(config, data, tmp_path / "split", resume=True, max_steps=4)
    a, b = load_checkpoint(straight.run_dir), load_checkpoint(resumed.run_dir)
    assert_same_state(a["generator"], b["generator"])
    assert torch.equal(a["image_pool"]["images"], b["image_pool"]["images"])
    assert a["image_pool"]["images"].shape[0] == 3


def test_discriminator_sees_real_and_fake_pairs_in_separate_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """PATN's backward_D_basic: every D forward holds one kind of pair, so its BatchNorm
    normalises real and fake batches separately in the D step as in the G step."""
    from san_model.discriminator import SANDiscriminator

    config = SANConfig.tiny(use_perceptual=False, pool_size=0)
    data = make_data(config)
    targets = {bytes(image) for image in data.images}
    kinds: list[set[bool]] = []
    original = SANDiscriminator.forward

    def spy(self, source, candidate):  # type: ignore[no-untyped-def]
        from san_model.generator import tensor_to_images

        rows = tensor_to_images(candidate).numpy()
        kinds.append({bytes(row) in targets for row in rows})
        return original(self, source, candidate)

    monkeypatch.setattr(SANDiscriminator, "forward", spy)
    train_san(config, data, tmp_path, max_steps=2)
    assert len(kinds) == 2 * 3  # per step: G's pass on fakes, D's real pass, D's fake pass
    assert all(len(kind) == 1 for kind in kinds)  # never real and fake in one batch
    assert [next(iter(kind)) for kind in kinds] == [False, True, False] * 2


def test_initial_weights_come_from_the_config_seed_not_the_global_rng() -> None:
    from san_model.discriminator import build_discriminator
    from san_model.generator import build_generator

    config = SANConfig.tiny()
    torch.manual_seed(1)
    first = build_generator(config=config).state_dict(), build_discriminator(config=config)
    torch.manual_seed(2)
    second = build_generator(config=config).state_dict(), build_discriminator(config=config)
    assert_same_state(first[0], second[0])
    assert_same_state(first[1].state_dict(), second[1].state_dict())
    other = build_generator(config=replace(config, seed=1)).state_dict()
    assert not torch.equal(other["to_image.0.weight"], first[0]["to_image.0.weight"])
