"""A parametric 3-D body of tapered elliptic cylinders, rendered with numpy together with its DensePose IUV map.

Every body part is a cylinder around a posed 3-D axis (body frame: x = the person's left, y = down, z = forward,
unit = body height). A visible pixel is mapped back to its surface point (angle θ around the axis, 0 = the part's
front, +π/2 = the person's left side; t along the axis, 0 at the proximal/upper end). Both the garment colour and
the IUV labels are functions of (part, θ, t) only, so the same body point carries the same colour and the same
(I, U, V) in every pose, viewpoint and crop — what DensePose-based re-ID methods rely on.

IUV follows the official DensePose fine-part table (notes/densepose.md §1.5): I = 0 background, 1/2 torso
back/front, 3/4 right/left hand, 5/6 left/right foot, 7–14 legs, 15–22 arms, 23/24 head right/left half.
U runs across each half of a two-sided part from the person's right side to the left side, around the whole
part for hands and feet, and from the face to the back of the head on the head halves; V = 1 − t.
"""
import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

__all__ = [
    "PART_NAMES",
    "Appearance",
    "Pose",
    "PersonLayer",
    "random_appearance",
    "random_pose",
    "render_person",
    "paste_layer",
]

# DensePose fine parts (official order, front/back side from the community reading in notes/densepose.md §1.5).
PART_NAMES = {
    1: "torso back", 2: "torso front", 3: "right hand", 4: "left hand", 5: "left foot", 6: "right foot",
    7: "upper leg right back", 8: "upper leg left back", 9: "upper leg right front", 10: "upper leg left front",
    11: "lower leg right back", 12: "lower leg left back", 13: "lower leg right front", 14: "lower leg left front",
    15: "upper arm left front", 16: "upper arm right front", 17: "upper arm left back", 18: "upper arm right back",
    19: "lower arm left front", 20: "lower arm right front", 21: "lower arm left back", 22: "lower arm right back",
    23: "head right", 24: "head left",
}
# (back, front) labels of the two-sided parts, by body side (+1 = the person's left, -1 = right).
_TORSO = (1, 2)
_UPPER_LEG = {-1: (7, 9), 1: (8, 10)}
_LOWER_LEG = {-1: (11, 13), 1: (12, 14)}
_UPPER_ARM = {-1: (18, 16), 1: (17, 15)}
_LOWER_ARM = {-1: (22, 20), 1: (21, 19)}
_HAND = {-1: 3, 1: 4}
_FOOT = {-1: 6, 1: 5}
_HEAD = (23, 24)  # (right half, left half)

# Small palettes (RGB in [0, 1]): identities share colours, so colour alone does not identify a person.
TOP_COLOURS = np.array([[0.92, 0.92, 0.90], [0.12, 0.12, 0.13], [0.78, 0.14, 0.14], [0.16, 0.30, 0.72],
                        [0.18, 0.55, 0.25], [0.90, 0.78, 0.20], [0.52, 0.53, 0.55], [0.50, 0.22, 0.58]])
BOTTOM_COLOURS = np.array([[0.10, 0.10, 0.12], [0.18, 0.25, 0.45], [0.45, 0.46, 0.48], [0.72, 0.64, 0.45],
                           [0.88, 0.88, 0.86], [0.40, 0.26, 0.16]])
SHOE_COLOURS = np.array([[0.08, 0.08, 0.08], [0.93, 0.93, 0.93], [0.42, 0.27, 0.15], [0.55, 0.55, 0.58]])
HAIR_COLOURS = np.array([[0.06, 0.05, 0.05], [0.22, 0.14, 0.08], [0.42, 0.28, 0.14], [0.80, 0.68, 0.40]])
SKIN_COLOURS = np.array([[0.96, 0.80, 0.68], [0.86, 0.66, 0.52], [0.66, 0.46, 0.32], [0.42, 0.28, 0.19]])
BAG_COLOURS = np.array([[0.10, 0.10, 0.10], [0.45, 0.28, 0.14], [0.70, 0.12, 0.12], [0.15, 0.28, 0.60]])
TOP_PATTERNS = ("solid", "stripes", "two_tone", "logo")
BAGS = ("none", "backpack", "handbag")


@dataclass(frozen=True)
class Appearance:
    """What identifies a person: garment colours and patterns, body shape, accessories."""

    skin: Tuple[float, float, float]
    hair: Tuple[float, float, float]
    top: Tuple[float, float, float]
    top2: Tuple[float, float, float]  # second colour of the top pattern
    bottom: Tuple[float, float, float]
    shoes: Tuple[float, float, float]
    bag_colour: Tuple[float, float, float]
    top_pattern: str = "solid"
    stripes: int = 5  # stripe count on the torso for the "stripes" pattern
    long_sleeves: bool = True
    long_trousers: bool = True
    long_hair: bool = False
    bag: str = "none"
    bag_side: int = 1  # handbag side: +1 left, -1 right
    height: float = 1.0  # relative body height
    width: float = 1.0  # relative body width


@dataclass(frozen=True)
class Pose:
    """One view of a person: yaw (0 = facing the camera, π/2 = walking to the image right), gait, light."""

    yaw: float = 0.0
    phase: float = 0.0  # walking cycle phase in radians
    stride: float = 0.3  # thigh swing amplitude in radians (≈0 standing)
    arm_spread: float = 0.1  # arm abduction in radians
    light: float = 0.0  # light direction around the vertical axis, relative to the camera, in radians


@dataclass
class PersonLayer:
    """A rendered person: float RGB, uint8 IUV (channels I, 255·U, 255·V), a mask, and where the feet are."""

    rgb: np.ndarray  # (h, w, 3) float32 in [0, 1]
    iuv: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool, person and carried objects
    anchor: Tuple[float, float]  # (x, y) of the ground point between the feet, layer pixels


def _pick(rng, palette):
    return tuple(float(c) for c in palette[rng.integers(len(palette))])


def random_appearance(rng: np.random.Generator) -> Appearance:
    """An identity drawn from the small palettes."""
    top = rng.integers(len(TOP_COLOURS))
    top2 = (top + rng.integers(1, len(TOP_COLOURS))) % len(TOP_COLOURS)  # always differs from the top colour
    return Appearance(
        skin=_pick(rng, SKIN_COLOURS), hair=_pick(rng, HAIR_COLOURS),
        top=tuple(TOP_COLOURS[top]), top2=tuple(TOP_COLOURS[top2]),
        bottom=_pick(rng, BOTTOM_COLOURS), shoes=_pick(rng, SHOE_COLOURS), bag_colour=_pick(rng, BAG_COLOURS),
        top_pattern=TOP_PATTERNS[rng.choice(len(TOP_PATTERNS), p=[0.4, 0.2, 0.2, 0.2])],
        stripes=int(rng.integers(3, 7)),
        long_sleeves=bool(rng.random() < 0.6), long_trousers=bool(rng.random() < 0.75),
        long_hair=bool(rng.random() < 0.35),
        bag=BAGS[rng.choice(len(BAGS), p=[0.6, 0.25, 0.15])], bag_side=int(rng.choice([-1, 1])),
        height=float(rng.uniform(0.9, 1.08)), width=float(rng.uniform(0.85, 1.2)),
    )


def random_pose(rng: np.random.Generator, yaw_mean: float = 0.0, yaw_spread: float = 0.35) -> Pose:
    """A walking (or standing) pose around ``yaw_mean``; a third of the people walk the other way."""
    yaw = yaw_mean + (np.pi if rng.random() < 0.3 else 0.0) + rng.normal(0.0, yaw_spread)
    return Pose(yaw=float(yaw), phase=float(rng.uniform(0, 2 * np.pi)), stride=float(rng.uniform(0.03, 0.45)),
                arm_spread=float(rng.uniform(0.04, 0.2)), light=float(rng.uniform(-1.0, 1.0)))


# ------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Part:
    """A tapered elliptic cylinder from ``start`` to ``end`` (body frame)."""

    kind: str  # "two_sided" (back/front labels), "round" (one label), "head" (right/left labels), "object" (I=0)
    labels: Tuple[int, ...]
    start: np.ndarray
    end: np.ndarray
    knots: np.ndarray  # t positions of the lateral half-width profile
    widths: np.ndarray  # lateral half-widths a(t)
    depth_ratio: float  # b / a of the elliptic cross-section
    caps: bool  # round caps at both ends (joints)
    albedo: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (θ, t) → (n, 3) colour


def _direction(side_angle, swing):
    """Unit limb direction hanging down (+y), swung forward (+z) by ``swing``, spread sideways by ``side_angle``."""
    d = np.array([np.sin(side_angle), np.cos(side_angle) * np.cos(swing), np.cos(side_angle) * np.sin(swing)])
    return d / np.linalg.norm(d)


def _colour(c, n):
    return np.broadcast_to(np.asarray(c, np.float32), (n, 3))


def _albedos(a: Appearance):
    """Colour functions (θ, t) → RGB of each garment region."""
    top, top2, skin, hair, bottom = (np.asarray(c, np.float32) for c in (a.top, a.top2, a.skin, a.hair, a.bottom))

    def torso(theta, t):
        if a.top_pattern == "stripes":
            second = (np.floor(t * 2 * a.stripes) % 2) == 1
        elif a.top_pattern == "two_tone":
            second = t > 0.55
        elif a.top_pattern == "logo":  # a print on the chest: front and back views differ
            second = (np.abs(theta) < 0.5) & (t > 0.22) & (t < 0.48)
        else:
            second = np.zeros_like(t, bool)
        colour = np.where(second[:, None], top2, top)
        colour = np.where((t > 0.86)[:, None], bottom, colour)  # waist: the trousers start at the hips
        return np.where((t < 0.05)[:, None], skin, colour)  # neck

    def upper_arm(theta, t):
        sleeve = np.ones_like(t, bool) if a.long_sleeves else t < 0.55
        return np.where(sleeve[:, None], top, skin)

    def lower_arm(theta, t):
        return _colour(top if a.long_sleeves else skin, len(t))

    def upper_leg(theta, t):
        trousers = np.ones_like(t, bool) if a.long_trousers else t < 0.6
        return np.where(trousers[:, None], bottom, skin)

    def lower_leg(theta, t):
        return _colour(a.bottom if a.long_trousers else a.skin, len(t))

    def head(theta, t):
        back = np.abs(theta) > 1.15
        hair_mask = (t < 0.28) | (back & (t < (0.97 if a.long_hair else 0.62)))
        if a.long_hair:
            hair_mask |= (np.abs(theta) > 0.75) & (t < 0.9)
        return np.where(hair_mask[:, None], hair, skin)

    def plain(c):
        return lambda theta, t: _colour(c, len(t))

    return dict(torso=torso, upper_arm=upper_arm, lower_arm=lower_arm, hand=plain(a.skin),
                upper_leg=upper_leg, lower_leg=lower_leg, foot=plain(a.shoes), head=head,
                bag=plain(a.bag_colour))


def _body_parts(a: Appearance, pose: Pose):
    """The posed parts of a body, feet on the ground plane y = 1 (before the height scale)."""
    w = a.width
    albedo = _albedos(a)
    parts = []
    c = np.array
    parts.append(_Part("head", _HEAD, c([0.0, 0.0, 0.0]), c([0.0, 0.135, 0.005]),
                       c([0.0, 0.12, 0.45, 0.85, 1.0]), c([0.022, 0.052, 0.063, 0.052, 0.030]),
                       1.15, False, albedo["head"]))
    neck, hip_y = c([0.0, 0.125, 0.0]), 0.52
    parts.append(_Part("two_sided", _TORSO, neck, c([0.0, hip_y, 0.0]),
                       c([0.0, 0.07, 0.2, 0.62, 1.0]), c([0.032, 0.09, 0.112, 0.092, 0.098]) * w,
                       0.55, False, albedo["torso"]))
    for side in (-1, 1):
        # Legs swing in opposition; the knee bends during the forward swing.
        swing = pose.stride * np.sin(pose.phase + (0 if side == 1 else np.pi))
        knee_bend = 0.9 * pose.stride * max(0.0, np.sin(pose.phase + 0.6 + (0 if side == 1 else np.pi)))
        hip = c([side * 0.055 * w, hip_y - 0.02, 0.0])
        knee = hip + 0.235 * _direction(side * 0.02, swing)
        ankle = knee + 0.225 * _direction(side * 0.01, swing - knee_bend)
        parts.append(_Part("two_sided", _UPPER_LEG[side], hip, knee, c([0.0, 1.0]), c([0.052, 0.037]) * w,
                           1.0, True, albedo["upper_leg"]))
        parts.append(_Part("two_sided", _LOWER_LEG[side], knee, ankle, c([0.0, 1.0]), c([0.035, 0.025]) * w,
                           1.0, True, albedo["lower_leg"]))
        toe_offset = c([0.0, 0.0, 0.035])  # the foot extends forward of the ankle
        parts.append(_Part("round", (_FOOT[side],), ankle + toe_offset + c([0, -0.01, 0]),
                           ankle + toe_offset + c([0, 0.035, 0]), c([0.0, 1.0]), c([0.022, 0.024]) * w,
                           1.9, True, albedo["foot"]))
        arm_swing = -0.8 * swing
        shoulder = c([side * 0.108 * w, 0.165, 0.0])
        elbow = shoulder + 0.17 * _direction(side * pose.arm_spread, arm_swing)
        wrist = elbow + 0.15 * _direction(side * pose.arm_spread * 0.6, arm_swing + 0.15 + 0.4 * pose.stride)
        hand = wrist + 0.06 * _direction(side * pose.arm_spread * 0.6, arm_swing + 0.15 + 0.4 * pose.stride)
        parts.append(_Part("two_sided", _UPPER_ARM[side], shoulder, elbow, c([0.0, 1.0]), c([0.034, 0.028]) * w,
                           1.0, True, albedo["upper_arm"]))
        parts.append(_Part("two_sided", _LOWER_ARM[side], elbow, wrist, c([0.0, 1.0]), c([0.027, 0.021]) * w,
                           1.0, True, albedo["lower_arm"]))
        parts.append(_Part("round", (_HAND[side],), wrist, hand, c([0.0, 0.5, 1.0]), c([0.018, 0.022, 0.013]),
                           0.6, True, albedo["hand"]))
    if a.bag == "backpack":
        z = -0.112 * 0.55 * w - 0.04  # behind the torso's back surface (half-depth = 0.55 × half-width)
        parts.append(_Part("object", (0,), c([0.0, 0.19, z]), c([0.0, 0.4, z]), c([0.0, 1.0]),
                           c([0.07, 0.075]) * w, 0.55, True, albedo["bag"]))
    elif a.bag == "handbag":
        x = a.bag_side * (0.1 * w + 0.045)
        parts.append(_Part("object", (0,), c([x, 0.43, 0.0]), c([x, 0.55, 0.0]), c([0.0, 1.0]), c([0.05, 0.05]),
                           0.35, True, albedo["bag"]))
    soles = max(p.end[1] + p.widths[-1] for p in parts if p.labels[0] in (_FOOT[-1], _FOOT[1]))
    shift = c([0.0, 1.0 - soles, 0.0])  # stand on the ground whatever the gait
    return [dataclasses.replace(p, start=p.start + shift, end=p.end + shift) for p in parts]


def _project(points, yaw):
    """Orthographic camera: (screen x, screen y, depth toward the camera) of body-frame points."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x * cos + z * sin, y, -x * sin + z * cos], axis=-1)


def _surface(part: _Part, theta, t):
    """IUV labels and (U, V) of surface points (θ, t) of ``part``."""
    v = 1.0 - np.clip(t, 0.0, 1.0)
    if part.kind == "two_sided":
        front = np.cos(theta) >= 0
        labels = np.where(front, part.labels[1], part.labels[0])
        half = np.where(front, theta, np.angle(np.exp(1j * (theta - np.pi))))  # angle within the visible half
        u = np.where(front, half + np.pi / 2, np.pi / 2 - half) / np.pi
    elif part.kind == "head":
        labels = np.where(theta >= 0, part.labels[1], part.labels[0])
        u = np.abs(theta) / np.pi
    elif part.kind == "round":
        labels = np.full(theta.shape, part.labels[0])
        u = np.mod(theta, 2 * np.pi) / (2 * np.pi)
    else:  # carried object: not a body part
        labels, u, v = np.zeros(theta.shape, int), np.zeros_like(theta), np.zeros_like(theta)
    return labels, np.clip(u, 0, 1), np.clip(v, 0, 1)


def _draw_part(part: _Part, yaw, light, scale, origin, rgb, iuv, zbuf, mask):
    """Rasterise one part into the layer buffers with a z-buffer (pixel centres)."""
    p0, p1 = _project(part.start, yaw) * scale, _project(part.end, yaw) * scale
    p0[:2] += origin
    p1[:2] += origin
    cos, sin = np.cos(yaw), np.sin(yaw)
    # Projected half-width of an elliptic cross-section (a lateral, b = ratio·a in depth) seen at ``yaw``.
    spread = np.hypot(cos, part.depth_ratio * sin)
    delta = np.arctan2(part.depth_ratio * sin, cos)
    radius_max = part.widths.max() * scale * spread
    lo = np.floor(np.minimum(p0[:2], p1[:2]) - radius_max).astype(int)
    hi = np.ceil(np.maximum(p0[:2], p1[:2]) + radius_max).astype(int) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, [rgb.shape[1], rgb.shape[0]])
    if np.any(hi <= lo):
        return
    ys, xs = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]]
    px, py = xs.ravel() + 0.5, ys.ravel() + 0.5
    axis = p1[:2] - p0[:2]
    length = np.hypot(*axis)
    d = axis / length if length > 1e-3 else np.array([0.0, 1.0])  # a part pointing at the camera: a disc
    length = max(length, 1e-3)
    n = np.array([d[1], -d[0]])  # screen-right for a part hanging down
    rx, ry = px - p0[0], py - p0[1]
    t = (rx * d[0] + ry * d[1]) / length
    lateral = rx * n[0] + ry * n[1]
    radius = np.interp(np.clip(t, 0, 1), part.knots, part.widths) * scale * spread
    inside = (t >= 0) & (t <= 1) & (np.abs(lateral) <= radius)
    if part.caps:  # round joints: discs at both ends
        r0, r1 = part.widths[0] * scale * spread, part.widths[-1] * scale * spread
        inside |= (t < 0) & (rx ** 2 + ry ** 2 <= r0 ** 2)
        inside |= (t > 1) & ((px - p1[0]) ** 2 + (py - p1[1]) ** 2 <= r1 ** 2)
    if not inside.any():
        return
    t, lateral, radius = t[inside], lateral[inside], np.maximum(radius[inside], 1e-6)
    s = np.clip(lateral / radius, -1.0, 1.0)
    visible_angle = np.arcsin(s)  # angle of the surface normal to the viewing direction
    theta = np.angle(np.exp(1j * (visible_angle - delta)))  # back to the body-surface angle
    a = np.interp(np.clip(t, 0, 1), part.knots, part.widths) * scale
    # depth of the surface point (a·sinθ, b·cosθ) of the cross-section, rotated by the yaw
    depth = p0[2] + (p1[2] - p0[2]) * np.clip(t, 0, 1) + a * (part.depth_ratio * np.cos(theta) * cos
                                                               - np.sin(theta) * sin)
    flat = (ys.ravel()[inside], xs.ravel()[inside])
    nearer = depth > zbuf[flat]
    if not nearer.any():
        return
    flat = (flat[0][nearer], flat[1][nearer])
    theta, t, visible_angle, depth = theta[nearer], t[nearer], visible_angle[nearer], depth[nearer]
    labels, u, v = _surface(part, theta, t)
    shade = 0.5 + 0.5 * np.clip(np.cos(visible_angle - light), 0, 1)
    rgb[flat] = part.albedo(theta, t) * shade[:, None]
    iuv[flat] = np.stack([labels, np.floor(u * 255), np.floor(v * 255)], axis=1).astype(np.uint8)
    zbuf[flat] = depth
    mask[flat] = True


def render_person(appearance: Appearance, pose: Pose, height_px: float) -> PersonLayer:
    """Render a person ``height_px`` pixels tall (times ``appearance.height``) on a transparent layer."""
    if height_px <= 0:
        raise ValueError(f"height_px must be positive, got {height_px}")
    scale = height_px * appearance.height
    parts = _body_parts(appearance, pose)
    # Layer bounds from the projected parts.
    ends = np.stack([_project(np.stack([p.start, p.end]), pose.yaw)[:, :2] for p in parts]) * scale
    margin = max(p.widths.max() * max(1.0, p.depth_ratio) for p in parts) * scale + 2
    lo = np.floor(ends.reshape(-1, 2).min(0) - margin)
    hi = np.ceil(ends.reshape(-1, 2).max(0) + margin)
    width, height = (hi - lo).astype(int)
    origin = -lo
    rgb = np.zeros((height, width, 3), np.float32)
    iuv = np.zeros((height, width, 3), np.uint8)
    zbuf = np.full((height, width), -np.inf, np.float32)
    mask = np.zeros((height, width), bool)
    for part in parts:
        _draw_part(part, pose.yaw, pose.light, scale, origin, rgb, iuv, zbuf, mask)
    return PersonLayer(rgb=rgb, iuv=iuv, mask=mask, anchor=(float(origin[0]), float(origin[1] + scale)))


def paste_layer(layer: PersonLayer, rgb: np.ndarray, iuv: Optional[np.ndarray], anchor_xy):
    """Draw ``layer`` over ``rgb`` (and ``iuv``) with its anchor (the feet) at ``anchor_xy``, clipped to the image.

    Returns (bool mask of the pixels drawn, [x0, y0, x1, y1] of the whole layer mask in image coordinates,
    unclipped — the person's full-extent box).
    """
    h, w = layer.mask.shape
    left = int(round(anchor_xy[0] - layer.anchor[0]))
    top = int(round(anchor_xy[1] - layer.anchor[1]))
    H, W = rgb.shape[:2]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, H), min(left + w, W)
    drawn = np.zeros((H, W), bool)
    ys, xs = np.nonzero(layer.mask)
    box = np.array([xs.min() + left, ys.min() + top, xs.max() + 1 + left, ys.max() + 1 + top])
    if y1 <= y0 or x1 <= x0:
        return drawn, box
    src = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    m = layer.mask[src]
    rgb[y0:y1, x0:x1][m] = layer.rgb[src][m]
    if iuv is not None:
        iuv[y0:y1, x0:x1][m] = layer.iuv[src][m]
    drawn[y0:y1, x0:x1] = m
    return drawn, box
