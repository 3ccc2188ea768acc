"""Parametric face photos for the synthetic corpus.

Each identity is a `FaceTraits`; `render_face` draws one photo-like image of it
with Pillow: a skin-toned face on a gradient background with hair, ears, eyes,
brows, nose and mouth, tilted, then blurred, side-lit and noised. Three traits
(`size`, `tone`, `pitch`) are shared with the synthetic voice, so a model can
match faces to voices only through them; the other traits are nuisance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FACE_JITTER = 0.03  # per-image std of size, tone and pitch, in trait units

# Skin colours from dark to light: the Monk Skin Tone scale (tones 7 -> 1,
# without tone 2, which is not lighter than tone 3) below the darkest tones
# 8-10 as a photo exposed for the face shows them; MTCNN misses unlit
# Monk 10 faces (41, 36, 32) most of the time.
SKIN_RGB = np.array(
    [
        (82, 60, 48),
        (130, 92, 67),
        (160, 126, 86),
        (215, 189, 150),
        (234, 218, 186),
        (247, 234, 208),
        (246, 237, 228),
    ],
    dtype=np.float64,
)
# Natural hair colours from black to light blond, lightness increasing.
HAIR_RGB = np.array(
    [(28, 24, 22), (59, 40, 30), (106, 74, 50), (150, 111, 72), (190, 152, 100), (228, 200, 140)],
    dtype=np.float64,
)
GREY_HAIR_RGB = np.array((205.0, 205.0, 205.0))
DARK_RGB = np.array((25.0, 18.0, 14.0))
SHEEN_RGB = np.array((240.0, 228.0, 215.0))
# Iris colours: dark brown, brown, hazel, green, grey, blue.
IRIS_RGB = np.array(
    [(45, 28, 18), (100, 60, 30), (130, 105, 50), (80, 120, 70), (120, 130, 140), (60, 110, 170)],
    dtype=np.float64,
)

FACE_HALF_HEIGHT = 0.28  # forehead-to-chin half height, as a fraction of the image side
WIDTH_RATIO_RANGE = (0.62, 0.94)  # face width / height at traits.size 0 and 1
MAX_TILT_DEGREES = 8.0
MAX_SHIFT = 0.04  # of the image side
SCALE_RANGE = (0.92, 1.08)
ELLIPSE_VERTICES = 40
BACKDROP_GRID = 8

_UNIT_CIRCLE = np.exp(2j * np.pi * np.arange(ELLIPSE_VERTICES) / ELLIPSE_VERTICES)


@dataclass(frozen=True)
class FaceTraits:
    """Per-identity face traits; floats in [0, 1] unless noted."""

    female: bool
    age_years: float  # 18..80: older -> greyer hair, a few wrinkle lines
    size: float  # SHARED with the voice: face width/height ratio (0 = narrow/long face, 1 = wide/round)
    tone: float  # SHARED with the voice: skin lightness (0 = dark, 1 = light)
    pitch: float  # SHARED with the voice: hair lightness (0 = black, 1 = blond/light)
    eye_hue: float  # face-only nuisance: iris colour
    hair_style: float  # face-only nuisance: hair shape variant (female tends to longer hair)


def _palette(colours: np.ndarray, t: float) -> np.ndarray:
    """Piecewise-linear colour at t in [0, 1] along a palette of RGB anchors."""
    anchors = np.linspace(0.0, 1.0, len(colours))
    return np.array([np.interp(t, anchors, colours[:, c]) for c in range(3)])


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    r, g, b = np.clip(np.rint(colour), 0, 255).astype(int)
    return int(r), int(g), int(b)


@lru_cache(maxsize=4)
def _unit_axis(size: int) -> np.ndarray:
    """Pixel coordinates along one side, scaled to [-1, 1], for lighting ramps."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    axis.setflags(write=False)
    return axis


class _TiltedCanvas:
    """Draws in face coordinates: origin at the face centre, unit = face half height, y down.

    Every shape is turned into points and rotated here, so the head is drawn
    tilted directly rather than drawn upright and resampled (which costs more
    than all the drawing).
    """

    def __init__(self, image: Image.Image, cx: float, cy: float, unit: float, tilt_degrees: float):
        self.draw = ImageDraw.Draw(image)
        self.origin = complex(cx, cy)
        self.turn = unit * np.exp(1j * math.radians(tilt_degrees))

    def _points(self, local: np.ndarray) -> list[tuple[float, float]]:
        pixels = self.origin + self.turn * local
        return list(zip(pixels.real.tolist(), pixels.imag.tolist()))

    def polygon(self, local: list[complex], fill: np.ndarray) -> None:
        self.draw.polygon(self._points(np.asarray(local)), fill=_rgb(fill))

    def ellipse(self, centre: complex, rx: float, ry: float, fill: np.ndarray) -> None:
        outline = centre + rx * _UNIT_CIRCLE.real + 1j * ry * _UNIT_CIRCLE.imag
        self.draw.polygon(self._points(outline), fill=_rgb(fill))

    def line(self, local: list[complex], fill: np.ndarray, width: float) -> None:
        pixel_width = max(1, round(width * abs(self.turn)))
        self.draw.line(self._points(np.asarray(local)), fill=_rgb(fill), width=pixel_width, joint="curve")


def _draw_person(
    canvas: _TiltedCanvas, traits: FaceTraits, size_trait: float, tone: float, pitch: float, shirt: np.ndarray
) -> None:
    """Draw shoulders, neck, hair, ears and face, back to front, in face units.

    Inner features are placed in units of the face height only, so a wider
    face (size_trait) shows more cheek around the same features; that ratio
    survives a detector crop resized to a square.
    """
    a = WIDTH_RATIO_RANGE[0] + (WIDTH_RATIO_RANGE[1] - WIDTH_RATIO_RANGE[0]) * size_trait
    skin = _palette(SKIN_RGB, tone)
    hair_base = _palette(HAIR_RGB, pitch)
    greying = 0.5 * float(np.clip((traits.age_years - 40.0) / 40.0, 0.0, 1.0))
    hair = (1.0 - greying) * hair_base + greying * GREY_HAIR_RGB
    # Brows keep the pre-grey colour, pulled towards dark so they stay visible.
    brow = 0.55 * hair_base + 0.45 * DARK_RGB
    style = traits.hair_style
    long_hair = style > 0.25 if traits.female else style > 0.85

    canvas.ellipse(2.35j, 1.9, 1.05, shirt)
    canvas.polygon([-0.36 + 0.4j, 0.36 + 0.4j, 0.36 + 1.45j, -0.36 + 1.45j], skin * 0.78)  # neck

    if long_hair:  # falls behind the head, down to the shoulders
        length = 0.9 + 0.6 * style
        canvas.ellipse(-0.35j, 1.18 * a, 0.85, hair)
        canvas.polygon([-1.18 * a - 0.35j, 1.18 * a - 0.35j, 1.18 * a + length * 1j, -1.18 * a + length * 1j], hair)

    for side in (-1.0, 1.0):
        canvas.ellipse(side * 0.97 * a + 0.05j, 0.13, 0.22, skin * 0.8)  # ears
    # A darker rim around a lighter centre reads as shading of a rounded face.
    canvas.ellipse(0j, a, 1.0, skin * 0.86)
    canvas.ellipse(-0.04j, 0.88 * a, 0.9, skin)
    # Photo-like shading that holds on dark skin too (where multiplying by a
    # factor changes little): sheen on forehead, cheekbones and nose bridge,
    # shadowed eye sockets, the light/dark pattern face detectors rely on.
    sheen = 0.8 * skin + 0.2 * SHEEN_RGB
    canvas.ellipse(-0.5j, 0.45 * a, 0.16, sheen)
    for side in (-1.0, 1.0):
        canvas.ellipse(side * 0.4 + 0.18j, 0.16, 0.09, sheen)
        canvas.ellipse(side * 0.36 - 0.1j, 0.23, 0.14, 0.7 * skin + 0.3 * DARK_RGB)
    canvas.line([-0.02j, 0.24j], sheen, 0.06)

    # Hair cap: the upper half of an ellipse above a fringe line tilted by the style.
    hairline = -(0.72 - 0.2 * style)
    tilt = 0.25 * (style - 0.5)
    crown = 1.12 + 0.15 * style + hairline
    half_turn = np.exp(1j * np.linspace(np.pi, 2.0 * np.pi, 25))
    cap = list(1.08 * a * half_turn.real + 1j * (hairline + crown * half_turn.imag))
    canvas.polygon(cap + [1.08 * a + (hairline + tilt) * 1j, -1.08 * a + (hairline - tilt) * 1j], hair)

    # Wrinkles with age: forehead lines from 47 years, nasolabial folds from 59.
    wrinkles = int(np.clip((traits.age_years - 35.0) / 12.0, 0.0, 4.0))
    for i in range(min(wrinkles, 3)):
        y = -(0.36 + 0.07 * i)
        canvas.line([-0.32 * a + y * 1j, 0.32 * a + y * 1j], skin * 0.8, 0.015)
    if wrinkles >= 2:
        for side in (-1.0, 1.0):
            canvas.line([side * 0.2 + 0.3j, side * 0.32 + 0.6j], skin * 0.8, 0.015)

    # Eyes: white, iris, pupil and a dark upper lid, the contrast a detector keys on.
    iris = _palette(IRIS_RGB, traits.eye_hue)
    lid = np.exp(1j * np.radians(np.linspace(190.0, 350.0, 12)))
    brow_width = 0.05 if traits.female else 0.07
    for side in (-1.0, 1.0):
        eye = side * 0.36 - 0.08j
        canvas.ellipse(eye, 0.17, 0.08, np.array((238.0, 234.0, 228.0)))
        canvas.ellipse(eye, 0.075, 0.075, iris)
        canvas.ellipse(eye, 0.035, 0.035, np.array((12.0, 10.0, 10.0)))
        canvas.line(list(eye + 0.18 * lid.real + 0.09j * lid.imag), np.array((35.0, 25.0, 22.0)), 0.04)
        canvas.line([eye - side * 0.2 - 0.16j, eye + side * 0.02 - 0.22j, eye + side * 0.2 - 0.18j], brow, brow_width)

    canvas.polygon([-0.05j, 0.11 + 0.33j, -0.11 + 0.33j], skin * 0.8)  # nose
    for side in (-1.0, 1.0):
        canvas.ellipse(side * 0.06 + 0.33j, 0.035, 0.022, skin * 0.45)  # nostrils

    # Lips: the skin reddened and darkened, with a dark line between them.
    lip = skin * (np.array((0.85, 0.55, 0.58)) if traits.female else np.array((0.82, 0.62, 0.62)))
    canvas.ellipse(0.545j, 0.24, 0.05, lip * 0.9)
    canvas.ellipse(0.625j, 0.22, 0.065, lip)
    canvas.line([-0.25 + 0.58j, 0.25 + 0.58j], np.array((55.0, 28.0, 28.0)), 0.025)


def render_face(traits: FaceTraits, rng: np.random.Generator, size: int = 256) -> Image.Image:
    """One RGB photo-like image of this identity; per-image variation (pose, lighting, background, noise, trait jitter) drawn from rng.

    The rng is consumed in the same order and amount whatever the traits, so
    two identities rendered from equal seeds differ only through their traits.
    """
    # Every random draw happens here, before any trait-dependent branching.
    jitter = rng.normal(0.0, FACE_JITTER, size=3)
    tilt_degrees = rng.uniform(-MAX_TILT_DEGREES, MAX_TILT_DEGREES)
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * size
    scale = rng.uniform(*SCALE_RANGE)
    backdrop_rgb = rng.uniform(40.0, 220.0, size=(2, 1)) + rng.uniform(-35.0, 35.0, size=(2, 3))
    backdrop_angle = rng.uniform(0.0, 2.0 * np.pi)
    shirt = rng.uniform(20.0, 230.0, size=3)
    light_angle = rng.uniform(0.0, 2.0 * np.pi)
    light_strength = rng.uniform(0.05, 0.2)
    brightness = rng.uniform(0.95, 1.05)
    tint = rng.uniform(0.97, 1.03, size=3).astype(np.float32)
    blur_radius = rng.uniform(0.6, 1.2) * size / 256
    noise_sigma = rng.uniform(2.0, 6.0)
    noise = rng.random((size, size, 3), dtype=np.float32)

    size_trait, tone, pitch = np.clip(np.array((traits.size, traits.tone, traits.pitch)) + jitter, 0.0, 1.0)

    # Backdrop: a linear gradient between two colours, computed on an 8x8 grid
    # and upscaled bilinearly (linear inside, flat in the outer 1/16 of the frame).
    grid = (np.arange(BACKDROP_GRID) + 0.5) / BACKDROP_GRID * 2.0 - 1.0
    ramp = 0.5 + 0.35 * (np.cos(backdrop_angle) * grid[None, :] + np.sin(backdrop_angle) * grid[:, None])
    backdrop = backdrop_rgb[0] + (backdrop_rgb[1] - backdrop_rgb[0]) * ramp[..., None]
    image = Image.fromarray(backdrop.astype(np.uint8), "RGB").resize((size, size), Image.Resampling.BILINEAR)

    unit = FACE_HALF_HEIGHT * size * scale
    canvas = _TiltedCanvas(image, size / 2 + shift[0], size / 2 + shift[1], unit, tilt_degrees)
    _draw_person(canvas, traits, size_trait, tone, pitch, shirt)
    image = image.filter(ImageFilter.GaussianBlur(blur_radius))

    # Side lighting: a brightness ramp across the frame; then sensor noise
    # (uniform, scaled to noise_sigma, as it is 4x cheaper to draw than Gaussian).
    # Python floats keep the arithmetic in float32 (numpy scalars would promote).
    axis = _unit_axis(size)
    light_x = float(brightness * light_strength * math.cos(light_angle)) * axis
    light_y = float(brightness * light_strength * math.sin(light_angle)) * axis + float(brightness)
    pixels = np.asarray(image, dtype=np.float32)
    pixels *= (light_y[:, None] + light_x[None, :])[..., None]
    pixels *= tint
    noise -= 0.5
    noise *= float(noise_sigma * math.sqrt(12.0))
    pixels += noise
    np.clip(pixels, 0.0, 255.0, out=pixels)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")
