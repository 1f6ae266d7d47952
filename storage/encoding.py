"""Per-image encodings of the store's image arrays (format 2): one self-describing element each.

An element is the bytes of one image, recognised by its first bytes:

- ``FF D8 FF``: a JPEG file kept verbatim (ingest of a JPEG already at the store's size). It
  decodes with libjpeg-turbo (simplejpeg) to the pixels PIL gives (same library, same
  settings: islow DCT, fancy upsampling; checked on every real Market-1501 image, see
  BENCHMARKS.md), and takes no more room than the source file.
- ``AMG1``: an RGB image stored losslessly (generated images, resized or non-JPEG sources,
  migrated format-1 stores). The planar gradient residual ``x[i, j] - x[i, j-1] - x[i-1, j] +
  x[i-1, j-1]`` (mod 256) of each channel, red and blue taken relative to green, compressed
  with zstd level 3: measured on Market-1501 photos at 2.2-2.6x smaller than raw pixels,
  decoding 3x faster than PNG or lossless WebP of similar size (BENCHMARKS.md, "Storage").
- ``AML1``: a label map (masks {0, 1}, parsing 0..19), zstd level 9 of the raw bytes: about
  200 bytes per 128x64 map (40x smaller than raw), decoded at about 20,000 maps/s on one
  thread; level 9 encodes 3x slower than level 3 but 25-30% smaller, and label maps are
  written far slower than that by the networks that make them.

Decoders write into a caller's buffer (no extra copy) and release the GIL in their C parts,
so a thread pool decodes in parallel.
"""

from __future__ import annotations

import numpy as np
import simplejpeg
from numcodecs import Zstd

JPEG_MAGIC = b"\xff\xd8\xff"
RGB_MAGIC = b"AMG1"
LABELS_MAGIC = b"AML1"
_ZSTD = Zstd(level=3)
_ZSTD_LABELS = Zstd(level=9)


class EncodingError(ValueError):
    """An element that is not one of the store's encodings, or not of the expected size."""


def jpeg_size(data: bytes) -> tuple[int, int, str]:
    """(height, width, colorspace) from a JPEG's header, without decoding it.

    Raises:
        EncodingError: not a readable JPEG header.
    """
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise EncodingError(f"not a readable JPEG ({error})") from None
    return int(height), int(width), str(colorspace)


def decode_jpeg(data: bytes, out: np.ndarray | None = None) -> np.ndarray:
    """JPEG bytes -> RGB uint8 [H, W, 3] (into ``out`` when given; strict: a truncated or
    corrupt file raises instead of returning grey padding).

    Raises:
        ValueError: unreadable data (libjpeg-turbo's message).
    """
    if out is None:
        return np.asarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))
    simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
    return out


def keeps_verbatim(data: bytes, size: tuple[int, int]) -> bool:
    """Whether a source file is stored as it is: a complete JPEG of ``size`` (height, width)
    in a colour space that libjpeg-turbo turns into RGB the way PIL does (grey or YCbCr/RGB,
    not CMYK). Decodes it once, strictly: a truncated file is not kept (PIL may still read it,
    and its pixels are then stored losslessly)."""
    if not data.startswith(JPEG_MAGIC):
        return False
    try:
        height, width, colorspace = jpeg_size(data)
        if (height, width) != tuple(size) or colorspace in ("CMYK", "YCCK"):
            return False
        decode_jpeg(data)
    except ValueError:  # EncodingError is one
        return False
    return True


def encode_rgb(image: np.ndarray) -> bytes:
    """RGB uint8 [H, W, 3] -> ``AMG1`` element (lossless)."""
    planes = np.ascontiguousarray(image.transpose(2, 0, 1))  # [3, H, W]
    residual = planes.copy()
    residual[:, :, 1:] -= planes[:, :, :-1]  # horizontal difference
    residual[:, 1:, :] -= residual[:, :-1, :].copy()  # then vertical: the gradient residual
    residual[0] -= residual[1]  # red and blue relative to green
    residual[2] -= residual[1]
    return RGB_MAGIC + bytes(_ZSTD.encode(residual))


def encode_labels(labels: np.ndarray) -> bytes:
    """uint8 [H, W] label map -> ``AML1`` element (lossless)."""
    return LABELS_MAGIC + bytes(_ZSTD_LABELS.encode(np.ascontiguousarray(labels)))


def _zstd_into(payload: memoryview, nbytes: int) -> np.ndarray:
    raw = np.frombuffer(_ZSTD.decode(payload), np.uint8)
    if raw.size != nbytes:
        raise EncodingError(f"element holds {raw.size} bytes, expected {nbytes}")
    return raw


def _frame_content_size(frame: memoryview) -> int | None:
    """The decompressed size a zstd frame header declares (None when absent or not zstd)."""
    if len(frame) < 6 or bytes(frame[:4]) != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = frame[4]
    single_segment = bool(descriptor & 0x20)
    position = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03]
    size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    if size_bytes == 0 or len(frame) < position + size_bytes:
        return None
    value = int.from_bytes(frame[position : position + size_bytes], "little")
    return value + 256 if size_bytes == 2 else value


def decode_label_maps(elements: list[bytes], out: np.ndarray) -> np.ndarray:
    """Decode ``AML1`` elements into ``out`` (C-contiguous uint8 ``[len, H, W]``) in one zstd
    call: the frames are joined and decompressed back to back, 5-7x faster than one call per
    128x64 map. Each frame's declared size is checked first (zstd checks the data against it).

    Raises:
        EncodingError: an element that is not ``AML1`` or holds another size.
    """
    item = out[0].size if len(out) else 0
    payloads = []
    for element in elements:
        payload = memoryview(element)[4:]
        if bytes(element[:4]) != LABELS_MAGIC or _frame_content_size(payload) != item:
            raise EncodingError(f"not a label element of {item} bytes")
        payloads.append(payload)
    if payloads:
        _ZSTD.decode(b"".join(payloads), out=out)
    return out


def decode_element(data: bytes, out: np.ndarray) -> np.ndarray:
    """Decode one element into ``out`` ([H, W, 3] for images, [H, W] for label maps).

    Raises:
        EncodingError: unknown encoding, or another size than ``out``'s.
        ValueError: a damaged JPEG.
    """
    head = bytes(data[:4])
    if head.startswith(JPEG_MAGIC):
        if out.ndim != 3:
            raise EncodingError("a JPEG element in a label array")
        return decode_jpeg(data, out)
    if head == RGB_MAGIC:
        if out.ndim != 3:
            raise EncodingError("an RGB element in a label array")
        height, width, channels = out.shape
        raw = _zstd_into(memoryview(data)[4:], out.size).reshape(channels, height, width)
        planes = raw.copy()
        planes[0] += planes[1]
        planes[2] += planes[1]
        np.cumsum(planes, axis=1, dtype=np.uint8, out=planes)
        np.cumsum(planes, axis=2, dtype=np.uint8, out=planes)
        out[...] = planes.transpose(1, 2, 0)
        return out
    if head == LABELS_MAGIC:
        out[...] = _zstd_into(memoryview(data)[4:], out.size).reshape(out.shape)
        return out
    raise EncodingError(f"unknown element encoding (first bytes {head!r})")
