"""OpenCV rendering of synthetic pedestrians: identities, cameras and per-image views.

An identity fixes clothing colours and patterns (upper / lower body, shoes, hair, optional bag) and body
proportions; a camera fixes its background texture, colour cast, illumination, blur, resolution and viewpoint
mix; a view fixes the per-image pose, scale, crop jitter, occlusion and JPEG quality. Colours are drawn from
SHARED palettes so many identities wear the same upper or lower colour, and camera casts are strong: a colour
histogram alone cannot tell people apart, shape and pattern cues must be learned. All randomness comes from the
numpy Generator passed in, so rendering is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

VIEWPOINTS = ("front", "back", "left", "right")

# Clothing palettes (BGR). Identities pick from these, so colours are shared between identities.
UPPER_PALETTE = (
    (40, 40, 40), (235, 235, 235), (150, 60, 20), (40, 40, 170), (60, 120, 40), (130, 130, 130),
    (30, 150, 220), (120, 50, 110), (170, 150, 90), (50, 80, 120),
)
LOWER_PALETTE = ((40, 35, 30), (120, 70, 40), (90, 90, 90), (120, 160, 180), (200, 200, 200), (40, 60, 90))
SHOE_PALETTE = ((20, 20, 20), (220, 220, 220), (60, 70, 110), (100, 100, 100))
HAIR_PALETTE = ((20, 20, 25), (30, 50, 80), (60, 100, 150), (150, 150, 150))
SKIN_PALETTE = ((150, 180, 220), (110, 150, 200), (80, 110, 160), (50, 70, 110))
BAG_PALETTE = ((30, 30, 30), (40, 40, 140), (140, 80, 40), (60, 130, 60), (180, 180, 180))
PATTERNS = ("solid", "hstripes", "vstripes", "twotone", "logo", "checks")


@dataclass(frozen=True)
class DifficultyConfig:
    """Knobs that decide how hard the synthetic data is (defaults: colour histograms stay far below 40% mAP,
    see benchmarks/synthetic_difficulty.py).

    upper_palette / lower_palette: how many palette colours identities choose from (fewer = more sharing);
    colour_jitter: per-identity spread around the palette colour; cast_strength: per-channel camera gain range
    (gain in [1 - s, 1 + s]); illumination: camera brightness range; blur_sigma: max camera blur;
    low_resolution: max camera down-scaling factor; occlusion_probability: chance of an occluder per image;
    jpeg_quality: per-image JPEG quality range; pose_jitter: scale of per-image scale / shift / rotation;
    background_contrast: camera scenes' variation around mid-grey (1 full texture, 0 flat grey).
    """

    upper_palette: int = 6
    lower_palette: int = 4
    colour_jitter: float = 18.0
    cast_strength: float = 0.25
    illumination: tuple[float, float] = (0.65, 1.25)
    blur_sigma: float = 1.2
    low_resolution: float = 2.0
    noise_sigma: float = 4.0
    occlusion_probability: float = 0.3
    jpeg_quality: tuple[int, int] = (55, 95)
    pose_jitter: float = 1.0
    background_contrast: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.upper_palette <= len(UPPER_PALETTE):
            raise ValueError(f"upper_palette must be in 1..{len(UPPER_PALETTE)}, got {self.upper_palette}")
        if not 1 <= self.lower_palette <= len(LOWER_PALETTE):
            raise ValueError(f"lower_palette must be in 1..{len(LOWER_PALETTE)}, got {self.lower_palette}")
        if not 0.0 <= self.cast_strength < 1.0:
            raise ValueError(f"cast_strength must be in [0, 1), got {self.cast_strength}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must be an increasing range within 1..100, got {self.jpeg_quality}")
        if not 0.0 <= self.background_contrast <= 1.0:
            raise ValueError(f"background_contrast must be in [0, 1], got {self.background_contrast}")


@dataclass(frozen=True)
class Identity:
    """What a person looks like in every camera."""

    upper: tuple[int, int, int]
    upper_second: tuple[int, int, int]
    pattern: str
    stripe_period: float
    long_sleeves: bool
    lower: tuple[int, int, int]
    lower_style: str  # trousers | shorts | skirt
    shoes: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str  # short | long | hat | bald
    hat: tuple[int, int, int]
    bag: str  # none | backpack | shoulder
    bag_colour: tuple[int, int, int]
    height: float  # fraction of the crop height
    shoulders: float  # half shoulder width / body height
    torso: float  # torso length / body height
    girth: float  # hip width relative to shoulders


@dataclass(frozen=True)
class Camera:
    """How one camera sees the world."""

    background: np.ndarray  # larger-than-crop BGR texture, cropped per image
    colour_matrix: np.ndarray  # 3 x 4 affine colour transform (cast, illumination, offset)
    blur_sigma: float
    low_resolution: float
    viewpoint_mix: np.ndarray  # probabilities of VIEWPOINTS
    mean_scale: float
    noise_sigma: float


@dataclass(frozen=True)
class View:
    """Per-image (or per-frame) nuisance: pose, framing, occlusion and encoding."""

    viewpoint: str
    scale: float
    shift: tuple[float, float]  # fraction of width / height
    angle: float
    stride: float  # walking phase in [-1, 1]: leg spread and arm swing
    background_offset: tuple[int, int]
    brightness: float
    occluder: tuple[float, float, float, float, tuple[int, int, int]] | None  # x0, y0, x1, y1 (fractions), colour
    jpeg_quality: int


def _jitter_colour(colour: tuple[int, ...], spread: float, rng: np.random.Generator) -> tuple[int, int, int]:
    values = np.clip(np.asarray(colour, dtype=np.float64) + rng.normal(0.0, spread, 3), 0, 255)
    return tuple(int(v) for v in values)


def _pick(palette: tuple, limit: int, rng: np.random.Generator) -> tuple[int, int, int]:
    return palette[int(rng.integers(limit))]


def make_identity(rng: np.random.Generator, difficulty: DifficultyConfig) -> Identity:
    """Draw a random identity: shared-palette clothing with small personal variations, body proportions."""
    jitter = difficulty.colour_jitter
    return Identity(
        upper=_jitter_colour(_pick(UPPER_PALETTE, difficulty.upper_palette, rng), jitter, rng),
        upper_second=_jitter_colour(_pick(UPPER_PALETTE, len(UPPER_PALETTE), rng), jitter, rng),
        pattern=PATTERNS[int(rng.choice(len(PATTERNS), p=(0.4, 0.15, 0.1, 0.15, 0.1, 0.1)))],
        stripe_period=float(rng.uniform(0.05, 0.12)),
        long_sleeves=bool(rng.random() < 0.5),
        lower=_jitter_colour(_pick(LOWER_PALETTE, difficulty.lower_palette, rng), jitter, rng),
        lower_style=("trousers", "shorts", "skirt")[int(rng.choice(3, p=(0.65, 0.2, 0.15)))],
        shoes=_jitter_colour(_pick(SHOE_PALETTE, len(SHOE_PALETTE), rng), jitter / 2, rng),
        skin=_jitter_colour(_pick(SKIN_PALETTE, len(SKIN_PALETTE), rng), jitter / 2, rng),
        hair=_jitter_colour(_pick(HAIR_PALETTE, len(HAIR_PALETTE), rng), jitter / 2, rng),
        hair_style=("short", "long", "hat", "bald")[int(rng.choice(4, p=(0.5, 0.25, 0.15, 0.1)))],
        hat=_jitter_colour(_pick(UPPER_PALETTE, len(UPPER_PALETTE), rng), jitter, rng),
        bag=("none", "backpack", "shoulder")[int(rng.choice(3, p=(0.5, 0.3, 0.2)))],
        bag_colour=_jitter_colour(_pick(BAG_PALETTE, len(BAG_PALETTE), rng), jitter, rng),
        height=float(rng.uniform(0.84, 0.96)),
        shoulders=float(rng.uniform(0.13, 0.17)),
        torso=float(rng.uniform(0.27, 0.34)),
        girth=float(rng.uniform(0.7, 1.0)),
    )


def _background_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A camera's scene: a coloured gradient, smooth blotches, floor tiles or wall stripes, and fine noise."""
    height, width = size
    base = rng.uniform(60, 190) + rng.normal(0.0, 20.0, 3)  # greyish scene with a tint
    coarse = (rng.normal(0.0, 30.0, (9, 6, 1)) + rng.normal(0.0, 10.0, (9, 6, 3))).astype(np.float32)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) + base.astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None, None] * rng.uniform(-40, 40, 3).astype(np.float32)
    texture = texture + ramp
    period = int(rng.integers(8, 24))
    shade = rng.uniform(-30, 30, 3).astype(np.float32)
    if rng.random() < 0.5:
        lines = (np.arange(height) // period) % 2
        texture += lines[:, None, None].astype(np.float32) * shade
    else:
        lines = (np.arange(width) // period) % 2
        texture += lines[None, :, None].astype(np.float32) * shade
    texture += rng.normal(0.0, 6.0, texture.shape).astype(np.float32)
    return np.clip(texture, 0, 255).astype(np.uint8)


def make_camera(rng: np.random.Generator, difficulty: DifficultyConfig, image_size: tuple[int, int]) -> Camera:
    """Draw a camera: background, strong colour cast + illumination, blur, resolution and viewpoint mix."""
    height, width = image_size
    strength = difficulty.cast_strength
    gains = rng.uniform(1.0 - strength, 1.0 + strength, 3) * rng.uniform(*difficulty.illumination)
    mixing = np.eye(3) * gains[:, None] + rng.uniform(-0.1, 0.1, (3, 3)) * strength
    offsets = rng.uniform(-25, 25, 3) * strength
    background = _background_texture(rng, (3 * height, 3 * width))
    if difficulty.background_contrast < 1.0:  # flatter scenes: the person dominates the crop
        background = (128 + difficulty.background_contrast * (background.astype(np.float32) - 128)).astype(np.uint8)
    return Camera(
        background=background,
        colour_matrix=np.hstack([mixing, offsets[:, None]]).astype(np.float32),
        blur_sigma=float(rng.uniform(0.0, difficulty.blur_sigma)),
        low_resolution=float(rng.uniform(1.0, difficulty.low_resolution)),
        viewpoint_mix=rng.dirichlet(np.full(len(VIEWPOINTS), 0.8)),
        mean_scale=float(rng.uniform(0.85, 1.0)),
        noise_sigma=float(rng.uniform(0.5, 1.0) * difficulty.noise_sigma),
    )


def sample_view(rng: np.random.Generator, camera: Camera, difficulty: DifficultyConfig) -> View:
    """Draw the per-image nuisance for one crop seen by ``camera``."""
    jitter = difficulty.pose_jitter
    occluder = None
    if rng.random() < difficulty.occlusion_probability:
        occluder = _sample_occluder(rng)
    height, width = camera.background.shape[0] // 3, camera.background.shape[1] // 3
    return View(
        viewpoint=VIEWPOINTS[int(rng.choice(len(VIEWPOINTS), p=camera.viewpoint_mix))],
        scale=float(camera.mean_scale * (1.0 + rng.uniform(-0.08, 0.08) * jitter)),
        shift=(float(rng.uniform(-0.08, 0.08) * jitter), float(rng.uniform(-0.04, 0.04) * jitter)),
        angle=float(rng.uniform(-4.0, 4.0) * jitter),
        stride=float(rng.uniform(-1.0, 1.0)),
        background_offset=(int(rng.integers(0, 2 * height)), int(rng.integers(0, 2 * width))),
        brightness=float(rng.uniform(0.85, 1.15)),
        occluder=occluder,
        jpeg_quality=int(rng.integers(difficulty.jpeg_quality[0], difficulty.jpeg_quality[1] + 1)),
    )


def _sample_occluder(rng: np.random.Generator) -> tuple[float, float, float, float, tuple[int, int, int]]:
    """A box covering the bottom, a side or a vertical pole of the crop."""
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    kind = int(rng.integers(3))
    if kind == 0:  # bottom: a car, a bench
        top = float(rng.uniform(0.6, 0.8))
        return (0.0, top, 1.0, 1.0, colour)
    if kind == 1:  # side: another person or a wall
        edge = float(rng.uniform(0.25, 0.45))
        return (0.0, 0.0, edge, 1.0, colour) if rng.random() < 0.5 else (1.0 - edge, 0.0, 1.0, 1.0, colour)
    centre = float(rng.uniform(0.2, 0.8))  # a pole
    return (centre - 0.08, 0.0, centre + 0.08, 1.0, colour)


class _Canvas:
    """A person layer and its alpha mask, drawn together."""

    def __init__(self, height: int, width: int) -> None:
        self.colour = np.zeros((height, width, 3), np.uint8)
        self.mask = np.zeros((height, width), np.uint8)

    def polygon(self, points: list[tuple[float, float]], colour: tuple[int, int, int]) -> None:
        pts = np.round(np.asarray(points) * 16).astype(np.int32)
        cv2.fillConvexPoly(self.colour, pts, colour, cv2.LINE_AA, shift=4)
        cv2.fillConvexPoly(self.mask, pts, 255, cv2.LINE_AA, shift=4)

    def line(self, p0: tuple[float, float], p1: tuple[float, float], colour: tuple[int, int, int], thick: float) -> None:
        a, b, t = (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), max(1, int(round(thick)))
        cv2.line(self.colour, a, b, colour, t, cv2.LINE_AA)
        cv2.line(self.mask, a, b, 255, t, cv2.LINE_AA)

    def ellipse(self, centre: tuple[float, float], axes: tuple[float, float], colour: tuple[int, int, int],
                start: float = 0.0, end: float = 360.0) -> None:
        c = (int(round(centre[0] * 16)), int(round(centre[1] * 16)))
        ax = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
        cv2.ellipse(self.colour, c, ax, 0.0, start, end, colour, -1, cv2.LINE_AA, shift=4)
        cv2.ellipse(self.mask, c, ax, 0.0, start, end, 255, -1, cv2.LINE_AA, shift=4)

    def textured_polygon(self, points: list[tuple[float, float]], texture: np.ndarray) -> None:
        region = np.zeros_like(self.mask)
        cv2.fillConvexPoly(region, np.round(np.asarray(points)).astype(np.int32), 255)
        inside = region > 0
        self.colour[inside] = texture[inside]
        self.mask[inside] = 255


def _upper_texture(identity: Identity, height: int, width: int, top: float, bottom: float) -> np.ndarray:
    """The identity's upper-body garment pattern over the whole canvas."""
    texture = np.empty((height, width, 3), np.uint8)
    texture[:] = identity.upper
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    period = max(2.0, identity.stripe_period * height)
    if identity.pattern == "hstripes":
        texture[((rows // (period / 2)) % 2 == 1)[:, 0]] = identity.upper_second
    elif identity.pattern == "vstripes":
        texture[:, ((cols // (period / 2)) % 2 == 1)[0]] = identity.upper_second
    elif identity.pattern == "twotone":
        texture[int((top + bottom) / 2):] = identity.upper_second
    elif identity.pattern == "checks":
        texture[((rows // period + cols // period) % 2) == 1] = identity.upper_second
    elif identity.pattern == "logo":
        centre_y, half = int(top + (bottom - top) * 0.4), max(2, int(width * 0.09))
        texture[centre_y - half:centre_y + half, width // 2 - half:width // 2 + half] = identity.upper_second
    return texture


def _draw_person(identity: Identity, view: View, height: int, width: int) -> _Canvas:
    """Draw the identity in its canonical frame (feet at the bottom, centred) for the view's viewpoint."""
    canvas = _Canvas(height, width)
    body = identity.height * height
    feet = 0.97 * height
    top = feet - body
    centre = width / 2
    head = body * 0.068
    side = view.viewpoint in ("left", "right")
    facing = 1.0 if view.viewpoint == "right" else -1.0
    shoulder = identity.shoulders * body * (0.6 if side else 1.0)
    hip = shoulder * identity.girth * (0.95 if side else 0.9)
    neck_y = top + 2.1 * head
    hip_y = neck_y + identity.torso * body
    knee_y = hip_y + (feet - hip_y) * 0.5
    stride = view.stride * body * (0.1 if side else 0.03)
    limb = max(2.0, body * 0.065)

    if identity.hair_style == "long" and view.viewpoint != "front":
        canvas.polygon([(centre - head * 1.1, top + head), (centre + head * 1.1, top + head),
                        (centre + head * 1.2, neck_y + head * 1.6), (centre - head * 1.2, neck_y + head * 1.6)],
                       identity.hair)
    if identity.bag == "backpack" and side:
        back = centre - facing * shoulder * 1.1
        canvas.polygon([(back - shoulder * 0.8, neck_y + head * 0.3), (back + shoulder * 0.8, neck_y + head * 0.3),
                        (back + shoulder * 0.8, hip_y - head * 0.5), (back - shoulder * 0.8, hip_y - head * 0.5)],
                       identity.bag_colour)

    # legs: trousers, shorts or skirt over skin
    left_foot = (centre - hip * 0.5 - stride, feet - head * 0.3)
    right_foot = (centre + hip * 0.5 + stride, feet - head * 0.3)
    for foot, sign in ((left_foot, -1.0), (right_foot, 1.0)):
        hip_point = (centre + sign * hip * 0.5, hip_y)
        knee = ((hip_point[0] + foot[0]) / 2, knee_y)
        covered = identity.lower if identity.lower_style == "trousers" else identity.skin
        canvas.line(hip_point, knee, identity.lower if identity.lower_style == "shorts" else covered, limb * 1.3)
        canvas.line(knee, foot, covered, limb * 1.1)
        canvas.ellipse((foot[0] + (facing * head * 0.4 if side else 0.0), foot[1]), (head * 0.7, head * 0.35),
                       identity.shoes)
    if identity.lower_style == "skirt":
        canvas.polygon([(centre - hip, hip_y - head * 0.2), (centre + hip, hip_y - head * 0.2),
                        (centre + hip * 1.5, knee_y), (centre - hip * 1.5, knee_y)], identity.lower)
    else:
        canvas.polygon([(centre - hip, hip_y - head * 0.2), (centre + hip, hip_y - head * 0.2),
                        (centre + hip, hip_y + head * 0.8), (centre - hip, hip_y + head * 0.8)], identity.lower)

    # torso with the identity's pattern
    torso = [(centre - shoulder, neck_y + head * 0.2), (centre + shoulder, neck_y + head * 0.2),
             (centre + hip, hip_y), (centre - hip, hip_y)]
    canvas.textured_polygon(torso, _upper_texture(identity, height, width, neck_y, hip_y))

    # arms swing against the legs
    sleeve = identity.upper if identity.long_sleeves else identity.skin
    for sign in ((1.0,) if side else (-1.0, 1.0)):
        shoulder_point = (centre + sign * shoulder * (0.2 if side else 0.95), neck_y + head * 0.5)
        swing = -sign * stride * 0.8 if not side else stride
        elbow = (shoulder_point[0] + sign * head * 0.3 + swing * 0.5, (neck_y + hip_y) / 2 + head * 0.2)
        hand = (shoulder_point[0] + sign * head * 0.35 + swing, hip_y + head * 0.3)
        canvas.line(shoulder_point, elbow, identity.upper, limb)
        canvas.line(elbow, hand, sleeve, limb * 0.9)
        canvas.ellipse(hand, (limb * 0.45, limb * 0.5), identity.skin)

    if identity.bag == "backpack" and view.viewpoint == "back":
        canvas.polygon([(centre - shoulder * 0.75, neck_y + head * 0.6), (centre + shoulder * 0.75, neck_y + head * 0.6),
                        (centre + shoulder * 0.7, hip_y - head * 0.3), (centre - shoulder * 0.7, hip_y - head * 0.3)],
                       identity.bag_colour)
    elif identity.bag == "backpack" and view.viewpoint == "front":
        for sign in (-1.0, 1.0):
            canvas.line((centre + sign * shoulder * 0.55, neck_y + head * 0.3),
                        (centre + sign * shoulder * 0.6, hip_y - head * 1.2), identity.bag_colour, limb * 0.5)
    elif identity.bag == "shoulder":
        canvas.line((centre - shoulder * 0.8, neck_y + head * 0.3), (centre + hip, hip_y), identity.bag_colour,
                    limb * 0.45)
        canvas.polygon([(centre + hip - head * 0.5, hip_y - head * 0.6), (centre + hip + head * 1.1, hip_y - head * 0.6),
                        (centre + hip + head * 1.1, hip_y + head * 0.9), (centre + hip - head * 0.5, hip_y + head * 0.9)],
                       identity.bag_colour)

    # head, hair, hat
    head_centre = (centre + (facing * head * 0.15 if side else 0.0), top + head * 1.05)
    canvas.line((centre, neck_y - head * 0.3), (centre, neck_y + head * 0.3), identity.skin, head * 0.8)
    canvas.ellipse(head_centre, (head * 0.85, head * 1.05), identity.skin)
    if identity.hair_style == "hat":
        canvas.ellipse(head_centre, (head * 1.0, head * 1.1), identity.hat, 180.0, 360.0)
        canvas.line((head_centre[0] - head * 1.2, head_centre[1]), (head_centre[0] + head * 1.2, head_centre[1]),
                    identity.hat, head * 0.3)
    elif identity.hair_style != "bald":
        if view.viewpoint == "back":
            canvas.ellipse(head_centre, (head * 0.9, head * 1.1), identity.hair)
        else:
            canvas.ellipse(head_centre, (head * 0.92, head * 1.1), identity.hair, 180.0, 360.0)
    return canvas


def person_layer(identity: Identity, view: View, image_size: tuple[int, int]) -> np.ndarray:
    """The identity drawn under ``view`` (pose, viewpoint, scale, shift, rotation) as an H x W x 4 BGRA layer."""
    height, width = image_size
    canvas = _draw_person(identity, view, height, width)
    layer = np.dstack([canvas.colour, canvas.mask])
    if view.viewpoint == "left":
        layer = layer[:, ::-1]
    matrix = cv2.getRotationMatrix2D((width / 2, height * 0.97), view.angle, view.scale)
    matrix[:, 2] += (view.shift[0] * width, view.shift[1] * height)
    return cv2.warpAffine(layer, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)


def render(identity: Identity, camera: Camera, view: View, image_size: tuple[int, int],
           rng: np.random.Generator) -> np.ndarray:
    """One H x W x 3 uint8 BGR crop of ``identity`` seen by ``camera`` under ``view``."""
    return _compose(person_layer(identity, view, image_size), camera, view, rng, image_size)


def render_clutter(camera: Camera, view: View, image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A bad detection (junk): the camera's background with a few random blobs and no full person."""
    height, width = image_size
    canvas = _Canvas(height, width)
    for _ in range(int(rng.integers(1, 4))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        canvas.ellipse((x, y), (rng.uniform(3, width / 3), rng.uniform(3, height / 4)), colour)
    return _compose(np.dstack([canvas.colour, canvas.mask]), camera, view, rng, image_size)


def _compose(layer: np.ndarray, camera: Camera, view: View, rng: np.random.Generator,
             image_size: tuple[int, int]) -> np.ndarray:
    """Paste the person layer on the camera background, occlude, then apply the camera's optics."""
    height, width = image_size
    row, col = view.background_offset
    background = camera.background[row:row + height, col:col + width].astype(np.float32)
    alpha = layer[..., 3:4].astype(np.float32) / 255.0
    image = background * (1.0 - alpha) + layer[..., :3].astype(np.float32) * alpha
    if view.occluder is not None:
        x0, y0, x1, y1, colour = view.occluder
        image[int(y0 * height):int(y1 * height), int(x0 * width):int(x1 * width)] = colour
    return camera_optics(image, camera, view.brightness, rng)


def camera_optics(image: np.ndarray, camera: Camera, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """What the camera does to a float32 BGR scene (a crop or a whole frame): colour cast and illumination,
    loss of resolution, blur and sensor noise; returns uint8."""
    height, width = image.shape[:2]
    image = cv2.transform(image, camera.colour_matrix) * brightness
    if camera.low_resolution > 1.05:
        small = (max(4, int(width / camera.low_resolution)), max(8, int(height / camera.low_resolution)))
        image = cv2.resize(cv2.resize(image, small, interpolation=cv2.INTER_AREA), (width, height),
                           interpolation=cv2.INTER_LINEAR)
    if camera.blur_sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), camera.blur_sigma)
    if camera.noise_sigma > 0:
        image += rng.normal(0.0, camera.noise_sigma, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of ``image`` at ``quality`` (deterministic for identical input)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV failed to encode a JPEG image")
    return data.tobytes()
