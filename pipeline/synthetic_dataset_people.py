"""Rasterise synthetic people for :mod:`pipeline.synthetic_dataset`: looks, poses, body parts.

Everything is vectorised numpy over the pixel grid of one small image (128x64 by default): each
body part is a tapered capsule, an ellipse or a convex polygon painted back to front, so the LIP
parsing map falls out of the painter's order and the binary mask is exactly ``parsing != 0``.
All randomness comes from the ``numpy.random.Generator`` passed in, so a caller that seeds one
generator per image gets order-independent, byte-identical output. The camera scenes the people
stand in, and the rendering of a whole image, are :mod:`pipeline.synthetic_dataset_scene`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from storage import LIP_LABELS

_L = {name: index for index, name in enumerate(LIP_LABELS)}

# Small palettes on purpose: identities share colours, so Re-ID on this set is not trivial.
CLOTHES = np.array([
    (30, 30, 32), (70, 70, 76), (128, 128, 130), (222, 222, 216), (35, 45, 90), (60, 100, 170),
    (140, 170, 210), (170, 40, 45), (40, 80, 50), (170, 150, 110), (100, 70, 45),
    (210, 140, 160), (215, 190, 60), (100, 60, 120), (220, 120, 40),
], dtype=np.float32)  # fmt: skip
_CLOTHES_P = np.array([5, 4, 3, 4, 3, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1], dtype=np.float64)
_LOWER = CLOTHES[[0, 1, 2, 4, 5, 9, 10]]  # trousers: dark, denim and khaki tones
_SKIN = np.array([(235, 200, 170), (210, 165, 130), (170, 120, 90), (110, 75, 55)], np.float32)
_HAIR = np.array([(25, 20, 18), (60, 40, 28), (110, 75, 45), (200, 170, 110)], np.float32)
_HAIR_P = np.array([5, 3, 1, 1], dtype=np.float64)
OUTFITS = ("shirt_pants", "shirt_shorts", "shirt_skirt", "dress", "coat_pants", "jumpsuit")
PATTERNS = ("plain", "hstripes", "vstripes", "checks")
VIEWS = ("front", "back", "side")

Colour = tuple[float, float, float]
Point = tuple[float, float]  # (x, y) in pixels


@dataclass(frozen=True)
class Look:
    """Identity-specific appearance, shared by every image of one identity."""

    height: float  # relative body height (scales the whole figure)
    build: float  # relative body width
    skin: Colour
    hair: Colour
    upper: Colour
    upper2: Colour  # second colour of a striped or checked upper garment
    lower: Colour
    shoes: Colour
    accent: Colour  # hat, scarf and socks
    outfit: str  # one of OUTFITS
    pattern: str  # one of PATTERNS
    period: float  # pattern period as a fraction of the body height
    long_sleeves: bool
    long_hair: bool
    hat: bool
    sunglasses: bool
    scarf: bool
    socks: bool


@dataclass(frozen=True)
class Pose:
    """Per-image placement and articulation of the figure."""

    view: str  # one of VIEWS
    facing: int  # side view: +1 walks towards the image right, -1 towards the left
    phase: float  # walking phase in radians: legs and arms swing with sin(phase)
    cx: float  # body centre x in pixels
    foot_y: float  # ground line y in pixels
    size: float  # body height in pixels


def pick(
    rng: np.random.Generator,
    palette: NDArray[np.float32],
    p: NDArray | None = None,
    jitter: float = 6.0,
) -> Colour:
    """One palette colour with a small identity-specific jitter."""
    weights = None if p is None else p / p.sum()
    base = palette[rng.choice(len(palette), p=weights)]
    r, g, b = np.clip(base + rng.normal(0.0, jitter, 3), 0, 255)
    return (float(r), float(g), float(b))


def sample_look(rng: np.random.Generator) -> Look:
    """Draw an identity's appearance: clothing colours, pattern, build, hair, accessories."""
    outfit = OUTFITS[rng.choice(len(OUTFITS), p=[0.34, 0.14, 0.12, 0.1, 0.2, 0.1])]
    upper = pick(rng, CLOTHES, _CLOTHES_P)
    return Look(
        height=float(rng.uniform(0.9, 1.04)),
        build=float(rng.uniform(0.85, 1.2)),
        skin=pick(rng, _SKIN, jitter=8.0),
        hair=pick(rng, _HAIR, _HAIR_P),
        upper=upper,
        upper2=pick(rng, CLOTHES),
        lower=pick(rng, _LOWER),
        shoes=pick(rng, CLOTHES[[0, 1, 3, 10]]),
        accent=pick(rng, CLOTHES),
        outfit=outfit,
        pattern=PATTERNS[rng.choice(len(PATTERNS), p=[0.5, 0.25, 0.1, 0.15])],
        period=float(rng.uniform(0.025, 0.05)),
        long_sleeves=bool(outfit in ("coat_pants", "jumpsuit") or rng.random() < 0.45),
        long_hair=bool(rng.random() < 0.35),
        hat=bool(rng.random() < 0.2),
        sunglasses=bool(rng.random() < 0.1),
        scarf=bool(rng.random() < 0.1),
        socks=bool(rng.random() < 0.5),
    )


class Canvas:
    """Painter's-algorithm layers: label map, flat colour and a shading factor per pixel."""

    def __init__(self, height: int, width: int) -> None:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.yy, self.xx = yy + 0.5, xx + 0.5  # pixel centres
        self.label = np.zeros((height, width), np.uint8)
        self.base = np.zeros((height, width, 3), np.float32)
        self.shade = np.ones((height, width), np.float32)

    def _window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Pixel rows/columns covering the box [x0, x1] x [y0, y1]; None when off-image."""
        height, width = self.label.shape
        rows = slice(max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, height))
        cols = slice(max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, width))
        return (rows, cols) if rows.start < rows.stop and cols.start < cols.stop else None

    def paint(
        self,
        window: tuple[slice, slice],
        region: NDArray[np.bool_],
        shade: NDArray[np.float32],
        label: str,
        colour: Colour,
    ) -> None:
        """Set label, flat colour and shading on ``region`` of ``window`` (covers earlier parts)."""
        self.label[window][region] = _L[label]
        self.base[window][region] = colour
        self.shade[window][region] = shade[region]

    def capsule(
        self, p0: Point, p1: Point, r0: float, r1: float, label: str, colour: Colour
    ) -> None:
        """Segment p0-p1 with a radius tapering from r0 to r1 (a limb), cylinder-shaded."""
        r_max = max(r0, r1)
        window = self._window(min(p0[0], p1[0]) - r_max, max(p0[0], p1[0]) + r_max,
                              min(p0[1], p1[1]) - r_max, max(p0[1], p1[1]) + r_max)  # fmt: skip
        if window is None:
            return
        vx, vy = p1[0] - p0[0], p1[1] - p0[1]
        dx, dy = self.xx[window] - p0[0], self.yy[window] - p0[1]
        t = np.clip((dx * vx + dy * vy) / max(vx * vx + vy * vy, 1e-6), 0.0, 1.0)
        d = np.hypot(dx - t * vx, dy - t * vy)
        r = r0 + t * (r1 - r0)
        self.paint(window, d <= r, 1.0 - 0.35 * (d / r) ** 2, label, colour)

    def ellipse(
        self,
        c: Point,
        rx: float,
        ry: float,
        label: str,
        colour: Colour,
        below: float = -np.inf,
        above: float = np.inf,
    ) -> None:
        """Axis-aligned ellipse, optionally clipped to ``below <= y < above``."""
        top, bottom = max(c[1] - ry, below), min(c[1] + ry, above)
        window = self._window(c[0] - rx, c[0] + rx, top, bottom)
        if window is None:
            return
        xx, yy = self.xx[window], self.yy[window]
        q = ((xx - c[0]) / rx) ** 2 + ((yy - c[1]) / ry) ** 2
        region = (q <= 1.0) & (yy >= below) & (yy < above)
        self.paint(window, region, 1.0 - 0.3 * q, label, colour)

    def polygon(self, pts: list[Point], label: str, colour: Colour) -> None:
        """Convex polygon (vertices in order), shaded across its horizontal extent."""
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        window = self._window(min(xs), max(xs), min(ys), max(ys))
        if window is None:
            return
        xx, yy = self.xx[window], self.yy[window]
        pos = np.ones(xx.shape, dtype=bool)
        neg = np.ones_like(pos)
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
            cross = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)
            pos &= cross >= 0
            neg &= cross <= 0
        mid, half = (max(xs) + min(xs)) / 2, max((max(xs) - min(xs)) / 2, 1.0)
        shade = 1.0 - 0.3 * ((xx - mid) / half) ** 2
        self.paint(window, pos | neg, shade, label, colour)  # either winding order


def _lerp(a: Point, b: Point, t: float) -> Point:
    return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))


def _trapezoid(
    cx: float, half_top: float, y_top: float, half_bottom: float, y_bottom: float
) -> list[Point]:
    return [(cx - half_top, y_top), (cx + half_top, y_top), (cx + half_bottom, y_bottom),
            (cx - half_bottom, y_bottom)]  # fmt: skip


def _chain(
    root: Point, l1: float, l2: float, a1: float, a2: float, f: float
) -> tuple[Point, Point]:
    """Two-segment limb from ``root``; angles from the downward vertical, ``f`` flips x."""
    mid = (root[0] + f * l1 * np.sin(a1), root[1] + l1 * np.cos(a1))
    return mid, (mid[0] + f * l2 * np.sin(a2), mid[1] + l2 * np.cos(a2))


@dataclass(frozen=True)
class _Body:
    """Geometry of one drawn figure, in pixels."""

    p: float  # body height
    cx: float  # torso centre line
    top: float  # head top
    sw: float  # shoulder half width
    hw: float  # hip half width

    def y(self, frac: float) -> float:
        """Row ``frac`` of the body height below the head top."""
        return self.top + frac * self.p


Limb = tuple[str, Point, Point, Point]  # (side, root, middle joint, end joint)


def _screen_side(side: str, pose: Pose) -> float:
    """Image x direction (+1 right) of the person's left/right in a front or back view."""
    left_x = 1.0 if pose.view == "front" else -1.0  # facing the camera mirrors left and right
    return left_x if side == "left" else -left_x


def _far_first(limbs: list[Limb], pose: Pose) -> list[Limb]:
    """Drawing order: in a side view the limb away from the camera comes first."""
    near = "right" if pose.facing > 0 else "left"  # walking right shows the right flank
    return sorted(limbs, key=lambda limb: pose.view == "side" and limb[0] == near)


def _legs(look: Look, pose: Pose, top: float) -> list[Limb]:
    """(side, hip, knee, ankle) per leg, far leg first; legs swing with the walking phase."""
    p, legs = pose.size, []
    for side, ph in (("left", pose.phase), ("right", pose.phase + np.pi)):
        if pose.view == "side":
            hip, thigh = (pose.cx, top + 0.52 * p), 0.42 * np.sin(ph)
            bend = 0.8 * max(0.0, np.cos(ph))  # the knee folds while the leg swings forward
            knee, ankle = _chain(hip, 0.225 * p, 0.215 * p, thigh, thigh - bend, pose.facing)
        else:
            s = _screen_side(side, pose)
            hip = (pose.cx + s * 0.045 * p * look.build, top + 0.52 * p)
            lift = 1.0 - 0.13 * max(0.0, np.cos(ph))  # the swinging leg is foreshortened
            knee, ankle = _chain(hip, 0.225 * p * lift, 0.215 * p * lift, 0.04, 0.02, s)
        legs.append((side, hip, knee, ankle))
    return _far_first(legs, pose)


def _arms(pose: Pose, body: _Body) -> list[Limb]:
    """(side, shoulder, elbow, wrist) per arm, far arm first; arms swing against the legs."""
    p, arms = body.p, []
    for side, ph in (("left", pose.phase + np.pi), ("right", pose.phase)):
        if pose.view == "side":
            sh, swing = (body.cx, body.y(0.205)), 0.45 * np.sin(ph)
            bend = 0.25 + 0.35 * max(0.0, np.sin(ph))  # the elbow bends more in front
            elbow, wrist = _chain(sh, 0.16 * p, 0.15 * p, swing, swing + bend, pose.facing)
        else:
            s = _screen_side(side, pose)
            sh = (body.cx + s * (body.sw - 0.03 * p), body.y(0.205))
            fs = 1.0 - 0.12 * abs(np.sin(ph))  # foreshortened when swung towards/away
            elbow, wrist = _chain(sh, 0.16 * p * fs, 0.15 * p * fs, 0.14, 0.08, s)
        arms.append((side, sh, elbow, wrist))
    return _far_first(arms, pose)


def _upper(look: Look) -> tuple[str, Colour]:
    """Label and colour of the upper garment (torso and sleeves)."""
    label = {"dress": "dress", "coat_pants": "coat", "jumpsuit": "jumpsuits"}
    return label.get(look.outfit, "upper-clothes"), look.upper


def _lower(look: Look) -> tuple[str, Colour]:
    """Label and colour of the lower garment (a dress has none of its own)."""
    if look.outfit == "jumpsuit":
        return "jumpsuits", look.upper
    return ("skirt" if look.outfit == "shirt_skirt" else "pants"), look.lower


def draw_person(canvas: Canvas, look: Look, pose: Pose) -> None:
    """Paint one person back to front onto ``canvas`` (labels, flat colours, shading)."""
    p, side_view = pose.size, pose.view == "side"
    top = pose.foot_y - p
    top += pose.foot_y - 0.045 * p - max(leg[3][1] for leg in _legs(look, pose, top))
    legs = _legs(look, pose, top)  # now the lower foot stands on the ground line
    width = (0.075, 0.065) if side_view else (0.12, 0.09)  # side view: narrow torso
    cx = pose.cx + (0.01 * p * pose.facing if side_view else 0.0)
    body = _Body(p, cx, top, width[0] * p * look.build, width[1] * p * look.build)
    arms = _arms(pose, body)
    if side_view:  # the far arm is behind the torso
        _arm(canvas, look, body, *arms.pop(0))
    for leg in legs:
        _leg(canvas, look, pose, body, *leg)
    _torso(canvas, look, body)
    for arm in arms:
        _arm(canvas, look, body, *arm)
    if look.pattern != "plain" and look.outfit != "jumpsuit":
        _pattern(canvas, look, body)
    _head(canvas, look, pose, body)


def _leg(canvas: Canvas, look: Look, pose: Pose, body: _Body, side: str, hip: Point,
         knee: Point, ankle: Point) -> None:  # fmt: skip
    """Bare leg, sock, shoe (pointing forward in a side view) and trouser leg."""
    p, r = body.p, 0.045 * body.p * look.build
    canvas.capsule(hip, knee, r, 0.75 * r, f"{side}-leg", look.skin)
    canvas.capsule(knee, ankle, 0.75 * r, 0.55 * r, f"{side}-leg", look.skin)
    trousers = look.outfit in ("shirt_pants", "coat_pants", "jumpsuit")
    if look.socks and not trousers:
        sock = (ankle[0], ankle[1] - 0.05 * p)
        canvas.capsule(sock, ankle, 0.6 * r, 0.6 * r, "socks", look.accent)
    toe = pose.facing * p if pose.view == "side" else 0.0
    heel, tip = (
        (ankle[0] - 0.01 * toe, ankle[1] + 0.02 * p),
        (ankle[0] + 0.05 * toe, ankle[1] + 0.025 * p),
    )
    canvas.capsule(heel, tip, 0.022 * p, 0.018 * p, f"{side}-shoe", look.shoes)
    if trousers or look.outfit == "shirt_shorts":
        label, colour = _lower(look)
        canvas.capsule(
            hip, knee if trousers else _lerp(hip, knee, 0.6), 1.2 * r, 0.9 * r, label, colour
        )
        if trousers:
            canvas.capsule(knee, ankle, 0.9 * r, 0.72 * r, label, colour)


def _arm(canvas: Canvas, look: Look, body: _Body, side: str, sh: Point, elbow: Point,
         wrist: Point) -> None:  # fmt: skip
    """Bare arm with hand (LIP counts hands as arm) and a long or short sleeve."""
    r, label = 0.03 * body.p * look.build, f"{side}-arm"
    canvas.capsule(sh, elbow, r, 0.85 * r, label, look.skin)
    canvas.capsule(elbow, wrist, 0.85 * r, 0.7 * r, label, look.skin)
    canvas.ellipse((wrist[0], wrist[1] + 0.02 * body.p), 0.7 * r, 0.03 * body.p, label, look.skin)
    if look.long_sleeves:
        canvas.capsule(sh, elbow, 1.15 * r, 0.95 * r, *_upper(look))
        canvas.capsule(elbow, wrist, 0.95 * r, 0.85 * r, *_upper(look))
    else:
        canvas.capsule(sh, _lerp(sh, elbow, 0.55), 1.15 * r, r, *_upper(look))


def _torso(canvas: Canvas, look: Look, body: _Body) -> None:
    """Seat of the trousers, neck, skirt / coat tail / dress hem, then the upper garment."""
    cx, sw, hw, y, p = body.cx, body.sw, body.hw, body.y, body.p
    if look.outfit not in ("dress", "shirt_skirt"):
        canvas.polygon(_trapezoid(cx, hw, y(0.47), 0.8 * hw, y(0.6)), *_lower(look))
    # LIP has no neck class; SCHP labels the neck as face.
    canvas.capsule((cx, y(0.13)), (cx, y(0.2)), 0.03 * p, 0.035 * p, "face", look.skin)
    hems = {"shirt_skirt": (0.68, 1.5), "dress": (0.72, 1.6), "coat_pants": (0.72, 1.25)}
    if look.outfit in hems:
        hem, flare = hems[look.outfit]
        part = _lower(look) if look.outfit == "shirt_skirt" else _upper(look)
        canvas.polygon(_trapezoid(cx, hw, y(0.46), flare * hw, y(hem)), *part)
    canvas.polygon(_trapezoid(cx, sw, y(0.2), hw, y(0.5)), *_upper(look))
    shoulder = (cx - sw + 0.035 * p, y(0.205)), (cx + sw - 0.035 * p, y(0.205))
    canvas.capsule(*shoulder, 0.035 * p, 0.035 * p, *_upper(look))  # rounded shoulders


def _pattern(canvas: Canvas, look: Look, body: _Body) -> None:
    """Stripes or checks in ``look.upper2`` on every pixel of the upper garment."""
    period = look.period * body.p
    rows = np.floor((canvas.yy - body.y(0.2)) / period).astype(int) % 2
    cols = np.floor((canvas.xx - body.cx) / period).astype(int) % 2
    stripes = {"hstripes": rows, "vstripes": cols, "checks": rows ^ cols}[look.pattern]
    canvas.base[(canvas.label == _L[_upper(look)[0]]) & (stripes == 1)] = look.upper2


def _head(canvas: Canvas, look: Look, pose: Pose, body: _Body) -> None:
    """Hair, face (hidden by hair in a back view), hat, sunglasses and scarf."""
    f, view, cx, y, p = pose.facing, pose.view, body.cx, body.y, body.p
    rx, ry, hy = 0.05 * p, 0.065 * p, y(0.075)
    back = -f * 0.15 * rx if view == "side" else 0.0  # the skull extends behind the face
    if look.long_hair and view != "back":
        for x in [cx + 3 * back] if view == "side" else [cx - 0.85 * rx, cx + 0.85 * rx]:
            canvas.capsule((x, hy), (x, y(0.25)), 0.3 * rx, 0.35 * rx, "hair", look.hair)
    canvas.ellipse((cx + back, hy - 0.01 * p), 1.08 * rx, ry, "hair", look.hair)
    if view != "back":
        face = (cx + (f * 0.25 * rx if view == "side" else 0.0), hy + 0.012 * p)
        fringe = y(0.045) if look.long_hair or view == "side" else y(0.04)
        canvas.ellipse(face, 0.9 * rx, 0.88 * ry, "face", look.skin, below=fringe)
    elif look.long_hair:
        canvas.polygon(_trapezoid(cx, rx, hy, 0.9 * rx, y(0.3)), "hair", look.hair)
    if look.hat:
        crown = (cx, hy - 0.02 * p)
        canvas.ellipse(crown, 1.12 * rx, 0.8 * ry, "hat", look.accent, above=hy - 0.015 * p)
        peak = f * 0.6 * rx if view == "side" else 0.0  # a cap's peak points forward
        brim = (cx - 1.1 * rx + peak, hy - 0.015 * p), (cx + 1.1 * rx + peak, hy - 0.015 * p)
        canvas.capsule(*brim, 0.012 * p, 0.012 * p, "hat", look.accent)
    if look.sunglasses and view != "back":
        x0, x1 = (-0.6 * rx, 0.6 * rx) if view == "front" else sorted((f * 0.4 * rx, f * rx))
        glasses = (cx + x0, hy + 0.005 * p), (cx + x1, hy + 0.005 * p)
        canvas.capsule(*glasses, 0.012 * p, 0.012 * p, "sunglasses", (20.0, 20.0, 24.0))
    if look.scarf:
        scarf = (cx - 0.7 * rx, y(0.17)), (cx + 0.7 * rx, y(0.17))
        canvas.capsule(*scarf, 0.022 * p, 0.022 * p, "scarf", look.accent)
