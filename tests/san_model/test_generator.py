"""SAN generator: shapes per stage, output range, gradient flow, ablations, eq. 1-3."""

import pytest
import torch

from san_model.blocks import SemanticAttentionBlock
from san_model.config import SANConfig
from san_model.generator import (
    build_generator,
    generate,
    images_to_tensor,
    parsing_to_one_hot,
    tensor_to_images,
)

# Parameters of the paper-size generator (ngf 64, T = 5, 24/21 input channels); it does not
# depend on the image size. Printed by test_paper_size_parameter_count.
PAPER_GENERATOR_PARAMETERS = 43_743_619


def random_inputs(config: SANConfig, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    height, width = config.image_size
    image = torch.rand(batch, 3, height, width, generator=gen) * 2 - 1
    labels = torch.randint(0, config.parsing_classes, (2, batch, height, width), generator=gen)
    masks = (torch.rand(2, batch, 1, height, width, generator=gen) > 0.5).float()
    return (
        image,
        masks[0],
        parsing_to_one_hot(labels[0], config.parsing_classes),
        masks[1],
        parsing_to_one_hot(labels[1], config.parsing_classes),
    )


@pytest.mark.parametrize("size", [(128, 64), (256, 256)])
def test_shapes_after_each_stage(size: tuple[int, int]) -> None:
    config = SANConfig.tiny(image_size=size)
    height, width = size
    generator = build_generator(config=config)
    inputs = random_inputs(config)
    code = 4 * config.ngf
    with torch.no_grad():
        appearance, semantic = generator.encode(*inputs)
        assert appearance.shape == semantic.shape == (2, code, height // 4, width // 4)
        for block in generator.blocks:
            appearance, semantic = block(appearance, semantic)
            assert appearance.shape == semantic.shape == (2, code, height // 4, width // 4)
        for pyramid, x in ((generator.conv_a, appearance), (generator.conv_s, semantic)):
            features = pyramid(x)
            assert [f.shape for f in features] == [
                (2, 8 * config.ngf, height // 8, width // 8),
                (2, 8 * config.ngf, height // 16, width // 16),
                (2, 8 * config.ngf, height // 32, width // 32),
            ]
        output = generator(*inputs)
    assert output.shape == (2, 3, height, width)
    assert output.dtype == torch.float32


def test_output_is_tanh_bounded_and_finite() -> None:
    config = SANConfig.tiny()
    generator = build_generator(config=config)
    scaled = [x * 50 for x in random_inputs(config)]  # large inputs push tanh to saturation
    output = generator(*scaled)
    assert torch.isfinite(output).all()
    assert output.min() >= -1 and output.max() <= 1
    assert output.abs().max() > 0.5  # not a constant/dead output


def test_input_channels_follow_the_paper() -> None:
    generator = build_generator(config=SANConfig.tiny())
    assert generator.appearance_encoder.layers[0][0].in_channels == 24  # 3 + 1 + 20
    assert generator.semantic_encoder.layers[0][0].in_channels == 21  # 1 + 20
    assert generator.appearance_encoder.layers[0][0].kernel_size == (7, 7)
    assert [layer[0].stride for layer in generator.appearance_encoder.layers] == [
        (1, 1),
        (2, 2),
        (2, 2),
    ]


def test_paper_size_parameter_count() -> None:
    market = build_generator(config=SANConfig.market1501())
    deepfashion = build_generator(config=SANConfig.deepfashion())
    no_mask = build_generator(config=SANConfig.market1501(use_mask_inputs=False))
    count = sum(p.numel() for p in market.parameters())
    print(f"SAN generator parameters (ngf 64, T 5): {count:,}")
    assert count == PAPER_GENERATOR_PARAMETERS
    assert sum(p.numel() for p in deepfashion.parameters()) == count
    # Dropping the mask channel removes one 7x7x64 input slice from each pathway's first conv.
    assert count - sum(p.numel() for p in no_mask.parameters()) == 2 * 7 * 7 * 64
    assert len(market.blocks) == 5


def test_gradients_reach_every_parameter() -> None:
    config = SANConfig.tiny()
    generator = build_generator(config=config)
    target = torch.rand(2, 3, *config.image_size) * 2 - 1
    torch.nn.functional.l1_loss(generator(*random_inputs(config)), target).backward()
    for name, parameter in generator.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_without_mask_inputs_ignores_masks() -> None:
    for use_masks in (False, True):
        config = SANConfig.tiny(use_mask_inputs=use_masks)
        generator = build_generator(config=config).eval()
        assert generator.appearance_encoder.layers[0][0].in_channels == 23 + use_masks
        assert generator.semantic_encoder.layers[0][0].in_channels == 20 + use_masks
        image, s_mask, s_parsing, t_mask, t_parsing = random_inputs(config)
        with torch.no_grad():
            a = generator(image, s_mask, s_parsing, t_mask, t_parsing)
            b = generator(image, 1 - s_mask, s_parsing, 1 - t_mask, t_parsing)
        assert torch.equal(a, b) != use_masks


@pytest.mark.parametrize("num_blocks", [1, 3])
def test_number_of_blocks_is_a_setting(num_blocks: int) -> None:
    config = SANConfig.tiny(num_blocks=num_blocks)
    generator = build_generator(config=config)
    assert len(generator.blocks) == num_blocks
    assert generator(*random_inputs(config)).shape == (2, 3, *config.image_size)


def test_attention_lies_in_unit_interval() -> None:
    block = SemanticAttentionBlock(8)
    with torch.no_grad():  # large logits: the sigmoid must still stay within [0, 1]
        block.attention_layers[-1].weight.mul_(1000)
    semantic = torch.randn(3, 8, 6, 5)
    attention = block.attention(semantic)
    assert attention.shape == semantic.shape
    assert attention.min() >= 0 and attention.max() <= 1
    assert attention.min() < 0.01 and attention.max() > 0.99  # both ends are reached


@pytest.mark.parametrize(("bias", "weight"), [(-1e4, 0.0), (0.0, 0.5), (1e4, 1.0)])
def test_eq2_residual_and_eq3_update_on_hand_made_block(bias: float, weight: float) -> None:
    block = SemanticAttentionBlock(4).eval()
    last = block.attention_layers[-1]
    with torch.no_grad():  # constant attention: M = sigmoid(bias) = 0, 0.5 or 1
        last.weight.zero_()
        last.bias.fill_(bias)
    appearance, semantic = torch.randn(2, 2, 4, 3, 5).unbind(0)
    with torch.no_grad():
        new_appearance, new_semantic = block(appearance, semantic)
        expected_semantic = block.semantic_update(torch.cat([semantic, new_appearance], dim=1))
    # allclose, not torch.testing: importing that costs 2.5 s per test session
    assert torch.allclose(new_appearance, weight * semantic + appearance, atol=1e-6)  # eq. 2
    assert torch.equal(new_semantic, expected_semantic)  # eq. 3


def test_parsing_one_hot_golden() -> None:
    labels = torch.tensor([[[0, 3], [19, 3]]], dtype=torch.uint8)
    one_hot = parsing_to_one_hot(labels, 20)
    assert one_hot.shape == (1, 20, 2, 2)
    assert torch.equal(one_hot.sum(dim=1), torch.ones(1, 2, 2))
    assert one_hot[0, 3, 0, 1] == 1 and one_hot[0, 3, 1, 1] == 1 and one_hot[0, 19, 1, 0] == 1
    assert torch.equal(one_hot.argmax(dim=1), labels.long())
    with pytest.raises(ValueError, match="num_classes"):
        parsing_to_one_hot(torch.full((1, 2, 2), 20, dtype=torch.uint8), 20)


def test_image_conversion_round_trips() -> None:
    images = torch.arange(256, dtype=torch.uint8).repeat(3, 1).T.reshape(1, 16, 16, 3)
    as_float = images_to_tensor(images)
    assert as_float.shape == (1, 3, 16, 16)
    assert as_float.min() == -1 and as_float.max() == 1
    assert torch.equal(tensor_to_images(as_float), images)


def test_generate_takes_and_returns_stored_layout() -> None:
    config = SANConfig.tiny()
    generator = build_generator(config=config).eval()
    height, width = config.image_size
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (3, height, width, 3), dtype=torch.uint8, generator=gen)
    masks = torch.randint(0, 2, (3, height, width), dtype=torch.uint8, generator=gen) * 255
    parsing = torch.randint(0, 20, (3, height, width), dtype=torch.uint8, generator=gen)
    output = generate(generator, images, masks, parsing, masks.flip(0), parsing.flip(0))
    assert output.shape == (3, height, width, 3) and output.dtype == torch.uint8
    with torch.no_grad():
        reference = generator(
            images_to_tensor(images),
            (masks > 0).float().unsqueeze(1),
            parsing_to_one_hot(parsing),
            (masks.flip(0) > 0).float().unsqueeze(1),
            parsing_to_one_hot(parsing.flip(0)),
        )
    assert torch.equal(output, tensor_to_images(reference))
