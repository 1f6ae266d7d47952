"""Element encodings: lossless round trips, JPEG verbatim equals PIL, what is kept verbatim."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from storage.encoding import (
    EncodingError,
    decode_element,
    decode_label_maps,
    encode_labels,
    encode_rgb,
    jpeg_size,
    keeps_verbatim,
)


def _jpeg(image: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def test_lossless_round_trips_on_extreme_values():
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (13, 7, 3), dtype=np.uint8),  # noise: worst case for the predictor
        np.full((5, 9, 3), 255, np.uint8),
        np.zeros((1, 1, 3), np.uint8),
    ]
    for image in images:
        element = encode_rgb(image)
        assert element[:4] == b"AMG1"
        np.testing.assert_array_equal(decode_element(element, np.empty_like(image)), image)
    labels = rng.integers(0, 20, (11, 6), dtype=np.uint8)
    element = encode_labels(labels)
    assert element[:4] == b"AML1"
    np.testing.assert_array_equal(decode_element(element, np.empty_like(labels)), labels)


def test_smooth_images_compress():
    ramp = np.broadcast_to(np.arange(128, dtype=np.uint8)[:, None, None], (128, 64, 3))
    assert len(encode_rgb(np.ascontiguousarray(ramp))) < 200  # raw: 24,576 bytes


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_jpeg_decodes_as_pil(mode, subsampling):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (24, 16, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=87, subsampling=subsampling)
    data = buffer.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    out = np.empty((24, 16, 3), np.uint8)
    np.testing.assert_array_equal(decode_element(data, out), expected)
    assert jpeg_size(data)[:2] == (24, 16)


def test_what_is_kept_verbatim():
    image = np.zeros((8, 4, 3), np.uint8)
    assert keeps_verbatim(_jpeg(image), (8, 4))
    assert not keeps_verbatim(_jpeg(image), (4, 8)), "another size is resized, not kept"
    cmyk = io.BytesIO()
    Image.fromarray(image).convert("CMYK").save(cmyk, format="JPEG")
    assert not keeps_verbatim(cmyk.getvalue(), (8, 4)), "CMYK: libjpeg-turbo gives no RGB"
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    assert not keeps_verbatim(png.getvalue(), (8, 4))
    assert not keeps_verbatim(b"\xff\xd8\xff not really", (8, 4))


def test_bad_elements_are_refused():
    with pytest.raises(EncodingError, match="unknown element encoding"):
        decode_element(b"GIF89a....", np.empty((2, 2, 3), np.uint8))
    with pytest.raises(EncodingError, match="expected 12"):
        decode_element(encode_rgb(np.zeros((2, 3, 3), np.uint8)), np.empty((2, 2, 3), np.uint8))
    with pytest.raises(EncodingError, match="label array"):
        decode_element(encode_rgb(np.zeros((2, 2, 3), np.uint8)), np.empty((2, 2), np.uint8))
    truncated = _jpeg(np.full((16, 16, 3), 90, np.uint8))[:-40]
    with pytest.raises(ValueError):
        decode_element(truncated, np.empty((16, 16, 3), np.uint8))


def test_a_label_map_of_another_size_is_refused():
    element = encode_labels(np.ones((5, 7), np.uint8))
    for shape in ((5, 8), (5, 6)):
        with pytest.raises(EncodingError, match="expected"):
            decode_element(element, np.empty(shape, np.uint8))


def test_label_maps_decode_in_one_call_and_check_each_frame():
    maps = [np.full((4, 3), value, np.uint8) for value in range(5)]
    out = np.empty((5, 4, 3), np.uint8)
    np.testing.assert_array_equal(decode_label_maps([encode_labels(m) for m in maps], out), maps)
    mixed = [encode_labels(maps[0]), encode_labels(np.zeros((4, 4), np.uint8))]
    with pytest.raises(EncodingError, match="not a label element of 12 bytes"):
        decode_label_maps(mixed, np.empty((2, 4, 3), np.uint8))
    with pytest.raises(EncodingError, match="not a label element"):
        decode_label_maps([encode_rgb(np.zeros((4, 1, 3), np.uint8))], out[:1])


def test_large_buffers_are_ordinary_zeroed_writable_memory():
    from storage.elements import zeroed

    for shape in ((4, 8, 3), (700, 128, 64, 3)):  # below and above the mmap threshold
        buffer = zeroed(shape)
        assert buffer.shape == shape and buffer.dtype == np.uint8 and not buffer.any()
        buffer[-1] = 7
        assert buffer[-1].min() == 7 and buffer.sum() == 7 * np.prod(shape[1:])
