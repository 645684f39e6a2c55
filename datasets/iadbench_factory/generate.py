"""Procedural factory images: three textures and two objects, with exact defect masks.

Every image is drawn from its own random stream, ``default_rng([seed, category,
group, index])``, so a dataset is the same bytes for a seed whatever order or subset
is generated. Drawing works in float RGB "albedo" first; a defect edits the albedo
inside its footprint only, and that footprint is the mask, so every pixel outside
the mask is untouched. Lighting (gradient, vignette, colour cast) and sensor noise
come last and are shared by nothing: each image gets its own.

Nuisance variation is what makes a per-pixel model fail where a feature model does
not: textures shift phase, scale and angle from image to image; objects move a few
pixels and turn a little.

Each defect is drawn at a severity in [0, 1] (``SEVERITY`` gives each category its
range): size and contrast grow with it, from thin faint cracks, pinholes and barely
tinted stains to bold ones. Version 1 drew every defect bold, and feature-based
detectors all scored ~1.0 on most categories; version 2 mixes subtle and obvious
defects so that they separate, as they do on real data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from iadbench_factory.sizes import GENERATOR_VERSION  # noqa: F401 - re-exported: callers name it here

#: category -> its defect kinds (folder names under test/ and ground_truth/)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "fabric": ("hole", "stain", "contamination", "thread"),
    "metal": ("scratch", "dent", "stain", "contamination"),
    "wood": ("crack", "hole", "scratch", "stain"),
    "nut": ("scratch", "crack", "missing", "contamination"),
    "bottle": ("missing", "bent", "contamination", "crack"),
}
CATEGORY_IDS = {name: i for i, name in enumerate(CATEGORIES)}

TRAIN, TEST_GOOD = 0, 1  # stream groups; defect kind k uses group 2 + k
MIN_DEFECT_PIXELS = 12

#: category -> the range each defect's severity is drawn from: 0 is the faintest and
#: smallest a defect gets, 1 about as bold as generator version 1 drew them all. Real
#: test sets mix obvious and barely visible defects; these ranges were tuned so that no
#: category saturates for feature-based detectors (every one at AUROC ~1.0) while they
#: still sit well above a per-pixel model.
SEVERITY: dict[str, tuple[float, float]] = {
    "fabric": (0.4, 0.9), "metal": (0.0, 0.6), "wood": (0.2, 1.0), "nut": (0.1, 0.9), "bottle": (0.0, 0.75),
}  # fmt: skip


@dataclass
class Scene:
    albedo: np.ndarray  # (H, W, 3) float32 in [0, 1], before lighting
    region: np.ndarray  # (H, W) bool: where a defect may sit (on the part)
    #: draw the part again through a deformation (objects only)
    rerender: Callable[[Callable], np.ndarray] | None = None
    #: defect kind -> ((rng, level) -> deformation for rerender); level as in _level
    deforms: dict[str, Callable[[np.random.Generator, Callable], Callable]] = field(default_factory=dict)


# --- small helpers ------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy - c, xx - c


def _noise(rng: np.random.Generator, size: int, sigma) -> np.ndarray:
    """Smooth Gaussian noise with unit standard deviation (periodic at the borders).

    Wide isotropic noise is drawn on a coarse grid and upsampled: the same look at a
    fraction of the cost of a wide filter at full size."""
    if np.ndim(sigma) == 0 and sigma >= 8:
        f = int(sigma // 4)
        low = ndi.gaussian_filter(rng.standard_normal((size // f + 1,) * 2, dtype=np.float32), sigma / f, mode="wrap")
        n = ndi.zoom(low, f, order=1, mode="grid-wrap", grid_mode=True)[:size, :size]
    else:
        n = ndi.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), sigma, mode="wrap")
    return (n - n.mean()) / (n.std() + 1e-8)


def _jitter(rng: np.random.Generator, value: float, rel: float) -> float:
    return value * (1.0 + rng.uniform(-rel, rel))


# --- textures -----------------------------------------------------------------------


def _fabric(rng: np.random.Generator, size: int) -> Scene:
    yy, xx = _grid(size)
    theta = np.deg2rad(rng.uniform(-4, 4))
    period = _jitter(rng, 9.0, 0.05)
    u = (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2)
    v = (-xx * np.sin(theta) + yy * np.cos(theta)) / period + rng.uniform(0, 2)
    u = u + 0.06 * _noise(rng, size, 18)  # threads are never perfectly straight
    v = v + 0.06 * _noise(rng, size, 18)
    fu, fv = u - np.floor(u), v - np.floor(v)
    over = ((np.floor(u) + np.floor(v)) % 2) == 0
    su, sv = np.sin(np.pi * fu), np.sin(np.pi * fv)
    warp = su**0.7 * (0.7 + 0.3 * sv)
    weft = sv**0.7 * (0.7 + 0.3 * su)
    h = np.where(over, 0.35 + 0.6 * warp, 0.3 + 0.6 * weft)
    h = h + 0.04 * _noise(rng, size, 0.7) + 0.03 * _noise(rng, size, 30)
    base = np.array([0.62, 0.55, 0.46]) * _jitter(rng, 1.0, 0.03)
    c_warp, c_weft = base, base * np.array([0.96, 0.98, 1.04])
    albedo = h[..., None] * np.where(over[..., None], c_warp, c_weft)
    return Scene(albedo=albedo.astype(np.float32), region=np.ones((size, size), bool))


def _metal(rng: np.random.Generator, size: int) -> Scene:
    pad = size // 4
    big = size + 2 * pad
    streaks = ndi.gaussian_filter(rng.standard_normal((big, big)).astype(np.float32), (0.6, 22), mode="wrap")
    streaks = ndi.rotate(streaks, rng.uniform(-3, 3), reshape=False, order=1, mode="reflect")
    streaks = streaks[pad : pad + size, pad : pad + size]
    streaks = streaks / (streaks.std() + 1e-8)
    yy, _ = _grid(size)
    band_y, band_w = rng.uniform(-0.6, 0.6) * size / 2, rng.uniform(35, 70)
    h = 0.52 + 0.045 * streaks + 0.025 * _noise(rng, size, 35)
    h = h + 0.12 * np.exp(-(((yy - band_y) / band_w) ** 2))  # soft specular band
    tint = np.array([0.95, 0.97, 1.0]) * _jitter(rng, 1.0, 0.02)
    return Scene(albedo=(h[..., None] * tint).astype(np.float32), region=np.ones((size, size), bool))


def _wood(rng: np.random.Generator, size: int) -> Scene:
    yy, xx = _grid(size)
    period = _jitter(rng, 15.0, 0.12)
    x0 = rng.uniform(-size, size)
    bend = rng.uniform(-1.0, 1.0) * 25.0 / size**2
    y = yy + 7.0 * _noise(rng, size, 28) + bend * (xx - x0) ** 2 + rng.uniform(0, period)
    rings = (0.5 + 0.5 * np.sin(2 * np.pi * y / period)) ** 2.5
    fibres = ndi.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), (0.5, 9), mode="wrap")
    fibres = fibres / (fibres.std() + 1e-8)
    light = np.array([0.80, 0.60, 0.40]) * _jitter(rng, 1.0, 0.03)
    dark = np.array([0.56, 0.37, 0.22])
    t = np.clip(0.75 * rings + 0.05 * fibres + 0.04 * _noise(rng, size, 20), 0, 1)[..., None]
    albedo = light * (1 - t) + dark * t
    return Scene(albedo=albedo.astype(np.float32), region=np.ones((size, size), bool))


# --- objects ------------------------------------------------------------------------


def _conveyor(rng: np.random.Generator, size: int) -> np.ndarray:
    g = 0.17 + 0.02 * _noise(rng, size, 1.0) + 0.015 * _noise(rng, size, 25)
    return np.repeat(g[..., None], 3, axis=2) * np.array([1.0, 1.0, 1.05])


def _nut(rng: np.random.Generator, size: int) -> Scene:
    s = size / 256.0
    yy, xx = _grid(size)
    cy, cx = rng.uniform(-5, 5, 2) * s
    rot = np.deg2rad(rng.uniform(-12, 12))
    R = _jitter(rng, 88.0, 0.015) * s
    light = rng.uniform(-0.4, 0.4) + np.pi / 4
    bg = _conveyor(rng, size)  # shows through the hole and where a piece is missing
    machining = 0.02 * _noise(rng, size, (0.7, 0.7))
    mottle = 0.03 * _noise(rng, size, 20)

    def draw(deform: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
        y, x = yy - cy, xx - cx
        r = np.hypot(y, x)
        phi = np.arctan2(y, x)
        d_hex = np.max([np.abs(x * np.cos(a) + y * np.sin(a)) for a in rot + np.pi / 6 + np.arange(3) * np.pi / 3], axis=0)
        body = d_hex <= R * np.cos(np.pi / 6)
        if deform is not None:
            body = deform(body, (y, x, r, phi, R, rot))
        chamfer = body & (r > 0.93 * R)
        hole_r, thread_r = 30.0 * s, 38.0 * s
        face = body & ~chamfer & (r >= thread_r)
        thread = body & (r < thread_r) & (r >= hole_r)
        h = np.zeros((size, size), np.float32)
        h[face] = (0.62 + 0.015 * np.sin(2 * np.pi * r / (3.0 * s)) + machining + mottle)[face]
        h[chamfer] = (0.5 + 0.2 * np.cos(phi - light) + mottle)[chamfer]
        h[thread] = (0.35 + 0.12 * np.sin(2 * np.pi * r / (2.6 * s)) + 0.1 * np.cos(phi - light + np.pi))[thread]
        metal = h[..., None] * np.array([0.97, 0.97, 1.0])
        inside = body & (r >= hole_r)
        img = np.where(inside[..., None], metal, bg)
        return img.astype(np.float32), face | chamfer

    def chip(rng: np.random.Generator, lv: Callable) -> Callable:
        edge = 2.0 * _noise(rng, size, 3)  # a jagged fracture line
        a = rot + rng.integers(6) * np.pi / 3  # towards a corner
        depth = lv(0.04, 0.2)

        def cut(body, geo):
            y, x = geo[0], geo[1]
            return body & ~((x * np.cos(a) + y * np.sin(a)) + edge > R * (1 - depth))

        return cut

    albedo, region = draw()
    return Scene(albedo=albedo, region=region, rerender=lambda deform: draw(deform)[0], deforms={"missing": chip})


def _bottle(rng: np.random.Generator, size: int) -> Scene:
    s = size / 256.0
    yy, xx = _grid(size)
    cy, cx = rng.uniform(-3, 3, 2) * s
    R = _jitter(rng, 112.0, 0.01) * s
    glint = rng.uniform(-np.pi, np.pi)
    bg = 0.05 + 0.01 * _noise(rng, size, 1.0)
    mottle = 0.025 * _noise(rng, size, 12)
    glass = np.array([0.55, 0.40, 0.22]) * _jitter(rng, 1.0, 0.03)

    def profile(t: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Brightness along the radius t = r / R, seen from straight above."""
        ring = lambda c, w: np.exp(-(((t - c) / w) ** 2))  # noqa: E731
        h = np.where(t < 0.30, 0.10 + 0.08 * ring(0.0, 0.2), 0.0)
        h = h + 0.85 * ring(0.34, 0.035)  # the lip of the opening
        h = h + np.where((t >= 0.38) & (t < 0.97), 0.32 + 0.12 * (t - 0.38), 0.0)
        h = h + 0.25 * ring(0.78, 0.03) * (1 + 0.4 * np.cos(phi - glint))  # shoulder highlight
        return np.where(t < 0.99, h, 0.0)

    def draw(deform: Callable | None = None) -> np.ndarray:
        y, x = yy - cy, xx - cx
        r, phi = np.hypot(y, x), np.arctan2(y, x)
        t = r / R
        if deform is not None:
            t = deform(t, phi)
        h = profile(t, phi)
        on = t < 0.99
        img = np.where(on[..., None], (h + mottle * (t > 0.3))[..., None] * glass / glass.max(), bg[..., None])
        return img.astype(np.float32)

    def broken_lip(rng: np.random.Generator, lv: Callable) -> Callable:
        edge = 0.012 * _noise(rng, size, 3)
        a, width = rng.uniform(-np.pi, np.pi), lv(0.06, 0.45)
        inner, outer = 0.34 - lv(0.015, 0.06), 0.34 + lv(0.02, 0.09)  # a notch up to the whole lip

        def cut(t, phi):
            dphi = np.angle(np.exp(1j * (phi - a)))
            chunk = (np.abs(dphi) < width) & (t > inner + edge) & (t < outer + edge)
            return np.where(chunk, 5.0, t)  # t beyond the rim: background shows

        return cut

    def dent(rng: np.random.Generator, lv: Callable) -> Callable:
        a0, w, amp = rng.uniform(-np.pi, np.pi), lv(0.2, 0.5), lv(0.02, 0.08)

        def push(t, phi):
            g = np.exp(-((np.angle(np.exp(1j * (phi - a0))) / w) ** 2))
            return t * (1 + amp * g * np.clip((t - 0.45) / 0.2, 0, 1))  # only the shoulder gives way

        return push

    tt = np.hypot(yy - cy, xx - cx) / R
    region = (tt > 0.31) & (tt < 0.95)
    return Scene(albedo=draw(), region=region, rerender=draw, deforms={"missing": broken_lip, "bent": dent})


RENDERERS: dict[str, Callable[[np.random.Generator, int], Scene]] = {
    "fabric": _fabric, "metal": _metal, "wood": _wood, "nut": _nut, "bottle": _bottle,
}  # fmt: skip


# --- defects ------------------------------------------------------------------------
# Each returns (defective albedo, footprint). The footprint becomes the mask.


def _pick(rng: np.random.Generator, region: np.ndarray, margin: int) -> tuple[float, float]:
    inner = region.copy()
    inner[:margin], inner[-margin:], inner[:, :margin], inner[:, -margin:] = False, False, False, False
    ys, xs = np.nonzero(inner)
    i = rng.integers(len(ys))
    return float(ys[i]), float(xs[i])


def _stroke(size: int, pts: np.ndarray, width: float) -> np.ndarray:
    """Soft alpha in [0, 1] along a polyline of (y, x) points."""
    canvas = np.zeros((size, size), np.float32)
    dense = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(2, int(np.ceil(np.hypot(*(b - a)) * 2)))
        dense.append(a + (b - a) * np.linspace(0, 1, n)[1:, None])
    p = np.vstack([np.atleast_2d(d) for d in dense])
    iy, ix = np.rint(p[:, 0]).astype(int), np.rint(p[:, 1]).astype(int)
    ok = (iy >= 0) & (iy < size) & (ix >= 0) & (ix < size)
    canvas[iy[ok], ix[ok]] = 1.0
    dist = ndi.distance_transform_edt(canvas == 0)
    return np.clip(1.0 - (dist - width / 2) / 1.0, 0.0, 1.0).astype(np.float32)


def _curve(rng: np.random.Generator, start: tuple[float, float], length: float, bend: float) -> np.ndarray:
    ang = rng.uniform(0, 2 * np.pi)
    p0 = np.array(start)
    p2 = p0 + length * np.array([np.sin(ang), np.cos(ang)])
    normal = np.array([np.cos(ang), -np.sin(ang)])
    p1 = (p0 + p2) / 2 + normal * rng.uniform(-bend, bend) * length
    t = np.linspace(0, 1, 40)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _walk(rng: np.random.Generator, start: tuple[float, float], length: float) -> np.ndarray:
    ang = rng.uniform(0, 2 * np.pi)
    pts = [np.array(start)]
    for _ in range(int(length / 3)):
        ang += rng.normal(0, 0.45)
        pts.append(pts[-1] + 3 * np.array([np.sin(ang), np.cos(ang)]))
    return np.array(pts)


def _blob(rng: np.random.Generator, size: int, centre, radius: float, wobble: float) -> np.ndarray:
    """Soft alpha of an irregular disc (computed in a window around it)."""
    k = np.arange(1, 5)
    amp = rng.normal(0, wobble, 4) / k
    phase = rng.uniform(0, 2 * np.pi, 4)
    out = np.zeros((size, size), np.float32)
    reach = int(np.ceil(radius * (1 + np.abs(amp).sum()) + 3))
    y0, y1 = max(0, int(centre[0]) - reach), min(size, int(centre[0]) + reach + 1)
    x0, x1 = max(0, int(centre[1]) - reach), min(size, int(centre[1]) + reach + 1)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    r = np.hypot(yy - centre[0], xx - centre[1])
    phi = np.arctan2(yy - centre[0], xx - centre[1])
    edge = radius * (1 + np.sum(amp[:, None, None] * np.cos(k[:, None, None] * phi + phase[:, None, None]), axis=0))
    out[y0:y1, x0:x1] = np.clip((edge - r) / 1.5 + 0.5, 0, 1)
    return out


def _apply(albedo: np.ndarray, alpha: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = alpha[..., None]
    return albedo * (1 - a) + target * a, alpha > 0.2


def _level(rng: np.random.Generator, sev: float) -> Callable[[float, float], float]:
    """``lo..hi`` at a defect's severity, each parameter a little jittered around it."""
    return lambda lo, hi: lo + (hi - lo) * float(np.clip(sev + rng.normal(0, 0.1), 0, 1))


def d_scratch(sc: Scene, rng: np.random.Generator, sev: float):
    size, lv = sc.albedo.shape[0], _level(rng, sev)
    pts = _curve(rng, _pick(rng, sc.region, 20), lv(15, 65), 0.3)
    alpha = _stroke(size, pts, lv(0.4, 1.6)) * sc.region * lv(0.5, 1.0)
    gain = 1.0 + rng.choice([-1.0, 1.0]) * lv(0.1, 0.45)
    return _apply(sc.albedo, alpha, np.clip(sc.albedo * gain, 0, 1))


def d_thread(sc: Scene, rng: np.random.Generator, sev: float):
    size, lv = sc.albedo.shape[0], _level(rng, sev)
    pts = _curve(rng, _pick(rng, sc.region, 20), lv(25, 80), 0.5)
    alpha = _stroke(size, pts, lv(1.0, 2.8)) * lv(0.5, 0.95)
    colour = sc.albedo.mean(axis=(0, 1)) * (1.0 + rng.choice([-1.0, 1.0]) * lv(0.08, 0.4))
    return _apply(sc.albedo, alpha, np.clip(colour, 0, 1) * np.ones_like(sc.albedo))


def d_crack(sc: Scene, rng: np.random.Generator, sev: float):
    size, lv = sc.albedo.shape[0], _level(rng, sev)
    start = _pick(rng, sc.region, 20)
    alpha = _stroke(size, _walk(rng, start, lv(15, 60)), lv(0.3, 1.4))
    if rng.random() < 0.5:  # a branch
        alpha = np.maximum(alpha, _stroke(size, _walk(rng, start, lv(8, 25)), 0.3))
    alpha = alpha * sc.region * lv(0.6, 1.0)
    return _apply(sc.albedo, alpha, sc.albedo * (1.0 - lv(0.12, 0.7)))


def d_hole(sc: Scene, rng: np.random.Generator, sev: float):
    size, lv = sc.albedo.shape[0], _level(rng, sev)
    c = _pick(rng, sc.region, 20)
    radius = lv(1.8, 8)  # from a pinhole or a small blowhole up
    alpha = _blob(rng, size, c, radius, 0.25)
    rim = np.clip(_blob(rng, size, c, radius + 1.5, 0.2) - alpha, 0, 1)  # frayed, lighter edge
    dark = sc.albedo * (1.0 - lv(0.35, 0.9))  # a shallow one is shadowed, not black
    out, _ = _apply(sc.albedo, rim * 0.4, np.clip(sc.albedo * 1.15, 0, 1))
    out, _ = _apply(out, alpha, dark)
    return out, (alpha + rim * 0.5) > 0.2


def d_stain(sc: Scene, rng: np.random.Generator, sev: float):
    size, lv = sc.albedo.shape[0], _level(rng, sev)
    c = _pick(rng, sc.region, 25)
    alpha = _blob(rng, size, c, lv(6, 20), 0.35)
    alpha = ndi.gaussian_filter(alpha, 2.0) * lv(0.2, 0.65) * sc.region
    tints = [[0.55, 0.45, 0.30], [0.35, 0.35, 0.40], [0.60, 0.55, 0.25]]
    tint = np.array(tints[rng.integers(len(tints))])
    # A translucent stain: the surface shows through, darker and tinted.
    out = sc.albedo * (1 - alpha[..., None]) + sc.albedo * (0.8 * tint / tint.max()) * alpha[..., None]
    return out, alpha > 0.1


def d_contamination(sc: Scene, rng: np.random.Generator, sev: float):
    size, lv = sc.albedo.shape[0], _level(rng, sev)
    colours = [[0.08, 0.08, 0.08], [0.75, 0.25, 0.12], [0.2, 0.3, 0.7], [0.9, 0.9, 0.85]]
    colour = np.array(colours[rng.integers(len(colours))], dtype=np.float32)
    if rng.random() < 0.4:  # a fibre
        pts = _curve(rng, _pick(rng, sc.region, 20), lv(10, 40), 0.6)
        alpha = _stroke(size, pts, lv(0.3, 1.3))
    else:  # a few particles
        alpha = np.zeros((size, size), np.float32)
        c0 = np.array(_pick(rng, sc.region, 20))
        for _ in range(rng.integers(1, 4)):
            c = c0 + rng.normal(0, 5, 2)
            alpha = np.maximum(alpha, _blob(rng, size, c, lv(1.0, 3.5), 0.3))
    # Dust, not paint: the particle is partly translucent and takes the surface's light.
    alpha = alpha * sc.region * lv(0.25, 1.0)
    return _apply(sc.albedo, alpha, colour * np.ones_like(sc.albedo))


def d_dent(sc: Scene, rng: np.random.Generator, sev: float):
    size, lv = sc.albedo.shape[0], _level(rng, sev)
    cy, cx = _pick(rng, sc.region, 25)
    R = lv(5, 14)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = (yy - cy) / R, (xx - cx) / R
    r2 = dy**2 + dx**2
    a = rng.uniform(0, 2 * np.pi)
    # A shallow bowl lit from one side: one half brighter, the other darker.
    shade = 1 + lv(0.25, 0.5) * (dx * np.cos(a) + dy * np.sin(a)) * np.clip(1 - r2, 0, 1)
    foot = r2 < 1
    return np.clip(sc.albedo * shade[..., None], 0, 1), foot


def d_missing(sc: Scene, rng: np.random.Generator, sev: float):
    """A piece broken off: the part is drawn again without it."""
    out = sc.rerender(sc.deforms["missing"](rng, _level(rng, sev)))
    return out, np.abs(out - sc.albedo).max(axis=2) > 0.02


def d_bent(sc: Scene, rng: np.random.Generator, sev: float):
    """The outline pushed in: the part is drawn again, deformed."""
    out = sc.rerender(sc.deforms["bent"](rng, _level(rng, sev)))
    return out, np.abs(out - sc.albedo).max(axis=2) > 0.02


DEFECTS: dict[str, Callable] = {
    "scratch": d_scratch, "thread": d_thread, "crack": d_crack, "hole": d_hole, "stain": d_stain,
    "contamination": d_contamination, "dent": d_dent, "missing": d_missing, "bent": d_bent,
}  # fmt: skip


# --- finishing ----------------------------------------------------------------------


def _finish(albedo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting, colour cast and sensor noise; then 8-bit."""
    size = albedo.shape[0]
    yy, xx = _grid(size)
    yy, xx = yy / size, xx / size
    a = rng.uniform(0, 2 * np.pi)
    illum = np.float32(rng.uniform(0.9, 1.1)) * (1 + np.float32(rng.uniform(0, 0.15)) * (xx * np.cos(a) + yy * np.sin(a)))
    illum = illum * (1 - np.float32(rng.uniform(0, 0.25)) * (xx**2 + yy**2))
    cast = (1 + rng.normal(0, 0.015, 3)).astype(np.float32)
    img = albedo.astype(np.float32) * (illum[..., None] * cast)
    img += 0.012 * rng.standard_normal(albedo.shape, dtype=np.float32)
    img *= 255
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def image_rng(seed: int, category: str, group: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), CATEGORY_IDS[category], group, index])


def render(
    category: str,
    seed: int,
    group: int,
    index: int,
    size: int = 256,
    defect: str | None = None,
    severity: float | None = None,
):
    """One image: (uint8 RGB, bool mask or None, good albedo, final albedo).

    The two albedos let tests check that a defect changed nothing outside its mask.
    ``severity`` overrides the defect's drawn severity (for tests); the random stream
    is drawn the same either way.
    """
    rng = image_rng(seed, category, group, index)
    scene = RENDERERS[category](rng, size)
    albedo, mask = scene.albedo, None
    if defect is not None:
        sev = rng.uniform(*SEVERITY[category])
        if severity is not None:
            sev = float(severity)
        for attempt in range(20):  # a stroke may fall mostly off the part: draw again, a bit bolder
            out, foot = DEFECTS[defect](scene, rng, min(1.0, sev + 0.05 * attempt))
            if defect != "dent":  # a dent's axis keeps its shade but is part of the dent
                foot = foot & (np.abs(out - scene.albedo).max(axis=2) > 0.005)
            if foot.sum() >= MIN_DEFECT_PIXELS:
                break
        else:  # pragma: no cover - the retries make this practically unreachable
            raise RuntimeError(f"factory: could not place a {defect} defect on {category}")
        mask = foot
        albedo = np.where(mask[..., None], out, scene.albedo).astype(np.float32)
    return _finish(albedo, rng), mask, scene.albedo, albedo
