"""Camera scenes and effects for :mod:`pipeline.synthetic_dataset`, and one whole image.

Each of the dataset's cameras has a fixed background scene and imaging characteristics
(exposure, colour cast, blur, noise), drawn from the dataset's seed (:func:`camera`); an image
is a crop of its camera's scene, a person placed in it (:func:`sample_pose`, drawn by
:func:`pipeline.synthetic_dataset_people.draw_person`), a shadow, and the camera's effects
(:func:`render`). Vectorised numpy; all randomness comes from the generators passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from pipeline.synthetic_dataset_people import (
    CLOTHES,
    VIEWS,
    Canvas,
    Look,
    Pose,
    draw_person,
    pick,
)

_CAMERA_STREAM = 7  # RNG stream id, distinct from pipeline.synthetic_dataset's image streams
_SCENE_MARGIN = 0.25  # the camera scene is larger than a box by this fraction on every side


@dataclass(frozen=True, eq=False)
class Camera:
    """Fixed per-camera scene and imaging characteristics."""

    scene: NDArray[np.float32]  # [H + 2m, W + 2m, 3] background, RGB 0..255
    gain: float  # global exposure
    cast: NDArray[np.float32]  # [3] per-channel colour multipliers
    blur: float  # Gaussian sigma in pixels
    noise: float  # additive Gaussian noise std in 0..255 units


@lru_cache(maxsize=64)
def camera(seed: int, cam: int, height: int, width: int) -> Camera:
    """The fixed scene and imaging parameters of camera ``cam`` (deterministic per seed)."""
    rng = np.random.default_rng([seed, _CAMERA_STREAM, cam])
    m = int(round(_SCENE_MARGIN * height))
    h, w = height + 2 * m, width + 2 * m
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = rng.uniform(0.35, 0.7) * h
    wall, floor = (np.array(pick(rng, CLOTHES[[1, 2, 3, 9, 10]], jitter=20.0)) for _ in "wf")
    grad = (1.0 + rng.uniform(-0.25, 0.25) * (yy / h - 0.5))[..., None]
    scene = np.where((yy < horizon)[..., None], wall, floor) * grad
    for _ in range(int(rng.integers(3, 8))):  # windows, doors, signs, parked things
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        region = (xx >= x0) & (xx < x0 + rng.uniform(4, w / 3)) & (yy >= y0)
        scene[region & (yy < y0 + rng.uniform(4, h / 3))] = pick(rng, CLOTHES, jitter=25.0)
    depth = np.maximum(yy - horizon, 0.0) ** 1.2  # floor tiles widen towards the camera
    scene[(np.abs(np.sin(depth / rng.uniform(2, 5))) < 0.15) & (yy > horizon)] *= 0.85
    scene += 8.0 * ndimage.gaussian_filter(rng.normal(0.0, 1.0, (h, w)), 1.5)[..., None]
    return Camera(
        scene=np.clip(scene, 0, 255).astype(np.float32),
        gain=float(rng.uniform(0.8, 1.15)),
        cast=rng.uniform(0.88, 1.12, 3).astype(np.float32),
        blur=float(rng.uniform(0.35, 0.9)),
        noise=float(rng.uniform(1.5, 4.0)),
    )


def sample_pose(
    rng: np.random.Generator, look: Look, height: int, width: int, kind: str
) -> Pose | None:
    """Placement for ``kind`` "person" (a detector-style box), "junk" (badly cropped or tiny)
    or "distractor" (background only half the time, else a fragment of a body)."""
    view = VIEWS[rng.choice(3, p=[0.35, 0.35, 0.3])]
    facing, phase = int(rng.choice([-1, 1])), float(rng.uniform(0, 2 * np.pi))
    if kind == "distractor" and rng.random() < 0.5:
        return None
    if kind == "person":
        size = height * min(rng.uniform(0.8, 0.97) * look.height, 0.99)
        cx, foot = width / 2 + rng.normal(0, 2.5), height - rng.uniform(0.5, 5)
    elif kind == "junk":
        size = height * rng.uniform(0.45, 1.4)
        cx, foot = width * rng.uniform(0.1, 0.9), height * rng.uniform(0.6, 1.3)
    else:
        size = height * rng.uniform(1.5, 2.3)
        cx, foot = width * rng.uniform(0.2, 0.8), height * rng.uniform(0.8, 2.0)
    return Pose(view, facing, phase, float(cx), float(foot), float(size))


def render(
    rng: np.random.Generator, look: Look, cam: Camera, height: int, width: int, kind: str = "person"
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """One image and its parsing.

    Returns ``image: [H, W, 3] uint8 RGB`` and ``parsing: [H, W] uint8`` LIP labels 0..19;
    the person mask is exactly ``parsing != 0``.
    """
    m = (cam.scene.shape[0] - height) // 2
    oy, ox = rng.integers(0, 2 * m + 1, 2)
    background = cam.scene[oy : oy + height, ox : ox + width].copy()
    canvas = Canvas(height, width)
    if rng.random() < 0.3:  # passing clutter: a bag, a pole, part of another object
        x0, y0 = rng.uniform(-8, width), rng.uniform(0, height)
        box = (canvas.xx >= x0) & (canvas.xx < x0 + rng.uniform(3, 20)) & (canvas.yy >= y0)
        background[box] = pick(rng, CLOTHES, jitter=20.0)
    pose = sample_pose(rng, look, height, width, kind)
    light = 1.0
    if pose is not None:
        draw_person(canvas, look, pose)
        shadow = ((canvas.xx - pose.cx) / (0.2 * pose.size)) ** 2 + (
            (canvas.yy - pose.foot_y) / (0.03 * pose.size)
        ) ** 2
        background *= (1.0 - 0.35 * np.exp(-shadow))[..., None]
        light = 1.0 + rng.uniform(-0.15, 0.15) * (canvas.xx - pose.cx)[..., None] / width
    person = canvas.base * canvas.shade[..., None] * light
    image = np.where((canvas.label > 0)[..., None], person, background)
    image *= cam.gain * rng.uniform(0.85, 1.15) * cam.cast * rng.uniform(0.96, 1.04, 3)
    sigma = max(cam.blur + rng.normal(0, 0.1), 0.2)
    image = ndimage.gaussian_filter(image, (sigma, sigma, 0))
    image += rng.normal(0, cam.noise, image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8), canvas.label
