"""SANConfig: the paper's presets (section 4.2), derived sizes and validation."""

import pytest

from san_model.config import SANConfig


def test_market1501_preset_matches_section_4_2() -> None:
    config = SANConfig.market1501()
    assert config.image_size == (128, 64) and config.batch_size == 32 and config.epochs == 300
    assert (config.alpha, config.beta, config.gamma) == (10, 15, 5)
    assert config.lr == 2e-4 and config.betas == (0.5, 0.999) and config.num_blocks == 5
    assert config.perceptual_layer == "relu1_2" and config.epoch_length == 4000
    assert config.total_steps == 300 * 4000 // 32


def test_deepfashion_preset_matches_section_4_2() -> None:
    config = SANConfig.deepfashion()
    assert config.image_size == (256, 256) and config.batch_size == 8 and config.epochs == 500
    assert (config.alpha, config.beta, config.gamma) == (15, 1, 5)
    assert config.total_steps == 500 * 4000 // 8
    # PATN trains DeepFashion without an image pool (--pool_size 0), Market-1501 with 50.
    assert config.pool_size == 0 and SANConfig.market1501().pool_size == 50


def test_ablation_channel_counts() -> None:
    assert (SANConfig().appearance_channels, SANConfig().semantic_channels) == (24, 21)
    no_mask = SANConfig(use_mask_inputs=False)
    assert (no_mask.appearance_channels, no_mask.semantic_channels) == (23, 20)


def test_dict_round_trip_restores_tuples() -> None:
    config = SANConfig.deepfashion(perceptual_layer="relu4_1", seed=7)
    as_dict = config.to_dict()
    as_dict["image_size"] = list(as_dict["image_size"])  # as a JSON/YAML round trip gives
    assert SANConfig.from_dict(as_dict) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_size": (100, 64)}, "divisible"),
        ({"perceptual_layer": "relu9_9"}, "perceptual_layer"),
        ({"num_blocks": 0}, "num_blocks"),
        ({"batch_size": 0}, "positive"),
    ],
)
def test_invalid_settings_are_rejected(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SANConfig.market1501(**overrides)
