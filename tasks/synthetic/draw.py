"""Procedural portraits for the synthetic world.

An entity's identity is the combination of four visual attributes (head shape, palette, texture,
accessory). A *rendering* draws that identity with nuisance variation (pose, scale, shift, colour
jitter, background, pixel noise), so a model must recognise the attribute combination rather than
memorise pixels to answer about unseen renderings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 32
# Drawn at 4x and downsampled: cheap anti-aliasing keeps small textures readable at 32 px.
_SUPER = 4

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
# Secondary (pattern) colour is dark for every palette: it keeps the outline readable against
# the light background, so the shape stays recognisable under every pattern.
_DARK = (35, 35, 35)
PALETTES = {
    # name: (primary, secondary) RGB
    "red": ((215, 40, 40), _DARK),
    "green": ((40, 170, 60), _DARK),
    "blue": ((50, 90, 225), _DARK),
    "purple": ((150, 60, 190), _DARK),
    "orange": ((245, 150, 20), _DARK),
}
TEXTURES = ("solid", "stripes", "dots", "checks")
ACCESSORIES = ("none", "hat", "band", "antenna")
BACKDROPS = {"grey": (212, 212, 212), "sky": (180, 205, 240), "sand": (238, 222, 165), "rose": (240, 190, 205)}


@dataclass(frozen=True)
class Look:
    """The visual identity of an entity (or a utility picture)."""

    shape: str
    palette: str
    texture: str
    accessory: str
    backdrop: str = "grey"


@dataclass(frozen=True)
class Nuisance:
    """Per-rendering variation: everything that must NOT change the answer."""

    angle: float  # degrees
    scale: float
    dx: float  # pixels at IMAGE_SIZE
    dy: float
    jitter: tuple[int, int, int]
    background: int  # brightness offset of the backdrop
    noise: float  # std of Gaussian pixel noise
    noise_seed: int


def draw_nuisance(rng: np.random.Generator, strength: float = 1.0) -> Nuisance:
    """Sample rendering variation; ``strength`` scales every range (0 = canonical view)."""
    s = strength
    return Nuisance(
        angle=float(rng.uniform(-10, 10) * s),
        scale=float(1.0 + rng.uniform(-0.12, 0.08) * s),
        dx=float(rng.uniform(-2.5, 2.5) * s),
        dy=float(rng.uniform(-2.5, 2.5) * s),
        jitter=tuple(int(v) for v in rng.integers(-18, 19, size=3) * s),
        background=int(rng.integers(-20, 21) * s),
        noise=float(rng.uniform(2, 9) * s),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "cross":
        w = 0.38  # half-width of each bar, relative to r
        base = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w),
                (-1, w), (-w, w), (-w, 1)]
        a = math.radians(angle)
        ca, sa = math.cos(a), math.sin(a)
        return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in base]
    n, offset = {"square": (4, 45), "triangle": (3, -90), "diamond": (4, 0)}[shape]
    pts = []
    for i in range(n):
        a = math.radians(offset + angle + 360.0 * i / n)
        rr = r * (1.12 if shape == "triangle" else 1.0)
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        d.polygon(_polygon(shape, cx, cy, r, angle), fill=255)
    return mask


def _texture(texture: str, size: int, primary, secondary, angle: float) -> Image.Image:
    img = Image.new("RGB", (size, size), primary)
    if texture == "solid":
        return img
    d = ImageDraw.Draw(img)
    step = size // 8
    if texture == "stripes":
        for y in range(0, size, step):
            d.rectangle([0, y, size, y + step // 2 - 1], fill=secondary)
    elif texture == "dots":
        r = step * 0.28
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                d.ellipse([x - r, y - r, x + r, y + r], fill=secondary)
    elif texture == "checks":
        for y in range(0, size, step):
            for x in range(0, size, step):
                if ((x // step) + (y // step)) % 2 == 0:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=secondary)
    else:  # pragma: no cover - guarded by the attribute lists
        raise ValueError(f"unknown texture {texture!r}")
    return img.rotate(angle, resample=Image.Resampling.NEAREST)


def _jitter(rgb, j):
    return tuple(int(min(255, max(0, c + dj))) for c, dj in zip(rgb, j))


def render(look: Look, nuisance: Nuisance, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw ``look`` under ``nuisance`` as a ``size`` x ``size`` RGB image."""
    big = size * _SUPER
    n = nuisance
    primary, secondary = (_jitter(c, n.jitter) for c in PALETTES[look.palette])
    bg = tuple(int(min(255, max(0, c + n.background))) for c in BACKDROPS[look.backdrop])
    canvas = Image.new("RGB", (big, big), bg)
    cx = big / 2 + n.dx * _SUPER
    cy = big / 2 + n.dy * _SUPER + 2 * _SUPER
    r = big * 0.30 * n.scale
    tex = _texture(look.texture, big, primary, secondary, n.angle)
    canvas.paste(tex, (0, 0), _shape_mask(look.shape, big, cx, cy, r, n.angle))
    d = ImageDraw.Draw(canvas)
    a = math.radians(n.angle)
    # Accessory sits on top of the head, rotated with it.
    ux, uy = math.sin(a), -math.cos(a)  # "up" direction after rotation
    top = (cx + ux * r, cy + uy * r)
    dark = (30, 30, 30)
    if look.accessory == "hat":
        w, h = r * 0.55, r * 0.45
        px, py = -uy, ux  # perpendicular
        base_l = (top[0] - px * w, top[1] - py * w)
        base_r = (top[0] + px * w, top[1] + py * w)
        apex = (top[0] + ux * h * 1.6, top[1] + uy * h * 1.6)
        d.polygon([base_l, base_r, apex], fill=dark)
    elif look.accessory == "band":
        px, py = -uy, ux
        w = r * 0.95
        c = (cx - ux * r * 0.05, cy - uy * r * 0.05)
        d.line([(c[0] - px * w, c[1] - py * w), (c[0] + px * w, c[1] + py * w)],
               fill=(250, 250, 250), width=max(1, int(r * 0.22)))
    elif look.accessory == "antenna":
        tip = (top[0] + ux * r * 0.6, top[1] + uy * r * 0.6)
        d.line([top, tip], fill=dark, width=max(1, int(r * 0.08)))
        rr = r * 0.16
        d.ellipse([tip[0] - rr, tip[1] - rr, tip[0] + rr, tip[1] + rr], fill=dark)
    img = canvas.resize((size, size), Image.Resampling.BOX)
    if n.noise > 0:
        arr = np.asarray(img).astype(np.float32)
        arr += np.random.default_rng(n.noise_seed).normal(0, n.noise, arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img
