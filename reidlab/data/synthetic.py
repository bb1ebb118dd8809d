"""The built-in synthetic dataset: procedural pedestrians in the Market-1501 layout.

The real datasets cannot be downloaded on most machines, so a new user starts
here. :func:`make_synthetic_dataset` draws pedestrian-like figures and writes
exactly what a real Market-1501 copy with its community annotations contains::

    root/
      bounding_box_train/  0002_c1s1_000001_01.jpg ...   (128 x 64 JPEG)
      bounding_box_test/   ids, distractors (0000_...) and junk (-1_...)
      query/
      market_attribute.mat            Lin et al. format: struct market_attribute.{train,test}
      market-annotation-train.csv     Pose-Transfer format, OpenPose-18 (y, x) per image
      market-annotation-test.csv      bounding_box_test AND query images
      masks/<subset>/<stem>.png       occluder masks (255 = occluder) for occluded images
      occluders.json                  relative image path -> occluder kind
      identities.csv                  what the generator drew for every identity
      meta.json                       the generator's marker: version, parameters, every file written

so that :func:`reidlab.data.market1501.load_market1501` reads it unchanged.

What makes it a re-ID problem rather than a colour-matching one:
- an identity is its clothing (upper/lower colour, sleeve and lower length,
  dress or trousers, hat, bags, hair length) *plus* finer traits that no
  attribute names (stripes, shades, body width and height, shoe, skin and hair
  colour); some identities are deliberate "attribute twins" of others, so the
  27 Market attributes alone do not give the identity away;
- every image has its own pose (limb angles from a 2-D skeleton, which also
  gives the COCO-17 keypoints), facing (front / back), and camera: each of the
  cameras has its own illumination (per-channel gain and bias), person scale,
  offset and background;
- a fraction of images carry an occluder (a pole, a bike-like shape, another
  partial person); keypoints hidden by it are written as missing (-1).

The generator never loses a user's data: it writes only into a new or empty folder
or one holding its own ``meta.json`` marker, deletes only the files that marker
lists, and renames a finished dataset into place (rules above :data:`MARKER`).

Everything is drawn with vectorised numpy on bounding-box-limited pixel grids;
the default size (400 identities, ~3,600 images) takes well under 30 s on one core.
Image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` alone, so
:func:`render_image` re-creates any single image (with its person and occluder
masks) exactly, which is what the tests use.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reidlab.owned import safe_relative

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
DEFAULT_NUM_IDS = 400
DEFAULT_IMAGES_PER_ID = 9

# Market-1501 attribute names (Lin et al.), in the order of the test struct.
MARKET_ATTRIBUTE_NAMES: tuple[str, ...] = (
    "age", "backpack", "bag", "handbag", "clothes", "down", "up", "hair", "hat", "gender",
    "upblack", "upwhite", "upred", "uppurple", "upyellow", "upgray", "upblue", "upgreen",
    "downblack", "downwhite", "downpink", "downpurple", "downyellow", "downgray",
    "downblue", "downgreen", "downbrown",
)

UPPER_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (30, 30, 32), "white": (232, 232, 228), "red": (200, 32, 36),
    "purple": (118, 52, 150), "yellow": (228, 206, 44), "gray": (128, 128, 128),
    "blue": (40, 72, 190), "green": (40, 148, 62),
}
LOWER_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30), "white": (230, 230, 226), "pink": (234, 140, 172),
    "purple": (116, 50, 146), "yellow": (226, 204, 46), "gray": (126, 126, 126),
    "blue": (42, 70, 176), "green": (42, 144, 60), "brown": (118, 74, 40),
}
# Skewed roughly like Market's label frequencies.
_UPPER_P = (0.20, 0.24, 0.10, 0.05, 0.07, 0.13, 0.11, 0.10)
_LOWER_P = (0.38, 0.06, 0.03, 0.03, 0.03, 0.13, 0.24, 0.03, 0.07)
_SKIN = ((236, 200, 170), (214, 170, 130), (170, 120, 84), (112, 76, 52))
_HAIR = ((24, 20, 18), (70, 44, 26), (196, 160, 96), (150, 150, 150))
_SHOES = ((20, 20, 20), (235, 235, 235), (100, 60, 30), (180, 30, 30), (40, 60, 150))
_ACCESSORY = ((60, 40, 30), (20, 20, 24), (150, 30, 40), (40, 90, 60), (160, 120, 80), (200, 200, 190))
PATTERNS = ("plain", "hstripes", "vstripes", "twotone")
OCCLUDER_KINDS = ("pole", "bike", "person")


# ----------------------------------------------------------------------------- identities
@dataclass
class Identity:
    """What the generator draws for one person: the Market attributes plus finer traits."""

    pid: int
    gender: int  # 1 male, 2 female
    age: int  # 1..4: young, teenager, adult, old
    hair: int  # 1 short, 2 long
    hat: int  # 1 no, 2 yes
    clothes: int  # 1 dress, 2 pants
    down: int  # lower-body length: 1 long, 2 short
    up: int  # sleeve: 1 long, 2 short
    backpack: int
    bag: int
    handbag: int
    upper_colour: str
    lower_colour: str
    # finer traits, not named by any attribute
    upper_rgb: tuple = ()
    lower_rgb: tuple = ()
    pattern: str = "plain"
    pattern_period: int = 4
    pattern_rgb: tuple = ()
    shoe_rgb: tuple = ()
    skin_rgb: tuple = ()
    hair_rgb: tuple = ()
    accessory_rgb: tuple = ()
    width: float = 1.0
    height: float = 1.0
    twin_of: int = -1  # pid whose attributes this identity copies (-1: none)

    def market_attributes(self) -> dict[str, int]:
        """The 27 Market attribute values (1/2 coding, age 1..4)."""
        values = {
            "age": self.age, "backpack": self.backpack, "bag": self.bag, "handbag": self.handbag,
            "clothes": self.clothes, "down": self.down, "up": self.up, "hair": self.hair,
            "hat": self.hat, "gender": self.gender,
        }
        for colour in UPPER_COLOURS:
            values["up" + colour] = 2 if colour == self.upper_colour else 1
        for colour in LOWER_COLOURS:
            values["down" + colour] = 2 if colour == self.lower_colour else 1
        return {name: values[name] for name in MARKET_ATTRIBUTE_NAMES}


def _shade(rng, rgb, spread=14):
    return tuple(int(v) for v in np.clip(np.asarray(rgb) + rng.integers(-spread, spread + 1, 3), 0, 255))


def _fine_traits(rng, ident: Identity) -> None:
    ident.upper_rgb = _shade(rng, UPPER_COLOURS[ident.upper_colour])
    ident.lower_rgb = _shade(rng, LOWER_COLOURS[ident.lower_colour])
    ident.pattern = PATTERNS[rng.choice(4, p=(0.45, 0.2, 0.15, 0.2))]
    ident.pattern_period = int(rng.integers(3, 7))
    # Stripes are a darker or lighter shade of the same colour: the colour attribute stays true.
    factor = rng.choice([0.55, 1.35])
    ident.pattern_rgb = tuple(int(v) for v in np.clip(np.asarray(ident.upper_rgb) * factor + (20 if factor > 1 else 0), 0, 255))
    ident.shoe_rgb = _SHOES[rng.integers(len(_SHOES))]
    ident.skin_rgb = _shade(rng, _SKIN[rng.integers(len(_SKIN))], 8)
    ident.hair_rgb = _HAIR[3] if ident.age == 4 else _HAIR[rng.integers(3)]
    ident.accessory_rgb = _ACCESSORY[rng.integers(len(_ACCESSORY))]
    ident.width = float(rng.uniform(0.85, 1.18))
    ident.height = float(rng.uniform(0.8, 0.88) if ident.age == 1 else rng.uniform(0.92, 1.04))


def _yes(rng, p) -> int:
    return 2 if rng.random() < p else 1


def sample_identities(pids, seed: int, twin_fraction: float = 0.15) -> list[Identity]:
    """One :class:`Identity` per pid, deterministic for ``seed``.

    A ``twin_fraction`` of identities copy all 27 attributes of an earlier one
    and differ only in the finer traits.
    """
    rng = np.random.default_rng([seed, 7])
    identities: list[Identity] = []
    for pid in pids:
        if identities and rng.random() < twin_fraction:
            source = identities[int(rng.integers(len(identities)))]
            ident = Identity(**{k: v for k, v in asdict(source).items() if k in _ATTRIBUTE_FIELDS}, pid=int(pid))
            ident.twin_of = source.pid
        else:
            gender = _yes(rng, 0.45)
            female = gender == 2
            clothes = 1 if (female and rng.random() < 0.3) else 2
            ident = Identity(
                pid=int(pid), gender=gender, age=int(rng.choice(4, p=(0.06, 0.7, 0.18, 0.06))) + 1,
                hair=_yes(rng, 0.8 if female else 0.1), hat=_yes(rng, 0.1),
                clothes=clothes, down=_yes(rng, 0.35), up=_yes(rng, 0.6),
                backpack=_yes(rng, 0.25), bag=_yes(rng, 0.2), handbag=_yes(rng, 0.1),
                upper_colour=list(UPPER_COLOURS)[rng.choice(8, p=_UPPER_P)],
                lower_colour=list(LOWER_COLOURS)[rng.choice(9, p=_LOWER_P)],
            )
        _fine_traits(rng, ident)
        identities.append(ident)
    return identities


_ATTRIBUTE_FIELDS = (
    "gender", "age", "hair", "hat", "clothes", "down", "up", "backpack", "bag", "handbag",
    "upper_colour", "lower_colour",
)


# ----------------------------------------------------------------------------- drawing
class _Canvas:
    """An RGB float image plus the mask of the layer being drawn; every primitive
    touches only the pixels of its bounding box."""

    def __init__(self, image: np.ndarray):
        self.image = image  # (H, W, 3) float32
        self.height, self.width = image.shape[:2]
        self.ys = np.arange(self.height, dtype=np.float32)
        self.xs = np.arange(self.width, dtype=np.float32)
        self.layer = np.zeros((self.height, self.width), bool)

    def _box(self, x0, x1, y0, y1):
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, self.width)
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, self.height)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def _paint(self, box, inside, colour):
        rows, cols = box
        if callable(colour):
            colour = colour(self.ys[rows][:, None], self.xs[cols][None, :])  # (h, w, 3)
            self.image[rows, cols][inside] = colour[inside]
        else:
            self.image[rows, cols][inside] = colour
        self.layer[rows, cols] |= inside

    def capsule(self, p0, p1, radius, colour):
        (x0, y0), (x1, y1) = p0, p1
        box = self._box(min(x0, x1) - radius, max(x0, x1) + radius, min(y0, y1) - radius, max(y0, y1) + radius)
        if box is None:
            return
        py, px = self.ys[box[0]][:, None], self.xs[box[1]][None, :]  # (h, 1), (1, w)
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        inside = (px - x0 - t * dx) ** 2 + (py - y0 - t * dy) ** 2 <= radius * radius  # (h, w)
        self._paint(box, inside, colour)

    def ellipse(self, centre, rx, ry, colour):
        cx, cy = centre
        box = self._box(cx - rx, cx + rx, cy - ry, cy + ry)
        if box is None:
            return
        py, px = self.ys[box[0]][:, None], self.xs[box[1]][None, :]
        inside = ((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2 <= 1.0
        self._paint(box, inside, colour)

    def ring(self, centre, radius, thickness, colour):
        cx, cy = centre
        box = self._box(cx - radius - thickness, cx + radius + thickness, cy - radius - thickness, cy + radius + thickness)
        if box is None:
            return
        py, px = self.ys[box[0]][:, None], self.xs[box[1]][None, :]
        inside = np.abs(np.sqrt((px - cx) ** 2 + (py - cy) ** 2) - radius) <= thickness
        self._paint(box, inside, colour)

    def polygon(self, points, colour):
        """A convex polygon (any winding)."""
        pts = np.asarray(points, dtype=np.float32)
        box = self._box(pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max())
        if box is None:
            return
        py, px = self.ys[box[0]][:, None], self.xs[box[1]][None, :]
        nxt = np.roll(pts, -1, axis=0)
        area2 = float(np.sum(pts[:, 0] * nxt[:, 1] - nxt[:, 0] * pts[:, 1]))
        orient = 1.0 if area2 >= 0 else -1.0
        inside = np.ones((py.shape[0], px.shape[1]), bool)
        for (ax, ay), (bx, by) in zip(pts, nxt):
            inside &= orient * ((bx - ax) * (py - ay) - (by - ay) * (px - ax)) >= -0.5
        self._paint(box, inside, colour)

    def rect(self, x0, y0, x1, y1, colour):
        box = self._box(x0, x1, y0, y1)
        if box is None:
            return
        inside = np.ones((box[0].stop - box[0].start, box[1].stop - box[1].start), bool)
        self._paint(box, inside, colour)


def _pattern_fill(ident: Identity, top: float):
    base = np.asarray(ident.upper_rgb, np.float32)
    second = np.asarray(ident.pattern_rgb, np.float32)
    period = ident.pattern_period
    if ident.pattern == "plain":
        return base
    if ident.pattern == "twotone":
        return lambda py, px: np.where((py + 0 * px >= top)[..., None], second, base)

    def fill(py, px):
        coord = py + 0 * px if ident.pattern == "hstripes" else px + 0 * py
        return np.where(((coord // period) % 2 == 1)[..., None], second, base)

    return fill


@dataclass
class Pose:
    """Per-image posture: walking phase, facing and small random limb offsets."""

    phase: float
    front: bool
    lean: float
    limb_jitter: np.ndarray  # (8,) radians: l/r upper arm, forearm, thigh, shin
    arm_bend: float

    @staticmethod
    def sample(rng) -> "Pose":
        return Pose(
            phase=float(rng.uniform(0, 2 * np.pi)), front=bool(rng.random() < 0.5),
            lean=float(rng.uniform(-0.02, 0.02)), limb_jitter=rng.uniform(-0.15, 0.15, 8),
            arm_bend=float(rng.uniform(0.0, 0.5)),
        )


def _limb(start, angle, length, outward):
    """End of a limb hanging from ``start`` at ``angle`` radians from straight down,
    positive = away from the body (``outward`` = +1 towards larger x)."""
    return (start[0] + outward * length * np.sin(angle), start[1] + length * np.cos(angle))


def draw_person(canvas: _Canvas, ident: Identity, pose: Pose, cx: float, top: float, size: float) -> np.ndarray:
    """Draw one pedestrian; returns its COCO-17 keypoints ``(17, 2)`` (x, y) in pixels.

    ``size`` is the person's height in pixels (head top to sole), ``(cx, top)``
    the head-top centre. Left/right are the person's own: facing the camera
    (``pose.front``) their left side is at larger x.
    """
    s = size * ident.height
    bw = ident.width
    side = 1.0 if pose.front else -1.0  # image direction of the person's left
    skin, hair_rgb, acc = ident.skin_rgb, ident.hair_rgb, ident.accessory_rgb
    upper, lower = ident.upper_rgb, ident.lower_rgb
    lean = pose.lean * s
    head_r = 0.062 * s
    head = (cx + lean, top + head_r)
    sh_y, hip_y = top + 0.17 * s, top + 0.52 * s
    sh_w, hip_w = 0.125 * s * bw, 0.082 * s * bw
    l_sh, r_sh = (cx + lean + side * sh_w, sh_y), (cx + lean - side * sh_w, sh_y)
    l_hip, r_hip = (cx + side * hip_w, hip_y), (cx - side * hip_w, hip_y)
    swing = np.sin(pose.phase)
    j = pose.limb_jitter
    # Arms swing opposite to the legs on the same side.
    l_el = _limb(l_sh, 0.12 - 0.25 * swing + j[0], 0.18 * s, side)
    r_el = _limb(r_sh, 0.12 + 0.25 * swing + j[1], 0.18 * s, -side)
    l_wr = _limb(l_el, 0.12 - 0.25 * swing + j[2] - pose.arm_bend, 0.16 * s, side)
    r_wr = _limb(r_el, 0.12 + 0.25 * swing + j[3] - pose.arm_bend, 0.16 * s, -side)
    l_kn = _limb(l_hip, 0.04 + 0.2 * swing + j[4] * 0.5, 0.235 * s, side)
    r_kn = _limb(r_hip, 0.04 - 0.2 * swing + j[5] * 0.5, 0.235 * s, -side)
    l_an = _limb(l_kn, 0.02 + 0.1 * swing + j[6] * 0.5, 0.225 * s, side)
    r_an = _limb(r_kn, 0.02 - 0.1 * swing + j[7] * 0.5, 0.225 * s, -side)

    arm_r, thigh_r, shin_r = 0.033 * s * bw, 0.046 * s * bw, 0.038 * s * bw
    long_hair = ident.hair == 2
    if long_hair and pose.front:  # hair falls behind the shoulders
        canvas.rect(head[0] - 1.1 * head_r, head[1], head[0] + 1.1 * head_r, sh_y + 0.1 * s, hair_rgb)
    if ident.backpack == 2 and pose.front:  # seen from the front: sticks out behind the torso
        canvas.rect(cx - sh_w * 1.12, sh_y + 0.03 * s, cx + sh_w * 1.12, hip_y - 0.06 * s, acc)

    # legs and lower clothing
    for hip, knee, ankle in ((l_hip, l_kn, l_an), (r_hip, r_kn, r_an)):
        if ident.clothes == 1:  # dress: bare legs under it
            canvas.capsule(hip, knee, thigh_r * 0.75, skin)
            canvas.capsule(knee, ankle, shin_r * 0.8, skin)
        elif ident.down == 2:  # shorts
            canvas.capsule(hip, knee, thigh_r, lower)
            canvas.capsule(knee, ankle, shin_r * 0.85, skin)
        else:
            canvas.capsule(hip, knee, thigh_r, lower)
            canvas.capsule(knee, ankle, shin_r, lower)
        canvas.ellipse((ankle[0], ankle[1] + 0.014 * s), 0.045 * s, 0.024 * s, ident.shoe_rgb)
    if ident.clothes == 1:
        bottom = (l_an[1] + r_an[1]) / 2 - 0.04 * s if ident.down == 1 else (l_kn[1] + r_kn[1]) / 2
        spread = hip_w * 1.7 + 0.1 * (bottom - hip_y)
        canvas.polygon(
            [(cx - hip_w * 1.15, hip_y - 0.05 * s), (cx + hip_w * 1.15, hip_y - 0.05 * s),
             (cx + spread, bottom), (cx - spread, bottom)],
            lower,
        )

    # torso (slightly above the shoulder line so the neck point is covered) and shoulders
    torso_fill = _pattern_fill(ident, top + 0.34 * s)
    canvas.polygon(
        [(l_sh[0], sh_y - 0.02 * s), (r_sh[0], sh_y - 0.02 * s),
         (r_hip[0] - side * 0.01 * s, hip_y + 0.01 * s), (l_hip[0] + side * 0.01 * s, hip_y + 0.01 * s)],
        torso_fill,
    )
    canvas.capsule(l_sh, r_sh, 0.036 * s, torso_fill)
    if ident.backpack == 2 and not pose.front:
        canvas.rect(cx - sh_w * 0.8, sh_y + 0.03 * s, cx + sh_w * 0.8, hip_y - 0.04 * s, acc)
    if ident.backpack == 2 and pose.front:  # straps
        for shoulder in (l_sh, r_sh):
            canvas.capsule(shoulder, (shoulder[0] * 0.8 + cx * 0.2, hip_y - 0.08 * s), 0.012 * s, acc)
    canvas.capsule((head[0], head[1] + head_r * 0.5), ((l_sh[0] + r_sh[0]) / 2, sh_y), 0.03 * s, skin)  # neck

    # arms
    sleeve = upper if ident.up == 1 else skin
    for shoulder, elbow, wrist in ((l_sh, l_el, l_wr), (r_sh, r_el, r_wr)):
        canvas.capsule(shoulder, elbow, arm_r, upper)
        canvas.capsule(elbow, wrist, arm_r * 0.9, sleeve)
        canvas.ellipse(wrist, 0.028 * s, 0.03 * s, skin)

    # head, hair, hat
    if pose.front:
        canvas.ellipse((head[0], head[1] - 0.2 * head_r), head_r * 1.03, head_r * 0.95, hair_rgb)
        canvas.ellipse((head[0], head[1] + 0.12 * head_r), head_r * 0.86, head_r * 0.9, skin)
    else:
        canvas.ellipse(head, head_r, head_r, hair_rgb)
        if long_hair:
            canvas.rect(head[0] - 1.05 * head_r, head[1], head[0] + 1.05 * head_r, sh_y + 0.11 * s, hair_rgb)
    if ident.hat == 2:
        hat_rgb = acc
        canvas.ellipse((head[0], head[1] - 0.55 * head_r), 1.05 * head_r, 0.6 * head_r, hat_rgb)
        canvas.rect(head[0] - 1.35 * head_r, head[1] - 0.45 * head_r, head[0] + 1.35 * head_r, head[1] - 0.25 * head_r, hat_rgb)

    # bags
    if ident.bag == 2:  # shoulder bag on the person's right hip, strap across the torso
        canvas.capsule(l_sh, (r_hip[0], hip_y - 0.02 * s), 0.011 * s, acc)
        bx = r_hip[0] - side * 0.05 * s
        canvas.rect(bx - 0.06 * s, hip_y - 0.04 * s, bx + 0.06 * s, hip_y + 0.06 * s, acc)
    if ident.handbag == 2:
        canvas.rect(l_wr[0] - 0.04 * s, l_wr[1] + 0.02 * s, l_wr[0] + 0.04 * s, l_wr[1] + 0.1 * s, acc)

    # keypoints: the face points lie inside the head disc
    nose = (head[0], head[1] + 0.25 * head_r)
    l_eye, r_eye = (head[0] + side * 0.35 * head_r, head[1] - 0.05 * head_r), (head[0] - side * 0.35 * head_r, head[1] - 0.05 * head_r)
    l_ear, r_ear = (head[0] + side * 0.8 * head_r, head[1] + 0.05 * head_r), (head[0] - side * 0.8 * head_r, head[1] + 0.05 * head_r)
    return np.array(
        [nose, l_eye, r_eye, l_ear, r_ear, l_sh, r_sh, l_el, r_el, l_wr, r_wr,
         l_hip, r_hip, l_kn, r_kn, l_an, r_an],
        dtype=np.float32,
    )  # (17, 2)


# ----------------------------------------------------------------------------- cameras
@dataclass
class Camera:
    """One camera's look: colour response, framing and background panorama."""

    gain: np.ndarray  # (3,)
    bias: float
    scale: float  # person height / image height
    offset_x: float
    offset_y: float
    panorama: np.ndarray = field(repr=False)  # (H, 3W, 3) float32

    @staticmethod
    def sample(rng, height: int, width: int) -> "Camera":
        pano_w = 3 * width
        wall = rng.uniform(60, 200, 3)
        floor = rng.uniform(50, 170, 3)
        horizon = int(height * rng.uniform(0.55, 0.8))
        ys = np.arange(height, dtype=np.float32)[:, None, None]
        pano = np.empty((height, pano_w, 3), np.float32)
        pano[:horizon] = wall + (ys[:horizon] / height - 0.3) * rng.uniform(-60, 60, 3)  # (h, 1, 3) gradient
        pano[horizon:] = floor + (ys[horizon:] / height - 0.8) * rng.uniform(-80, 80, 3)
        x = 0
        while x < pano_w:  # vertical structures: doors, windows, poles, shop fronts
            w = int(rng.integers(3, 18))
            if rng.random() < 0.5:
                y0 = int(rng.integers(0, max(1, horizon - 10)))
                pano[y0:horizon, x:x + w] = rng.uniform(20, 235, 3)
            x += w + int(rng.integers(2, 20))
        pano += rng.normal(0, 4, pano.shape).astype(np.float32)
        return Camera(
            gain=rng.uniform(0.72, 1.22, 3).astype(np.float32), bias=float(rng.uniform(-18, 18)),
            scale=float(rng.uniform(0.8, 0.93)), offset_x=float(rng.uniform(-3, 3)),
            offset_y=float(rng.uniform(-3, 3)), panorama=pano,
        )


def make_cameras(num_cameras: int, height: int, width: int, seed: int) -> list[Camera]:
    return [Camera.sample(np.random.default_rng([seed, 1000 + c]), height, width) for c in range(num_cameras)]


# ----------------------------------------------------------------------------- one image
@dataclass
class ImageSpec:
    """Everything that decides one image, except the per-image random draws."""

    index: int  # image i is drawn from default_rng([seed, i])
    relpath: str  # e.g. "bounding_box_train/0002_c1s1_000001_01.jpg"
    pid: int  # 0 distractor, -1 junk
    camid: int  # 0-based
    identity: Identity | None
    occluder: str | None  # one of OCCLUDER_KINDS or None


@dataclass
class RenderedImage:
    image: np.ndarray  # (H, W, 3) uint8
    person_mask: np.ndarray  # (H, W) bool: pixels of the drawn person (before occlusion)
    occluder_mask: np.ndarray  # (H, W) bool
    keypoints: np.ndarray  # (17, 3) float32 x, y, visible; integer pixels; missing = (-1, -1, 0)


def _draw_occluder(canvas: _Canvas, kind: str, rng, cx: float, top: float, size: float, identities_pool,
                   exclude_pid: int) -> None:
    """A pole, a bike-like shape or another (partly visible) person over the image."""
    h, w = canvas.height, canvas.width
    grey = rng.uniform(40, 200) * np.ones(3) + rng.uniform(-20, 20, 3)
    if kind == "pole":
        x = cx + rng.uniform(-0.2, 0.2) * w
        canvas.rect(x - rng.uniform(1.5, 4), -1, x + rng.uniform(1.5, 4), h + 1, grey)
    elif kind == "bike":
        r = size * rng.uniform(0.11, 0.14)
        y = top + size * rng.uniform(0.82, 0.9)
        x0 = cx + rng.uniform(-0.45, -0.15) * w
        x1 = x0 + 2.6 * r
        colour = rng.uniform(10, 230, 3)
        canvas.ring((x0, y), r, 1.3, (25, 25, 25))
        canvas.ring((x1, y), r, 1.3, (25, 25, 25))
        saddle = (x0 + 0.9 * r, y - 1.6 * r)
        bar = (x1 - 0.2 * r, y - 1.9 * r)
        for a, b in (((x0, y), saddle), (saddle, (x0 + 1.4 * r, y)), ((x0 + 1.4 * r, y), bar),
                     (saddle, (bar[0], bar[1] + 0.3 * r)), (bar, (x1, y))):
            canvas.capsule(a, b, 1.2, colour)
    else:  # another person, partly in frame at one side
        others = [i for i in identities_pool if i.pid != exclude_pid] or identities_pool
        other = others[int(rng.integers(len(others)))]
        direction = 1.0 if rng.random() < 0.5 else -1.0
        draw_person(canvas, other, Pose.sample(rng), cx + direction * w * rng.uniform(0.5, 0.7), top + rng.uniform(-4, 6), size * rng.uniform(0.95, 1.1))


def render_image(spec: ImageSpec, cameras: list[Camera], identities: list[Identity], seed: int,
                 height: int = 128, width: int = 64, draw_occluder: bool = True) -> RenderedImage:
    """Draw image ``spec.index`` exactly as :func:`make_synthetic_dataset` does."""
    rng = np.random.default_rng([seed, spec.index])
    cam = cameras[spec.camid]
    shift = int(rng.integers(0, cam.panorama.shape[1] - width + 1))
    canvas = _Canvas(cam.panorama[:, shift:shift + width].copy())  # (H, W, 3)
    size = height * cam.scale * rng.uniform(0.95, 1.04)
    cx = width / 2 + cam.offset_x + rng.uniform(-3, 3)
    top = (height - size) / 2 + cam.offset_y + rng.uniform(-2, 2)
    pose = Pose.sample(rng)
    if spec.pid <= 0:  # distractor / junk: a badly framed person or fragment
        ident = identities[int(rng.integers(len(identities)))]
        zoom = rng.uniform(1.6, 2.6)
        size, top = size * zoom, top - rng.uniform(0.0, 0.6) * size * zoom
        cx += rng.uniform(-0.4, 0.4) * width
    else:
        ident = spec.identity
    keypoints_xy = draw_person(canvas, ident, pose, cx, top, size)  # (17, 2)
    person_mask = canvas.layer.copy()
    canvas.layer[:] = False
    occluder_rng = np.random.default_rng([seed, spec.index, 1])  # separate stream: same person with/without occluder
    if spec.occluder is not None and draw_occluder:
        _draw_occluder(canvas, spec.occluder, occluder_rng, cx, top, size, identities, ident.pid)
    occluder_mask = canvas.layer.copy()

    image = canvas.image * cam.gain + cam.bias  # camera colour response
    image += rng.normal(0, 2.5, image.shape).astype(np.float32)
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)

    keypoints = np.full((17, 3), -1.0, np.float32)
    keypoints[:, 2] = 0.0
    rounded = np.rint(keypoints_xy).astype(np.int64)  # (17, 2)
    inside = (rounded[:, 0] >= 0) & (rounded[:, 0] < width) & (rounded[:, 1] >= 0) & (rounded[:, 1] < height)
    xs, ys = np.clip(rounded[:, 0], 0, width - 1), np.clip(rounded[:, 1], 0, height - 1)
    visible = inside & person_mask[ys, xs] & ~occluder_mask[ys, xs]
    if not pose.front:
        visible[:3] = False  # nose and eyes face away
    keypoints[visible, 0] = rounded[visible, 0]
    keypoints[visible, 1] = rounded[visible, 1]
    keypoints[visible, 2] = 1.0
    return RenderedImage(image, person_mask, occluder_mask, keypoints)


# ----------------------------------------------------------------------------- planning
def _params(num_ids, images_per_id, num_cameras, height, width, occluder_fraction, seed) -> dict:
    return {
        "num_ids": int(num_ids), "images_per_id": int(images_per_id), "num_cameras": int(num_cameras),
        "height": int(height), "width": int(width), "occluder_fraction": float(occluder_fraction), "seed": int(seed),
    }


@dataclass
class SyntheticPlan:
    params: dict
    identities: list[Identity]
    train_pids: list[int]
    test_pids: list[int]
    images: list[ImageSpec]
    cameras: list[Camera]


def plan_dataset(num_ids: int = DEFAULT_NUM_IDS, images_per_id: int = DEFAULT_IMAGES_PER_ID, num_cameras: int = 6,
                 height: int = 128, width: int = 64, occluder_fraction: float = 0.2, seed: int = 0) -> SyntheticPlan:
    """Decide every identity, file name, camera and occluder (no drawing)."""
    if num_ids < 2:
        raise ValueError(f"num_ids must be at least 2 (one train and one test identity), got {num_ids}")
    if images_per_id < 2:
        raise ValueError(f"images_per_id must be at least 2, got {images_per_id}")
    if not 2 <= num_cameras <= 9:
        raise ValueError(f"num_cameras must be 2..9 (Market names hold one digit), got {num_cameras}")
    if not 0.0 <= occluder_fraction <= 1.0:
        raise ValueError(f"occluder_fraction must be in [0, 1], got {occluder_fraction}")
    if num_ids > 9999:
        raise ValueError(f"num_ids must be at most 9999 (Market ids have four digits), got {num_ids}")
    params = _params(num_ids, images_per_id, num_cameras, height, width, occluder_fraction, seed)
    rng = np.random.default_rng([seed, 1])
    # Sparse ids as in Market (0002, 0007, ...), alternately train / test.
    pool = np.arange(1, min(9999, 3 * num_ids) + 1)
    pids = np.sort(rng.choice(pool, num_ids, replace=False))
    is_train = np.zeros(num_ids, bool)
    is_train[rng.permutation(num_ids)[: (num_ids + 1) // 2]] = True
    identities = sample_identities(pids.tolist(), seed)
    by_pid = {ident.pid: ident for ident in identities}
    train_pids = [int(p) for p in pids[is_train]]
    test_pids = [int(p) for p in pids[~is_train]]

    entries: list[tuple[str, int, int, Identity | None]] = []  # (subset, pid, cam, identity)
    for pid in pids.tolist():
        n = max(2, images_per_id + int(rng.integers(-2, 3)))
        n_cams = int(rng.integers(2, min(num_cameras, n) + 1))
        cams = rng.permutation(num_cameras)[:n_cams]
        image_cams = [int(cams[i % n_cams]) for i in range(n)]
        if pid in train_pids:
            entries += [("bounding_box_train", pid, c, by_pid[pid]) for c in image_cams]
            continue
        # Queries: one per camera, at most two, always leaving a gallery image from another camera.
        remaining = list(image_cams)
        queries = []
        for c in dict.fromkeys(image_cams):
            if len(queries) == 2:
                break
            trial = list(remaining)
            trial.remove(c)
            if all(any(other != q for other in trial) for q in (*queries, c)):
                queries.append(c)
                remaining = trial
        entries += [("query", pid, c, by_pid[pid]) for c in queries]
        entries += [("bounding_box_test", pid, c, by_pid[pid]) for c in remaining]
    n_test = len(test_pids)
    for pid, count in ((0, max(2, n_test // 8)), (-1, max(2, n_test // 16))):
        entries += [("bounding_box_test", pid, int(rng.integers(num_cameras)), None) for _ in range(count)]

    images = []
    for index, (subset, pid, cam, ident) in enumerate(entries):
        occluded = subset != "bounding_box_test" or pid > 0
        occluder = OCCLUDER_KINDS[int(rng.integers(3))] if (occluded and rng.random() < occluder_fraction) else None
        seq = 1 + int(rng.integers(6))
        name = f"{pid:04d}" if pid >= 0 else "-1"
        relpath = f"{subset}/{name}_c{cam + 1}s{seq}_{index + 1:06d}_{int(rng.integers(1, 9)):02d}.jpg"
        images.append(ImageSpec(index, relpath, pid, cam, ident, occluder))
    return SyntheticPlan(params, identities, train_pids, test_pids, images, make_cameras(num_cameras, height, width, seed))


# ----------------------------------------------------------------------------- writing

def _write_attributes(path: Path, plan: SyntheticPlan) -> None:
    """market_attribute.mat in Lin et al.'s layout: struct with train/test, fields (1, N) uint8 + image_index cell."""
    import scipy.io

    by_pid = {ident.pid: ident for ident in plan.identities}

    def struct(pids, order):
        table = [by_pid[p].market_attributes() for p in pids]
        fields = {name: np.array([[row[name] for row in table]], dtype=np.uint8) for name in order}
        index = np.empty((1, len(pids)), dtype=object)
        for i, p in enumerate(pids):
            index[0, i] = f"{p:04d}"
        fields["image_index"] = index
        return fields

    # The real file orders fields differently in train and test; so do we (loaders must index by name).
    train_order = sorted(MARKET_ATTRIBUTE_NAMES, key=lambda n: (n not in ("age", "backpack", "bag", "handbag"), n))
    scipy.io.savemat(
        str(path),
        {"market_attribute": {"train": struct(plan.train_pids, train_order), "test": struct(plan.test_pids, MARKET_ATTRIBUTE_NAMES)}},
        do_compression=True,
    )
    # The 116-byte text header carries a creation time; a fixed one keeps the file byte-identical per seed.
    header = f"MATLAB 5.0 MAT-file, reidlab synthetic dataset v{GENERATOR_VERSION}".encode("ascii").ljust(116, b" ")
    with open(path, "r+b") as f:
        f.write(header)


def _write_identities(path: Path, identities: list[Identity]) -> None:
    rows = [asdict(i) for i in identities]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (" ".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in row.items()})


# ----------------------------------------------------------------------------- the marker and safe replacement
# The generator must never lose a user's data. Its rules:
# - it writes only into a missing or empty folder, or into a folder holding its own marker
#   (meta.json with "generator": MARKER, the version, the parameters and the list of files it wrote);
#   any other folder is an error, with or without overwrite;
# - a marker folder with the same version and parameters (and all its files present) is reused;
#   other parameters or an older version re-create it (it is ours): data keyed by its parameters;
#   a newer version, or overwrite=True with the same parameters, needs overwrite=True;
# - it deletes only the files listed in the marker: a marker folder that also holds files it did
#   not write is an error naming them (move them out), even with overwrite;
# - the dataset is drawn into a hidden temporary sibling folder and renamed into place at the end,
#   so an interrupted run leaves no half dataset at ``root`` (and its temporary folder is removed
#   on a Python-level failure, or by the next run when the process was killed).
MARKER = "reidlab.data.synthetic"
_PARTIAL_TAG = ".reidlab-synthetic-partial"  # inside a temporary folder: it is ours to remove
_ANNOTATION_FILES = ("market_attribute.mat", "market-annotation-train.csv", "market-annotation-test.csv",
                     "occluders.json", "identities.csv", "meta.json")


def generated_files(plan: SyntheticPlan) -> list[str]:
    """Every file (relative POSIX path) that writing ``plan`` creates, ``meta.json`` included."""
    files = [spec.relpath for spec in plan.images]
    files += [f"masks/{Path(spec.relpath).with_suffix('.png').as_posix()}" for spec in plan.images if spec.occluder]
    return sorted([*files, *_ANNOTATION_FILES])


def read_marker(root) -> dict | None:
    """The generator's ``meta.json`` in ``root``, or None when ``root`` holds no valid marker."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("generator") != MARKER:
        return None
    if not isinstance(meta.get("version"), int) or not isinstance(meta.get("params"), dict):
        return None
    return meta


def _marker_files(meta: dict) -> set[str] | None:
    """The files a marker says the generator wrote; None when it cannot tell."""
    files = meta.get("files")
    if files is None and meta.get("version") == 1:
        # Version-1 markers written before the file list: the plan (deterministic) gives it.
        try:
            files = generated_files(plan_dataset(**meta["params"]))
        except (TypeError, ValueError):
            return None
    if not isinstance(files, list) or not all(safe_relative(name) for name in files):
        return None
    return set(files)


def _foreign_entries(root: Path, ours: set[str]) -> list[str]:
    """Files (and folders holding none of ours) under ``root`` that the generator did not write."""
    our_dirs = {parent.as_posix() for name in ours for parent in Path(name).parents if parent != Path(".")}
    foreign = []
    for dirpath, dirnames, filenames in os.walk(root):
        relative = Path(dirpath).relative_to(root)
        for name in filenames:
            if (relative / name).as_posix() not in ours:
                foreign.append((relative / name).as_posix())
        for name in dirnames:
            entry = (relative / name).as_posix()
            if entry not in our_dirs or (Path(dirpath) / name).is_symlink():
                foreign.append(entry + "/")
        dirnames[:] = [d for d in dirnames if (relative / d).as_posix() in our_dirs]
    return sorted(foreign)


def _not_ours_error(root: Path) -> ValueError:
    return ValueError(
        f"{root} is not empty and holds no synthetic-dataset marker ({root / 'meta.json'} from {MARKER}): "
        "the generator writes only into a new or empty folder or one it made, and never deletes files it did "
        "not write (--overwrite does not change that). Choose another --root; if the folder holds your own "
        "images, load them with their dataset name (e.g. --dataset market1501)."
    )


def _inspect_root(root: Path, params: dict, overwrite: bool) -> tuple[str, set[str]]:
    """What to do at ``root``: ("reuse" | "create" | "replace", files of the dataset there)."""
    if not root.exists():
        return "create", set()
    if not root.is_dir():
        raise ValueError(f"{root} is a file, not a folder: choose another root for the synthetic dataset")
    if not any(root.iterdir()):
        return "create", set()
    meta = read_marker(root)
    if meta is None:
        raise _not_ours_error(root)
    ours = _marker_files(meta)
    if ours is None:
        raise ValueError(
            f"{root / 'meta.json'} (generator version {meta.get('version')}) does not list the files it wrote, "
            f"so they cannot be replaced safely: delete {root} yourself or choose another root"
        )
    version = meta["version"]
    if version > GENERATOR_VERSION and not overwrite:
        raise ValueError(
            f"{root} holds a synthetic dataset of a newer generator (version {version} > {GENERATOR_VERSION}); "
            "pass overwrite=True (CLI: --overwrite) to re-create it with this version, or choose another root"
        )
    complete = all((root / name).is_file() for name in ours)
    if version == GENERATOR_VERSION and meta["params"] == params and complete and not overwrite:
        return "reuse", ours
    foreign = _foreign_entries(root, ours)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(
            f"{root} holds a synthetic dataset to re-create but also {len(foreign)} file(s) the generator did not "
            f"write ({shown}); move them out of {root} and retry (the generator never deletes files it did not write)"
        )
    return "replace", ours


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_temporaries(root: Path) -> None:
    """Temporary folders of killed runs for this ``root`` (tagged as ours, their process gone)."""
    if os.name != "posix" or not root.parent.is_dir():
        return  # the process-alive test below is POSIX-only
    prefix = f".{root.name}."
    for folder in [child for child in root.parent.iterdir() if child.name.startswith(prefix)]:
        kind, _, rest = folder.name[len(prefix):].partition("-")
        pid = rest.partition("-")[0]
        if kind not in ("partial", "old") or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        meta = read_marker(folder)
        listed = _marker_files(meta) if meta is not None else None
        # Ours: tagged while being written or replaced, or a whole marker dataset and nothing else.
        if (folder / _PARTIAL_TAG).is_file() or (listed is not None and not _foreign_entries(folder, listed)):
            log.info("removing %s, left by an interrupted synthetic-dataset run", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _sibling(root: Path, kind: str) -> Path:
    return root.parent / f".{root.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_listed(folder: Path, files: set[str]) -> list[str]:
    """Delete the listed files under ``folder``, then its folders that became empty; returns what is left."""
    for name in files:
        (folder / name).unlink(missing_ok=True)
    (folder / _PARTIAL_TAG).unlink(missing_ok=True)
    for dirpath, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            Path(dirpath).rmdir()  # only succeeds on an empty folder
        except OSError:
            pass
    return [] if not folder.exists() else _foreign_entries(folder, set())


def _install(staged: Path, root: Path, action: str) -> None:
    """Move the finished dataset ``staged`` to ``root`` (renames: never a half dataset at ``root``)."""
    if action == "create":
        if root.is_dir():
            root.rmdir()  # empty (checked); fails if something appeared meanwhile
        os.rename(staged, root)
        return
    old = _sibling(root, "old")
    os.rename(root, old)
    (old / _PARTIAL_TAG).touch()  # a kill from here on: the next run removes ``old``
    try:
        os.rename(staged, root)
    except OSError:
        os.rename(old, root)
        (root / _PARTIAL_TAG).unlink(missing_ok=True)
        raise
    # Another process may have replaced ``root`` between our check and the rename: delete what the
    # marker of the folder actually moved lists, and nothing when it has none.
    meta = read_marker(old)
    listed = _marker_files(meta) if meta is not None else None
    left = _remove_listed(old, listed) if listed is not None else [str(old)]
    if left:
        log.warning("kept %s: it holds files the generator did not write (%s)", old, ", ".join(left[:5]))


def _write_dataset(out: Path, plan: SyntheticPlan, progress: bool, label: Path) -> None:
    """Draw and write every file of ``plan`` into the folder ``out`` (meta.json last)."""
    from PIL import Image
    from reidlab.progress import tqdm

    from reidlab.data.keypoints import coco17_to_openpose18, write_pose_csv

    params = plan.params
    for sub in ("bounding_box_train", "bounding_box_test", "query"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    poses_train, poses_test, occluders = {}, {}, {}
    for spec in tqdm(plan.images, desc=f"synthetic dataset -> {label}", disable=not progress, unit="img"):
        rendered = render_image(spec, plan.cameras, plan.identities, params["seed"], params["height"], params["width"])
        Image.fromarray(rendered.image).save(out / spec.relpath, quality=92)
        if spec.occluder is not None:
            mask_path = out / "masks" / Path(spec.relpath).with_suffix(".png")
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rendered.occluder_mask.astype(np.uint8) * 255).save(mask_path)
            occluders[spec.relpath] = spec.occluder
        pose18 = coco17_to_openpose18(rendered.keypoints)  # (18, 2) y, x
        pose18[1] = np.where(pose18[1] >= 0, np.floor(pose18[1]), -1)  # integer neck, as in the real files
        (poses_train if spec.relpath.startswith("bounding_box_train") else poses_test)[Path(spec.relpath).name] = pose18
    write_pose_csv(out / "market-annotation-train.csv", poses_train)
    write_pose_csv(out / "market-annotation-test.csv", poses_test)
    _write_attributes(out / "market_attribute.mat", plan)
    _write_identities(out / "identities.csv", plan.identities)
    (out / "occluders.json").write_text(json.dumps(occluders, indent=0, sort_keys=True))
    counts = {sub: sum(s.relpath.startswith(sub + "/") for s in plan.images) for sub in ("bounding_box_train", "bounding_box_test", "query")}
    meta = {
        "generator": MARKER, "version": GENERATOR_VERSION, "params": params, "counts": counts,
        "train_ids": len(plan.train_pids), "test_ids": len(plan.test_pids), "occluded_images": len(occluders),
        "files": generated_files(plan),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))  # written last: marks a complete dataset


def make_synthetic_dataset(root="data/synthetic", num_ids: int = DEFAULT_NUM_IDS, images_per_id: int = DEFAULT_IMAGES_PER_ID,
                           num_cameras: int = 6, height: int = 128, width: int = 64, occluder_fraction: float = 0.2,
                           seed: int = 0, overwrite: bool = False, progress: bool = True) -> Path:
    """Generate the synthetic dataset at ``root`` (Market-1501 layout); returns ``root``.

    ``num_ids`` counts all identities, about half go to training. Safety rules (see
    the comment above :data:`MARKER`): writes only into a missing or empty folder or
    one holding this generator's ``meta.json``; reuses it when version and parameters
    match, re-creates it in place when they differ (``overwrite=True`` forces that,
    and allows replacing a newer version's dataset); deletes only files it listed;
    any other folder is a ``ValueError`` naming it. The new dataset appears at
    ``root`` in one rename, never half-written.
    """
    root = Path(root)
    params = _params(num_ids, images_per_id, num_cameras, height, width, occluder_fraction, seed)
    action, _ = _inspect_root(root, params, overwrite)
    if action == "reuse":
        log.info("reusing the synthetic dataset at %s", root)
        return root
    plan = plan_dataset(**params)  # validates the parameters before anything is written
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    staged = _sibling(root, "partial")
    staged.mkdir()
    try:
        (staged / _PARTIAL_TAG).touch()
        _write_dataset(staged, plan, progress, root)
        (staged / _PARTIAL_TAG).unlink()
        for attempt in range(3):  # another process may be installing the same root at the same time
            if attempt or not overwrite:
                action, _ = _inspect_root(root, params, overwrite=False)
                if action == "reuse":  # it finished first, with our parameters
                    shutil.rmtree(staged)
                    return root
            try:
                _install(staged, root, action)
                return root
            except OSError:
                continue
        raise OSError(f"could not move the synthetic dataset from {staged} to {root}: it kept changing")
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)  # a folder only this call created
        raise


def read_identities(root) -> "pandas.DataFrame":  # noqa: F821
    """identities.csv as a DataFrame indexed by pid (what the generator drew)."""
    import pandas as pd

    path = Path(root) / "identities.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {root} a synthetic dataset?")
    return pd.read_csv(path).set_index("pid")


def load_synthetic(root="data/synthetic", generate_if_missing: bool = True, **generator_kwargs):
    """The synthetic dataset as a :class:`~reidlab.data.records.ReIDSplit`.

    With ``generate_if_missing`` the dataset is generated first when ``root`` holds
    none (see :func:`make_synthetic_dataset` for what it will and will not write),
    re-created when ``generator_kwargs`` differ from its parameters, and re-drawn
    with its own parameters when an older generator version made it. Without it,
    nothing is ever written: a folder without the generator's marker is a
    ``FileNotFoundError`` naming it.

    Occluded images carry ``record.extra["mask_path"]`` (absolute path of the mask PNG)
    and ``record.extra["occluder"]`` (its kind).
    """
    from reidlab.data.market1501 import load_market1501
    from reidlab.data.records import ImageRecord

    root = Path(root)
    meta = read_marker(root)
    if not generate_if_missing:
        if meta is None:
            raise FileNotFoundError(
                f"no synthetic dataset at {root} (no generator marker meta.json); run `reidlab synth --root {root}` "
                "or call load_synthetic(generate_if_missing=True)"
            )
    elif meta is None or generator_kwargs:
        make_synthetic_dataset(root, **generator_kwargs)
    elif meta["version"] < GENERATOR_VERSION:
        log.info("re-drawing the synthetic dataset at %s with generator version %d", root, GENERATOR_VERSION)
        known = _params.__code__.co_varnames[:_params.__code__.co_argcount]
        make_synthetic_dataset(root, **{k: v for k, v in meta["params"].items() if k in known})
    split = load_market1501(root, name="synthetic")
    occluders = json.loads((root / "occluders.json").read_text()) if (root / "occluders.json").exists() else {}

    def with_masks(records):
        out = []
        for r in records:
            rel = f"{Path(r.path).parent.name}/{Path(r.path).name}"
            kind = occluders.get(rel)
            if kind is None:
                out.append(r)
                continue
            mask = (root / "masks" / Path(rel).with_suffix(".png")).resolve()
            out.append(ImageRecord(r.path, r.pid, r.camid, r.attributes, r.keypoints,
                                   {**r.extra, "mask_path": str(mask), "occluder": kind}))
        return out

    split.train, split.query, split.gallery = with_masks(split.train), with_masks(split.query), with_masks(split.gallery)
    return split
