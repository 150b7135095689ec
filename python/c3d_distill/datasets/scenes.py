"""The synthetic set's videos frame by frame: a random actor (shape, texture, colours) moving by its class's
motion over a group's scene, distractors and sensor noise, rendered to RGB and to planar YUV 4:2:0.

Every video draws from its own ``numpy`` generator seeded by its job, so a video does not depend on which
worker renders it or when. RGB → YUV 4:2:0 is done here in exact integer arithmetic rather than by
swscale, whose SIMD paths differ between CPUs. Object positions snap to whole pixels, so a sprite that
only moves is rasterised once per video.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

# The class catalogue, in the order `classes=N` takes them: time-reversed pairs first, so that any even
# prefix of the pairs has identical single-frame statistics across each pair.
CLASSES = [
    "MoveLeft",
    "MoveRight",
    "MoveUp",
    "MoveDown",
    "RotateClockwise",
    "RotateAnticlockwise",
    "Grow",
    "Shrink",
    "Blink",
    "Bounce",
    "OrbitClockwise",
    "OrbitAnticlockwise",
    "Shake",
    "Pulse",
]

# Pairs of classes that are each other's time reverse: one frame, or the mean frame, cannot tell them apart.
REVERSE_PAIRS = [
    ("MoveLeft", "MoveRight"),
    ("MoveUp", "MoveDown"),
    ("RotateClockwise", "RotateAnticlockwise"),
    ("Grow", "Shrink"),
    ("OrbitClockwise", "OrbitAnticlockwise"),
]

SHAPES = ("square", "bar", "ellipse", "triangle", "cross")
TEXTURES = ("solid", "stripes", "checker", "halves")
EXTENT = 1.45  # a shape of size r stays inside a (2·EXTENT·r)² box at any angle
ACTOR_SIZE = (0.10, 0.16)  # the actor's base size r, as a fraction of the frame height
GROW_TOP = 1.5  # Grow, Shrink and Pulse reach at most GROW_TOP·r
ORBIT_RADIUS = (0.12, 0.3)  # as a fraction of the frame height, before clamping to the frame
# The narrowest frame (width / height) the motions fit in: the largest Grow/Pulse actor (2·1.45·0.24·h) and
# the largest actor on an orbit of the smallest radius (2·(1.45·0.16 + 0.12)·h) must fit across it. From
# this aspect up only the Orbit radius is ever clamped (to no less than its smallest draw); narrower frames
# are refused by _check_args.
MIN_WIDTH_PER_HEIGHT = 2 * max(EXTENT * ACTOR_SIZE[1] * GROW_TOP, EXTENT * ACTOR_SIZE[1] + ORBIT_RADIUS[0])


@dataclass(frozen=True)
class VideoJob:
    """One video to render: where it goes and what seeds it."""

    path: str
    class_name: str
    class_id: int  # position in CLASSES (stable when fewer classes are asked for)
    group: int  # 1-based, like UCF101's gXX
    clip: int  # 1-based, like UCF101's cYY
    seed: int
    width: int
    height: int
    fps: int
    duration: tuple[float, float]
    codec: str


# --------------------------------------------------------------------------------------------- drawing


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in the object's own frame, where the shape spans about [-1, 1]²."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.45)
    if shape == "ellipse":
        return u * u + (v / 0.55) ** 2 <= 1.0
    if shape == "triangle":  # pointing along +u, so its orientation is always visible
        return (u >= -0.7) & (np.abs(v) <= 0.8 * (1.0 - u) / 1.7)
    if shape == "cross":
        a, b = np.abs(u), np.abs(v)
        return ((a <= 1.0) & (b <= 0.3)) | ((a <= 0.3) & (b <= 0.8))
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """True where the second colour shows, in the object's own frame (so textures turn with it)."""
    if texture == "solid":
        return np.zeros(np.broadcast_shapes(u.shape, v.shape), bool)
    if texture == "stripes":
        return (np.floor(u / period) % 2 == 1) & np.ones_like(v, bool)
    if texture == "checker":
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 1
    if texture == "halves":
        return (u > 0) & np.ones_like(v, bool)
    raise ValueError(f"unknown texture {texture!r}")


@dataclass
class _Sprite:
    shape: str
    texture: str
    colour_a: np.ndarray  # (3,) uint8
    colour_b: np.ndarray  # (3,) uint8
    period: float  # texture period in object units
    # Rasters already drawn, by (size, angle, swap): most sprites only move, so one raster serves a video.
    rasters: dict = field(default_factory=dict, repr=False, compare=False)


def _raster(sprite: _Sprite, r: float, angle: float, swap: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(colours (2K+1, 2K+1, 3) uint8, inside (2K+1, 2K+1) bool, K): the sprite centred on a pixel centre."""
    key = (r, angle, swap)
    hit = sprite.rasters.get(key)
    if hit is not None:
        return hit
    k = int(math.ceil(EXTENT * r)) + 1
    d = np.arange(-k, k + 1, dtype=np.float32)
    xs, ys = d[None, :], d[:, None]
    c, s = math.cos(angle), math.sin(angle)
    u = (c * xs + s * ys) / r
    v = (-s * xs + c * ys) / r
    inside = _shape_mask(sprite.shape, u, v)
    second = _texture(sprite.texture, u, v, sprite.period)
    a, b = (sprite.colour_b, sprite.colour_a) if swap else (sprite.colour_a, sprite.colour_b)
    colours = np.where(second[..., None], b, a).astype(np.uint8)
    if len(sprite.rasters) >= 4:  # turning or scaling sprites: a new raster every frame, keep few
        sprite.rasters.clear()
    sprite.rasters[key] = (colours, inside, k)
    return colours, inside, k


def _draw(frame: np.ndarray, sprite: _Sprite, cx: float, cy: float, r: float, angle: float,
          swap: bool = False) -> tuple[int, int, int, int] | None:
    """Draw ``sprite`` into ``frame`` (H, W, 3) uint8, centred at (cx, cy) px (snapped to the pixel centre
    under it), size r px, turned by ``angle`` radians clockwise on screen (image y points down). ``swap``
    exchanges its two colours (blinking). Returns the rectangle written, (y0, y1, x0, x1), or None."""
    h, w = frame.shape[:2]
    colours, inside, k = _raster(sprite, r, angle, swap)
    ix, iy = math.floor(cx), math.floor(cy)
    x0, x1 = max(ix - k, 0), min(ix + k + 1, w)
    y0, y1 = max(iy - k, 0), min(iy + k + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    sy, sx = slice(y0 - iy + k, y1 - iy + k), slice(x0 - ix + k, x1 - ix + k)
    np.copyto(frame[y0:y1, x0:x1], colours[sy, sx], where=inside[sy, sx, None])
    return y0, y1, x0, x1


def _random_sprite(rng: np.random.Generator) -> _Sprite:
    a = rng.integers(0, 256, 3)
    b = rng.integers(0, 256, 3)
    if np.abs(a.astype(int) - b).sum() < 150:  # keep the texture visible, or rotation would be invisible
        b = 255 - a
    return _Sprite(
        shape=SHAPES[rng.integers(len(SHAPES))],
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        colour_a=a.astype(np.uint8),
        colour_b=b.astype(np.uint8),
        period=float(rng.uniform(0.3, 0.6)),
    )


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A scene: a two-colour linear gradient plus smooth blotches. (H, W, 3) uint8."""
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = rng.uniform(0, 255, 3).astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (math.cos(ang) * xx / w + math.sin(ang) * yy / h)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c1 + (c2 - c1) * t[..., None]
    # Low-frequency blotches: a coarse random grid, upsampled bilinearly.
    gh, gw = int(rng.integers(3, 8)), int(rng.integers(4, 10))
    grid = rng.uniform(-1, 1, (gh, gw, 3)).astype(np.float32) * rng.uniform(10, 45)
    gy = np.linspace(0, gh - 1, h, dtype=np.float32)
    gx = np.linspace(0, gw - 1, w, dtype=np.float32)
    iy, ix = np.minimum(gy.astype(int), gh - 2), np.minimum(gx.astype(int), gw - 2)
    fy, fx = (gy - iy)[:, None, None], (gx - ix)[None, :, None]
    top = grid[iy][:, ix] * (1 - fx) + grid[iy][:, ix + 1] * fx
    bot = grid[iy + 1][:, ix] * (1 - fx) + grid[iy + 1][:, ix + 1] * fx
    img += top * (1 - fy) + bot * fy
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- motions

def _room(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] for ``rng.uniform``, or, when hi < lo (an object wider than the frame: only a call of
    :func:`_motion` with a size that _check_args refuses), the middle twice. rng.uniform(a, a) still takes
    one draw, so the draws after it do not move, and a valid range is passed on untouched, so its draw is
    the same as before the clamp existed."""
    return (lo, hi) if hi >= lo else ((lo + hi) / 2,) * 2


def _span(rng: np.random.Generator, lo: float, hi: float, frac: tuple[float, float]) -> tuple[float, float]:
    """A start and an end inside [lo, hi], |end - start| = frac of the room, direction +; the start is
    uniform over the positions that keep the whole path inside, so a frame's position has the same
    distribution whichever way the path runs."""
    lo, hi = _room(lo, hi)
    length = rng.uniform(*frac) * (hi - lo)
    start = rng.uniform(*_room(lo, hi - length))  # (binds only if hi - length rounds below lo)
    return start, start + length


def _static(rng, n, w, h, r):
    m = EXTENT * r
    return np.full(n, rng.uniform(*_room(m, w - m))), np.full(n, rng.uniform(*_room(m, h - m)))


def _motion(name: str, rng: np.random.Generator, n: int, w: int, h: int, r: float, fps: float):
    """Class ``name``'s path for a clip of ``n`` frames in a w×h frame, base size r px: per-frame arrays
    (n,) of centre x, centre y (px, y down), size (px), angle (radians, clockwise on screen) and colour
    swap (bool). Everything except the motion itself is drawn from ``rng``."""
    t = np.arange(n, dtype=np.float64)
    ramp = t / max(n - 1, 1)
    size = np.full(n, r)
    angle = np.full(n, rng.uniform(0, 2 * math.pi))
    swap = np.zeros(n, bool)
    m = EXTENT * r
    if name in ("MoveLeft", "MoveRight"):
        a, b = _span(rng, m, w - m, (0.35, 0.8))
        if name == "MoveLeft":
            a, b = b, a
        x = a + (b - a) * ramp
        y = np.full(n, rng.uniform(*_room(m, h - m)))
    elif name in ("MoveUp", "MoveDown"):
        a, b = _span(rng, m, h - m, (0.4, 0.85))
        if name == "MoveUp":
            a, b = b, a
        y = a + (b - a) * ramp
        x = np.full(n, rng.uniform(*_room(m, w - m)))
    elif name in ("RotateClockwise", "RotateAnticlockwise"):
        x, y = _static(rng, n, w, h, r)
        omega = math.radians(rng.uniform(90, 270)) / fps  # per frame
        angle = angle + (1 if name == "RotateClockwise" else -1) * omega * t
    elif name in ("Grow", "Shrink", "Pulse"):
        lo, hi = r * rng.uniform(0.55, 0.75), r * rng.uniform(1.3, GROW_TOP)
        m = EXTENT * hi
        x, y = np.full(n, rng.uniform(*_room(m, w - m))), np.full(n, rng.uniform(*_room(m, h - m)))
        if name == "Pulse":
            period = rng.uniform(10, 24)
            phase = rng.uniform(0, 2 * math.pi)
            size = lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * math.pi * t / period + phase))
        else:
            size = lo + (hi - lo) * (ramp if name == "Grow" else 1 - ramp)
    elif name == "Blink":
        # The object swaps its two colours every few frames. It never vanishes: a frame without the object
        # would tell "Blink" on its own.
        x, y = _static(rng, n, w, h, r)
        half = int(rng.integers(3, 8))
        swap = ((t + rng.integers(0, 2 * half)) // half) % 2 == 1
    elif name == "Bounce":
        height = rng.uniform(0.35, 0.75) * (h - 2 * m)
        floor = h - m - rng.uniform(0, 0.2) * (h - 2 * m - height)
        period = rng.uniform(12, 26)
        phase = rng.uniform(0, period)
        y = floor - height * np.abs(np.sin(math.pi * (t + phase) / period))
        a, b = _span(rng, m, w - m, (0.0, 0.5))
        if rng.random() < 0.5:
            a, b = b, a
        x = a + (b - a) * ramp
    elif name in ("OrbitClockwise", "OrbitAnticlockwise"):
        # The radius is drawn as a fraction of the height, and a large one with a large actor (up to
        # 0.3·h + 0.232·h) does not fit in half the height: clamped so that the orbit just fits. Only the
        # draws that did not fit change; at MIN_WIDTH_PER_HEIGHT the clamped radius is still ≥ 0.12·h.
        radius = rng.uniform(*ORBIT_RADIUS) * h
        radius = max(min(radius, w / 2 - m, h / 2 - m), 0.0)
        cx = rng.uniform(*_room(m + radius, w - m - radius))
        cy = rng.uniform(*_room(m + radius, h - m - radius))
        omega = math.radians(rng.uniform(120, 300)) / fps
        phi = rng.uniform(0, 2 * math.pi) + (1 if name == "OrbitClockwise" else -1) * omega * t
        x, y = cx + radius * np.cos(phi), cy + radius * np.sin(phi)  # y down: growing phi is clockwise
    elif name == "Shake":
        amp = rng.uniform(0.05, 0.12) * w
        amp = max(min(amp, w / 2 - m), 0.0)  # never binds from MIN_WIDTH_PER_HEIGHT up
        cx = rng.uniform(*_room(m + amp, w - m - amp))
        period = rng.uniform(5, 12)
        x = cx + amp * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
        y = np.full(n, rng.uniform(*_room(m, h - m)))
    else:
        raise ValueError(f"unknown class {name!r}; known: {', '.join(CLASSES)}")
    return x, y, size, angle, swap


# --------------------------------------------------------------------------------------------- one video


# BT.601 limited range in 1/256 steps (the integer coefficients of FFmpeg's C path). The chroma rows are
# repeated because they act on a horizontal pair of pixels at once (see rgb_to_yuv420p).
_Y_COEF = np.array([66, 129, 25], np.float32)
_UV_COEF = np.array([[-38, 112], [-74, -94], [112, -18]] * 2, np.float32)


def rgb_to_planes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB, H and W even → Y (H, W), U (H/2, W/2), V (H/2, W/2) as float32 whole numbers,
    BT.601 limited range, chroma from the sum of each 2×2 block.

    Done in float32 with integer coefficients: every product and sum is an integer below 2**24, so the
    result is exact whatever order or fused multiply-add the BLAS kernel uses, i.e. the same on every CPU."""
    h, w = frame.shape[:2]
    x = frame.astype(np.float32)
    y = x @ _Y_COEF
    rows = x.reshape(h // 2, 2, w * 3)
    uv = (rows[:, 0] + rows[:, 1]).reshape(h // 2, w // 2, 6) @ _UV_COEF  # 2×2 block sums, then weights
    y += 128
    y *= 1 / 256
    np.floor(y, out=y)
    y += 16
    uv += 512
    uv *= 1 / 1024
    np.floor(uv, out=uv)
    uv += 128
    return y, uv[..., 0], uv[..., 1]


def rgb_to_yuv420p(frame: np.ndarray, luma_noise: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H·3/2, W) uint8 planar YUV 4:2:0 (Y rows, then U, then V, the layout
    ``av.VideoFrame.from_ndarray(..., format="yuv420p")`` takes; H a multiple of 4, W even), see
    :func:`rgb_to_planes`. ``luma_noise`` (H, W), whole numbers, is added to Y before it is clipped to
    0…255."""
    h, w = frame.shape[:2]
    y, u, v = rgb_to_planes(frame)
    if luma_noise is not None:
        y += luma_noise
        np.clip(y, 0, 255, out=y)
    out = np.empty((h * 3 // 2, w), np.uint8)
    out[:h] = y
    out[h:h + h // 4] = u.reshape(h // 4, w)
    out[h + h // 4:] = v.reshape(h // 4, w)
    return out


@lru_cache(maxsize=16)
def _group_scene(seed: int, group: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The background of a group, (H, W, 3) RGB and (H·3/2, W) YUV 4:2:0, both uint8, read-only. Cached:
    every class draws on the same scenes, and drawing one costs more than a dozen frames."""
    # The scene belongs to the group, across classes: a background says which group, never which class.
    rgb = _background(np.random.default_rng(np.random.SeedSequence([seed, 1, group])), h, w)
    yuv = rgb_to_yuv420p(rgb)
    rgb.flags.writeable = False
    yuv.flags.writeable = False
    return rgb, yuv


def _scene(job: VideoJob):
    """Everything random about one video, drawn from its own generator: (frame count, background RGB,
    background YUV, per-frame draw function, luma noise field (int16), per-frame noise offsets)."""
    w, h = job.width, job.height
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, 2, job.class_id, job.group, job.clip]))
    background, background_yuv = _group_scene(job.seed, job.group, h, w)

    n = int(round(rng.uniform(*job.duration) * job.fps))
    r = rng.uniform(*ACTOR_SIZE) * h
    sprite = _random_sprite(rng)
    x, y, size, angle, swap = _motion(job.class_name, rng, n, w, h, r, job.fps)

    # Distractors: smaller objects that drift slowly in random directions, drawn behind the actor.
    distractors = []
    for _ in range(int(rng.integers(0, 4))):
        rd = r * rng.uniform(0.25, 0.45)
        md = EXTENT * rd
        p0 = np.array([rng.uniform(*_room(md, w - md)), rng.uniform(*_room(md, h - md))])
        heading = rng.uniform(0, 2 * math.pi)
        vel = rng.uniform(0, 0.12) * h / job.fps * np.array([math.cos(heading), math.sin(heading)])
        distractors.append((_random_sprite(rng), p0, vel, rd, rng.uniform(0, 2 * math.pi)))

    # Sensor noise on the luma: one Gaussian field per video, a random window of it per frame (one add per
    # frame instead of drawing W·H normals per frame, which would cost more than the drawing).
    sigma = rng.uniform(0, 5)
    pad = 24
    noise = np.round(rng.standard_normal((h + pad, w + pad), dtype=np.float32) * sigma).astype(np.int16)
    offsets = rng.integers(0, pad + 1, (n, 2))

    def draw(i: int, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Draw frame i's objects onto ``frame`` (a copy of the background); the rectangles written."""
        rects = [_draw(frame, sp, px, py, rd, ang)
                 for sp, p0, vel, rd, ang in distractors for px, py in [p0 + vel * i]]
        rects.append(_draw(frame, sprite, float(x[i]), float(y[i]), float(size[i]), float(angle[i]),
                           bool(swap[i])))
        return [rect for rect in rects if rect is not None]

    return n, background, background_yuv, draw, noise, offsets


def render_rgb(job: VideoJob) -> Iterator[np.ndarray]:
    """The clean frames of one video (no sensor noise): (H, W, 3) uint8 RGB each."""
    n, background, _, draw, _, _ = _scene(job)
    for i in range(n):
        frame = background.copy()
        draw(i, frame)
        yield frame


def render(job: VideoJob) -> Iterator[np.ndarray]:
    """The frames of one video as the encoder gets them: (H·3/2, W) uint8 planar YUV 4:2:0 (Y rows, then
    U, then V), sensor noise on the luma, fully determined by the job's seeds. Equal to
    ``rgb_to_yuv420p(rgb frame, noise window)``, but only the rectangles the objects were drawn in are
    converted; the rest is the background's YUV, converted once."""
    n, background, background_yuv, draw, noise, offsets = _scene(job)
    h, w = job.height, job.width
    for i in range(n):
        frame = background.copy()
        out = background_yuv.copy()
        u_plane = out[h:h + h // 4].reshape(h // 2, w // 2)
        v_plane = out[h + h // 4:].reshape(h // 2, w // 2)
        for y0, y1, x0, x1 in draw(i, frame):
            y0, x0 = y0 & ~1, x0 & ~1  # whole 2×2 chroma blocks
            y1, x1 = min(y1 + (y1 & 1), h), min(x1 + (x1 & 1), w)
            py, pu, pv = rgb_to_planes(frame[y0:y1, x0:x1])
            out[y0:y1, x0:x1] = py
            u_plane[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = pu
            v_plane[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = pv
        oy, ox = offsets[i]
        luma = out[:h].astype(np.int16)
        luma += noise[oy:oy + h, ox:ox + w]
        np.clip(luma, 0, 255, out=luma)
        out[:h] = luma
        yield out
