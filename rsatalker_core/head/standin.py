"""A procedural stand-in for the FLAME head model (docs/assets.md §2).

The official FLAME files cannot ship with rsatalker, yet everything must run without them.
:func:`build_standin_flame` builds a head with *exactly* FLAME's array layout, so that the
FLAME layer, the Gaussian avatar and every test run end to end on it:

======================  ==================  ============================================
array                   shape               stand-in content
======================  ==================  ============================================
``v_template``          (5023, 3)           head, neck, two eyeballs, inner mouth; metres
``shapedirs``           (5023, 3, 400)      300 identity + 100 expression directions
``posedirs``            (5023, 3, 36)       small pose correctives (jaw, neck)
``J_regressor``         (5, 5023)           joints = averages of mirror vertex pairs
``weights``             (5023, 5)           skinning weights
``kintree_table``       (2, 5)              parents -1, 0, 1, 1, 1
``f``                   (9976, 3)           faces, outward, non-degenerate
======================  ==================  ============================================

It is **not FLAME**: the geometry is a smooth union of ellipsoids (cranium, face, jaw, nose,
lips, chin, cheeks, brow, ears, neck) sampled along rays from an interior point, and the
blendshapes are hand-made (the first expression directions) or seeded smooth random fields.
Axes follow FLAME: metres, y up, the face looks toward +z, +x is the head's left.

Topology (all counts fixed, checked at build time):

* head: a latitude/longitude grid (96 azimuth columns, denser on the face, x 47 rows, denser
  from chin to brow) with a pole on top, open at the neck like FLAME (the last ring is
  zipped to a 60-vertex neck ring that forms the only boundary);
* mouth: the grid row through the lip junction is cut between the mouth corners (the lower
  lip owns duplicated vertices), and a closed inner-mouth pocket is sewn into that slit, so
  jaw rotation opens a real mouth;
* eyes: two closed UV spheres whose front poles are the pupils.

Every vertex belongs to a face. Building takes well under a second and is cached in-process.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Tuple

import numpy as np

#: Official FLAME counts (docs/assets.md §1).
NUM_VERTICES = 5023
NUM_FACES = 9976
NUM_SHAPE = 300
NUM_EXPR = 100
NUM_POSE_FEATURES = 36
#: kintree parents: global, neck, jaw, left eye, right eye.
PARENTS = (-1, 0, 1, 1, 1)

# Sizes chosen so that the counts are FLAME's exactly (checked by _check_counts()):
#   faces = 2*N_U*(N_V-1) grid + N_U top fan + (N_U + N_NECK) neck band
#         + 4*H*(2*BAG_RINGS+1) mouth pocket + 4*EYE_SEG*EYE_RINGS eyes = 9976,
# and then vertices = 5023 by Euler's formula (one boundary: the 60-vertex neck ring).
_N_U = 96  # azimuth columns of the head grid (even: the grid is mirror symmetric)
_N_V = 47  # latitude rings of the head grid (pole excluded)
_N_NECK = 60  # vertices of the open neck ring (the mesh boundary)
_MOUTH_H = 9  # mouth corners sit _MOUTH_H columns either side of the front column
_BAG_RINGS = 3  # rings of the inner-mouth pocket (plus a closing pole)
_EYE_SEG = 16  # eyeball segments around the optical axis
_EYE_RINGS = 10  # eyeball latitude rings (poles excluded)

_RAY_ORIGIN = np.array([0.0, 0.0, -0.02])  # rays start inside the head, metres
_EYE_CENTRE = np.array([0.031, 0.031, 0.060])  # left eye; the right one is mirrored
_EYE_RADIUS = 0.0125
_LID_GAP = 0.0012  # closed eyelid: shell this far in front of the eyeball, metres
_LID_RADIUS = 0.018  # the lid move fades out between the shell radius and this, metres
#: Expression index of the stand-in's eyelid-closing direction (1 = eyes shut). On official
#: FLAME this index is an ordinary PCA component.
EYELID_EXPR_INDEX = 12
_ALPHA_BOTTOM = np.radians(-71.0)  # elevation of the lowest grid ring (neck)
_ALPHA_NECK = np.radians(-72.5)  # elevation of the open neck ring


# --------------------------------------------------------------------------------------
# Signed distance of the head (metres; < 0 inside). Smooth unions of simple primitives.
# --------------------------------------------------------------------------------------


def _ellipsoid(x, y, z, c, r) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (exact sign)."""
    qx, qy, qz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    k0 = np.sqrt(qx * qx + qy * qy + qz * qz)
    k1 = np.sqrt((qx / r[0]) ** 2 + (qy / r[1]) ** 2 + (qz / r[2]) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _pair(x, y, z, c, r) -> np.ndarray:
    """Union of an ellipsoid at c and its mirror image across x = 0."""
    return _ellipsoid(np.abs(x), y, z, c, r)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union), blend width k metres."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def head_sdf(p: np.ndarray) -> np.ndarray:
    """Signed distance (approximate, metres, < 0 inside) of the stand-in head. p: [..., 3]."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    d = _ellipsoid(x, y, z, (0.0, 0.035, -0.018), (0.073, 0.100, 0.097))  # cranium
    d = _smin(d, _ellipsoid(x, y, z, (0.0, -0.012, 0.018), (0.060, 0.066, 0.070)), 0.025)  # face
    d = _smin(d, _ellipsoid(x, y, z, (0.0, -0.045, 0.0), (0.058, 0.040, 0.070)), 0.03)  # jaw
    d = _smin(d, _ellipsoid(x, y, z, (0.0, -0.066, 0.064), (0.022, 0.017, 0.018)), 0.02)  # chin
    d = _smin(d, _ellipsoid(x, y, z, (0.0, -0.15, -0.024), (0.051, 0.13, 0.054)), 0.03)  # neck
    d = _smin(d, _ellipsoid(x, y, z, (0.0, 0.052, 0.060), (0.056, 0.016, 0.020)), 0.02)  # brow
    d = _smin(d, _pair(x, y, z, (0.040, 0.006, 0.050), (0.024, 0.020, 0.024)), 0.02)  # cheeks
    d = _smin(d, _pair(x, y, z, (0.071, 0.012, -0.022), (0.011, 0.028, 0.016)), 0.008)  # ears
    # Nose: bridge (a cone of radius 6.5 -> 9.5 mm from the brow to the tip), tip, wings.
    ax, ay, az, bx, by, bz = 0.0, 0.040, 0.079, 0.0, 0.002, 0.099
    h = np.clip(((x - ax) * (bx - ax) + (y - ay) * (by - ay) + (z - az) * (bz - az)) / ((by - ay) ** 2 + (bz - az) ** 2), 0, 1)
    nose = np.sqrt(x**2 + (y - ay - h * (by - ay)) ** 2 + (z - az - h * (bz - az)) ** 2) - (0.0065 + 0.003 * h)
    nose = _smin(nose, _ellipsoid(x, y, z, (0.0, -0.003, 0.101), (0.011, 0.010, 0.011)), 0.004)
    nose = _smin(nose, _pair(x, y, z, (0.012, -0.007, 0.090), (0.008, 0.007, 0.008)), 0.004)
    d = _smin(d, nose, 0.01)
    sockets = _pair(x, y, z, (0.031, 0.031, 0.071), (0.016, 0.0135, 0.0145))  # show the eyeballs
    d = -_smin(-d, sockets, 0.008)
    lips = np.minimum(  # an upper and a lower roll meeting in a crease
        _ellipsoid(x, y, z, (0.0, -0.0275, 0.086), (0.025, 0.0070, 0.0095)),
        _ellipsoid(x, y, z, (0.0, -0.0410, 0.083), (0.022, 0.0070, 0.0095)),
    )
    return _smin(d, lips, 0.006)


def _sdf_normal(p: np.ndarray, h: float = 5e-4) -> np.ndarray:
    """Unit gradient of :func:`head_sdf` (central differences). p: [N, 3] -> [N, 3]."""
    g = np.empty_like(p)
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        g[:, i] = head_sdf(p + e) - head_sdf(p - e)
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)


def _cast(dirs: np.ndarray, t_max: float = 0.23, step: float = 0.005) -> np.ndarray:
    """Outermost surface point along each ray from _RAY_ORIGIN. dirs: [N, 3] unit -> [N, 3]."""
    ts = np.arange(t_max, 0.03, -step)  # outside -> inside
    pts = _RAY_ORIGIN + ts[:, None, None] * dirs[None]  # [S, N, 3]
    inside = head_sdf(pts) < 0.0  # [S, N]
    first = np.argmax(inside, axis=0)  # first inside sample from outside
    if not inside[first, np.arange(len(dirs))].all():
        raise RuntimeError("stand-in head: a ray missed the surface")
    if inside[0].any():
        raise RuntimeError("stand-in head: the surface reaches beyond t_max")
    hi, lo = ts[first - 1], ts[first]  # outside, inside
    for _ in range(22):  # bisection to ~1e-9 m
        mid = 0.5 * (lo + hi)
        m_in = head_sdf(_RAY_ORIGIN + mid[:, None] * dirs) < 0.0
        lo = np.where(m_in, mid, lo)
        hi = np.where(m_in, hi, mid)
    return _RAY_ORIGIN + (0.5 * (lo + hi))[:, None] * dirs


def _dirs(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Unit ray directions for elevation alpha and azimuth beta (0 = +z, +pi/2 = +x)."""
    ca = np.cos(alpha)
    return np.stack([np.sin(beta) * ca, np.sin(alpha) * np.ones_like(beta), np.cos(beta) * ca], -1)


def _inverse_cdf(density, lo: float, hi: float, n: int) -> np.ndarray:
    """n samples in [lo, hi] spaced inversely to ``density`` (equal mass between samples)."""
    x = np.linspace(lo, hi, 4001)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density(x[1:]) + density(x[:-1])) * np.diff(x))])
    return np.interp(np.linspace(0.0, cdf[-1], n), cdf, x)


def _azimuths() -> np.ndarray:
    """[N_U] azimuths, mirror symmetric (column j <-> N_U - j), column N_U/2 = front."""
    dens = lambda b: 1.0 + 2.2 * np.exp(-0.5 * (b / 0.75) ** 2)  # denser on the face
    half = _inverse_cdf(dens, 0.0, np.pi, _N_U // 2 + 1)  # 0 .. pi
    beta = np.empty(_N_U)
    beta[_N_U // 2 :] = half[:-1]  # front .. just before the back
    beta[: _N_U // 2] = -half[::-1][:-1]  # -pi .. just before the front
    return beta


def _elevations(alpha_mouth: float) -> Tuple[np.ndarray, int]:
    """[N_V] ring elevations, bottom to top, one ring exactly at alpha_mouth."""
    dens = lambda a: 1.0 + 1.6 * np.exp(-0.5 * ((a - np.radians(-8.0)) / np.radians(30.0)) ** 2)
    top = np.radians(86.0)
    a = _inverse_cdf(dens, _ALPHA_BOTTOM, top, _N_V)
    i_m = int(np.argmin(np.abs(a - alpha_mouth)))
    # Piecewise-linear stretch on either side so that ring i_m lands on the lip crease.
    a_im = a[i_m]
    lo, hi = a[: i_m + 1], a[i_m:]
    a = np.concatenate([
        _ALPHA_BOTTOM + (lo - _ALPHA_BOTTOM) * (alpha_mouth - _ALPHA_BOTTOM) / (a_im - _ALPHA_BOTTOM),
        (alpha_mouth + (hi - a_im) * (top - alpha_mouth) / (top - a_im))[1:],
    ])
    return a, i_m


def _lip_crease_elevation() -> float:
    """Elevation of the ray that meets the lip crease on the front midline (radial minimum)."""
    al = np.radians(np.linspace(-24.0, -13.0, 221))
    pts = _cast(_dirs(al, np.zeros_like(al)))
    return float(al[np.argmin(np.linalg.norm(pts - _RAY_ORIGIN, axis=1))])


# --------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------


def _zip_rings(upper: np.ndarray, upper_ang: np.ndarray, lower: np.ndarray, lower_ang: np.ndarray) -> np.ndarray:
    """Triangulate the band between two closed rings of different sizes, ordered by angle.

    Winding matches the head grid (lower_j, lower_j+1, upper_j+1): outward for rings that
    run in increasing azimuth with ``upper`` above ``lower``.
    """
    nu, nl = len(upper), len(lower)
    ua = np.concatenate([upper_ang, [upper_ang[0] + 2 * np.pi]])
    la = np.concatenate([lower_ang, [lower_ang[0] + 2 * np.pi]])
    faces, i, j = [], 0, 0
    while i < nl or j < nu:
        if j >= nu or (i < nl and la[i + 1] <= ua[j + 1]):
            faces.append((lower[i], lower[(i + 1) % nl], upper[j % nu]))
            i += 1
        else:
            faces.append((lower[i % nl], upper[(j + 1) % nu], upper[j]))
            j += 1
    return np.asarray(faces, dtype=np.int64)


def _uv_sphere(centre: np.ndarray, radius: float, offset: int):
    """Closed UV sphere, poles on the z axis (front pole first). Returns (verts, faces)."""
    th = np.pi * np.arange(1, _EYE_RINGS + 1) / (_EYE_RINGS + 1)  # polar angle from +z
    ph = 2 * np.pi * np.arange(_EYE_SEG) / _EYE_SEG
    ring = np.stack(
        [np.sin(th)[:, None] * np.cos(ph), np.sin(th)[:, None] * np.sin(ph), np.cos(th)[:, None] * np.ones_like(ph)], -1
    ).reshape(-1, 3)
    verts = centre + radius * np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]])
    idx = lambda r, s: offset + 1 + r * _EYE_SEG + (s % _EYE_SEG)
    front, back = offset, offset + 1 + _EYE_RINGS * _EYE_SEG
    f = [(front, idx(0, s), idx(0, s + 1)) for s in range(_EYE_SEG)]
    for r in range(_EYE_RINGS - 1):
        for s in range(_EYE_SEG):
            f += [(idx(r, s), idx(r + 1, s), idx(r + 1, s + 1)), (idx(r, s), idx(r + 1, s + 1), idx(r, s + 1))]
    f += [(back, idx(_EYE_RINGS - 1, s + 1), idx(_EYE_RINGS - 1, s)) for s in range(_EYE_SEG)]
    return verts, np.asarray(f, dtype=np.int64)


def _check_counts() -> None:
    head_faces = 2 * _N_U * (_N_V - 1) + _N_U + (_N_U + _N_NECK)
    loop = 4 * _MOUTH_H  # slit loop: 2 corners + 2 x (2H - 1) lip vertices
    bag_faces = loop * (2 * _BAG_RINGS + 1)
    eye_faces = 2 * 2 * _EYE_SEG * _EYE_RINGS
    assert head_faces + bag_faces + eye_faces == NUM_FACES, head_faces + bag_faces + eye_faces


# --------------------------------------------------------------------------------------
# The builder
# --------------------------------------------------------------------------------------


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(p: np.ndarray, c, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * np.sum((p - np.asarray(c)) ** 2, axis=-1) / sigma**2)


@dataclasses.dataclass
class _Geometry:
    """Per-vertex descriptors of the rest head that the weight and blendshape fields use."""

    v: np.ndarray  # [V, 3] rest vertices, metres
    n_head: int  # vertices 0 .. n_head-1 are the head surface (grid, pole, neck, lower lip)
    bag_ids: np.ndarray  # inner-mouth pocket vertices (slit loop excluded)
    eye_ids: list  # [left ids, right ids]
    eye_centres: list  # [left centre, right centre]
    side: np.ndarray  # [V] +1 upper-lip side of the mouth ring, -1 lower side, 0 corners/other
    lip_s: np.ndarray  # [V] x across the mouth, -1 .. 1 between the corners (nan on eyes)
    elev: np.ndarray  # [V] ray elevation of head vertices, radians (nan elsewhere)
    azim: np.ndarray  # [V] ray azimuth of head vertices, radians, 0 = front (nan elsewhere)
    alpha_mouth: float  # elevation of the mouth ring, radians
    mouth_y: float
    mouth_z: float  # front-most z of the lips
    corner_x: float  # |x| of the mouth corners
    normal: np.ndarray  # [V, 3] unit gradient of the head's signed distance
    ring_step: float  # ring spacing at the mouth, radians
    gidx: np.ndarray  # [N_V, N_U] grid vertex ids


def _eye_anchored(geo: _Geometry, field_fn) -> np.ndarray:
    """Evaluate a displacement field [K, V, 3] with eyeballs moving rigidly with their socket."""
    pts = geo.v.copy()
    nrm = geo.normal.copy()
    for ids, c in zip(geo.eye_ids, geo.eye_centres):
        anchor = c + np.array([0.0, 0.0, _EYE_RADIUS])
        pts[ids] = anchor
        nrm[ids] = _sdf_normal(anchor[None])[0]
    return field_fn(pts, nrm)


def _smooth_fields(pts, nrm, geo: _Geometry, rng, amp: np.ndarray, sigmas, mask=None) -> np.ndarray:
    """len(amp) smooth random displacement fields along the normal, [V, 3, k].

    Each field is a random mix of Gaussian bumps (one basis per width in ``sigmas``,
    metres; later fields lean on the narrower ones) centred on random head vertices, made
    mirror symmetric in x (3 in 4 fields) or antisymmetric, and scaled to RMS ``amp``.
    """
    k = len(amp)
    head = geo.gidx.ravel()
    pool = head[(geo.v[head, 0] >= 0) & (geo.v[head, 2] > (-0.2 if mask is None else 0.0))]
    sign = np.where(np.arange(k) % 4 == 3, -1.0, 1.0)
    out = np.zeros((k, len(pts)))
    for i, sig in enumerate(sigmas):
        c = geo.v[rng.choice(pool, size=int(40 * (0.035 / sig) ** 1.5), replace=False)]
        p32, c32 = pts.astype(np.float32), c.astype(np.float32)
        sq = (p32**2).sum(1)[:, None] + (c32**2).sum(1)[None]
        g = np.exp((p32 @ c32.T - 0.5 * sq) / sig**2)  # [V, m] bumps at c
        gm = np.exp((p32 @ (c32 * np.float32([-1, 1, 1])).T - 0.5 * sq) / sig**2)  # ... mirrored
        t = np.linspace(0.0, 1.0, k) if len(sigmas) > 1 else np.ones(k)
        mix = (1.0 - t) if i == 0 else t
        a = (rng.normal(size=(len(c), k)) * mix).astype(np.float32)
        out[sign > 0] += ((g + gm) @ a[:, sign > 0]).T
        out[sign < 0] += ((g - gm) @ a[:, sign < 0]).T
    region = slice(None)
    if mask is not None:
        out *= mask[None]
        region = mask > 0.5 * mask.max()  # amp is the RMS where the field acts
    out *= (amp / np.maximum(np.sqrt(np.mean(out[:, region] ** 2, axis=1)), 1e-12))[:, None]
    return out.T[:, None, :] * nrm[:, :, None]


def _identity_dirs(geo: _Geometry, seed: int) -> np.ndarray:
    """[V, 3, 300] identity directions, metres per unit coefficient (docs/assets.md §1)."""

    def fn(p, nrm):
        x, y, z = p.T
        out = np.zeros((len(p), 3, NUM_SHAPE))
        out[:, :, 0] = 0.035 * (p - _RAY_ORIGIN)  # overall size
        out[:, 0, 1] = 0.045 * x  # head width
        out[:, 1, 2] = 0.06 * (y - 0.03) * (1.0 - _smoothstep(0.0, 0.06, y))  # lower-face length
        out[:, 2, 3] = 0.04 * (z - _RAY_ORIGIN[2])  # head depth
        bumps = [  # (centres, sigma, mm along the normal)
            ([(0.0, 0.015, 0.095)], 0.016, 3.0),  # nose size
            ([(0.0, -0.068, 0.075)], 0.016, 3.0),  # chin
            ([(0.04, 0.006, 0.06), (-0.04, 0.006, 0.06)], 0.02, 3.0),  # cheekbones
            ([(0.0, 0.05, 0.075)], 0.022, 2.0),  # brow ridge
            ([(0.0, geo.mouth_y, geo.mouth_z)], 0.012, 2.0),  # lip fullness
        ]
        for i, (cs, sig, mm) in enumerate(bumps):
            g = sum(_gauss(p, c, sig) for c in cs)
            out[:, :, 5 + i] = 1e-3 * mm * g[:, None] * nrm
        out[:, 0, 4] = 0.06 * x * (1.0 - _smoothstep(-0.06, 0.0, y))  # jaw width
        t = np.arange(NUM_SHAPE - 10) / (NUM_SHAPE - 10)
        amp = 0.003 * (1.0 + 9.0 * t) ** -0.9
        out[:, :, 10:] = _smooth_fields(p, nrm, geo, np.random.default_rng([seed, 1]), amp, (0.05, 0.025))
        return out

    return _eye_anchored(geo, fn)


def _mouth_terms(geo: _Geometry, p: np.ndarray):
    """(L, up, down): L [V] fades the lip-separating terms to zero at the corners and away
    from the mouth; up/down [V] select the upper/lower side of the mouth cut."""
    s = np.nan_to_num(geo.lip_s, nan=9.0)
    L = np.clip(1.0 - s**2, 0.0, None) * np.exp(-(((p[:, 1] - geo.mouth_y) / 0.02) ** 2))
    L *= _smoothstep(0.03, 0.06, p[:, 2])
    return L, (geo.side > 0).astype(float), (geo.side < 0).astype(float)


def _expression_dirs(geo: _Geometry, seed: int) -> np.ndarray:
    """[V, 3, 100] expression directions, metres per unit coefficient.

    0 lips part, 1 smile, 2 pucker, 3 brow raise, 4 brow furrow, 5 mouth stretch,
    6 lips roll in, 7 cheek puff, 8 upper-lip raise, 9 left half-smile, 10 lower-lip
    depress, 11 squint, 12 (:data:`EYELID_EXPR_INDEX`) eyelids close (1 = shut, a blink;
    :func:`_eyelid_dir`); 13-99 seeded smooth fields on the face. Eyeballs do not move.
    Direction 12 replaced a seeded field; every other direction is as before.
    """
    p, nrm = geo.v, geo.normal
    x = p[:, 0]
    mm = 1e-3
    L, up, down = _mouth_terms(geo, p)
    M = (0.0, geo.mouth_y, geo.mouth_z - 0.005)
    C = [(sx * geo.corner_x, geo.mouth_y, geo.mouth_z - 0.012) for sx in (1.0, -1.0)]
    cheeks = [(sx * 0.038, 0.0, 0.065) for sx in (1.0, -1.0)]
    vec = lambda g, d: g[:, None] * (np.asarray(d, dtype=float) * mm)
    out = np.zeros((len(p), 3, NUM_EXPR))

    def smile(sides):
        d = 0.0
        for sx, c, ch in zip((1.0, -1.0), C, cheeks):
            if sx in sides:
                d = d + vec(_gauss(p, c, 0.012), (1.5 * sx, 2.5, -1.2)) + vec(_gauss(p, ch, 0.015), (0.3 * sx, 1.2, 0.8))
        return d

    out[:, :, 0] = vec(L * up, (0, 1.0, 0.2)) + vec(L * down, (0, -3.0, -0.6)) + vec(_gauss(p, (0, -0.068, 0.075), 0.02), (0, -1.2, -0.4))
    out[:, :, 1] = smile((1.0, -1.0))
    g = _gauss(p, M, 0.016)
    out[:, :, 2] = np.stack([-0.12 * x * g, 0 * g, 3.0 * mm * g], 1)
    out[:, :, 3] = sum(vec(_gauss(p, (sx * 0.03, 0.052, 0.07), 0.02), (0, 3.0, 0)) for sx in (1, -1)) + vec(_gauss(p, (0, 0.08, 0.07), 0.03), (0, 1.0, 0))
    out[:, :, 4] = sum(vec(_gauss(p, (sx * 0.016, 0.048, 0.076), 0.011), (-1.5 * sx, -2.0, 0.5)) for sx in (1, -1))
    out[:, :, 5] = np.stack([0.10 * x * g, -0.5 * mm * g, -0.8 * mm * g], 1)
    out[:, :, 6] = vec(_gauss(p, M, 0.011), (0, 0, -2.0))
    out[:, :, 7] = 3.0 * mm * sum(_gauss(p, (sx * 0.042, -0.022, 0.055), 0.018) for sx in (1, -1))[:, None] * nrm
    out[:, :, 8] = vec(L * up, (0, 2.0, 0.5)) + sum(vec(_gauss(p, (sx * 0.012, -0.007, 0.09), 0.008), (0, 1.0, 0)) for sx in (1, -1))
    out[:, :, 9] = smile((1.0,))
    out[:, :, 10] = vec(L * down, (0, -2.0, 0.8))
    out[:, :, 11] = sum(vec(_gauss(p, (sx * 0.031, 0.016, 0.068), 0.009), (0, 1.5, 0.3)) for sx in (1, -1))
    face = _smoothstep(0.0, 0.05, p[:, 2]) * _smoothstep(-0.1, -0.07, p[:, 1])
    t = np.arange(NUM_EXPR - 12) / (NUM_EXPR - 12)
    amp = 0.00035 * (1.0 + 2.0 * t) ** -0.8  # gentle: real coefficients reach +-4
    out[:, :, 12:] = _smooth_fields(p, nrm, geo, np.random.default_rng([seed, 2]), amp, (0.022, 0.014), face)
    out[:, :, EYELID_EXPR_INDEX] = _eyelid_dir(geo)
    for ids in geo.eye_ids:
        out[ids] = 0.0
    return out


def _eyelid_dir(geo: _Geometry) -> np.ndarray:
    """[V, 3] eyelid closing, metres per unit coefficient (1 = both eyes shut).

    The stand-in has no lids: its eyeballs sit in carved sockets. At coefficient 1 every
    head vertex within ``_LID_RADIUS`` of an eye's optical axis (in the x-y plane) is moved
    forward (+z only) onto a shell ``_LID_GAP`` in front of the eyeball, so the socket's
    skin covers the eye; the move fades out over the socket rim, and vertices already in
    front of the shell stay put (the socket wall lies less than half an eye radius behind
    the eye centre; the back of the head, on the same axis, is not touched).
    """
    v = geo.v
    out = np.zeros((NUM_VERTICES, 3))
    head = np.arange(geo.n_head)
    r_s = _EYE_RADIUS + _LID_GAP
    for c in geo.eye_centres:
        d = v[head] - c
        rho = np.hypot(d[:, 0], d[:, 1])
        z_lid = np.sqrt(np.clip(r_s**2 - rho**2, 0.0, None))
        w = (1.0 - _smoothstep(r_s, _LID_RADIUS, rho)) * (d[:, 2] > -0.5 * _EYE_RADIUS)  # the socket, not the back
        out[head, 2] += w * np.clip(z_lid - d[:, 2], 0.0, None)
    return out


def _pose_dirs(geo: _Geometry, seed: int) -> np.ndarray:
    """[V, 3, 36] pose correctives, metres per unit of (R - I) entries of joints 1..4.

    Feature 9*(j-1) + 3*r + c is entry (r, c) of joint j's (R_j - I) (FLAME Eq. 4; smplx
    order). Only the neck and jaw get correctives; they stay around a millimetre.
    """
    p = geo.v
    out = np.zeros((len(p), 3, NUM_POSE_FEATURES))
    w = _skinning_weights(geo, _joint_regressor(geo))
    jaw_region = w[:, 2] * _smoothstep(0.0, 0.06, p[:, 2] + 0.02)
    out[:, 0, 9 + 7] = -0.06 * p[:, 0] * jaw_region  # jaw opening (sin term): cheeks narrow
    rng = np.random.default_rng([seed, 3])
    for j, region in ((1, w[:, 1] * (1.0 - w[:, 1])), (2, jaw_region)):
        out[:, :, 9 * (j - 1) : 9 * j] += _smooth_fields(p, geo.normal, geo, rng, np.full(9, 3e-4), (0.03,), region)
    for ids in geo.eye_ids:
        out[ids] = 0.0
    return out


def _mirror(geo: _Geometry, vid: int) -> int:
    i, j = np.argwhere(geo.gidx == vid)[0]
    return int(geo.gidx[i, (_N_U - j) % _N_U])


def _joint_regressor(geo: _Geometry) -> np.ndarray:
    """[5, V]: global, neck and jaw = midpoints of mirror pairs of head vertices near the
    neck base, the head/neck junction and the jaw hinges; eyes = eyeball vertex means."""
    J = np.zeros((5, NUM_VERTICES))
    grid = geo.gidx.ravel()
    pos = geo.v[grid]
    for j, target in ((0, (0.05, -0.105, -0.024)), (1, (0.055, -0.07, -0.03)), (2, (0.062, -0.012, -0.008))):
        cand = np.where(pos[:, 0] > 0, np.linalg.norm(pos - np.asarray(target), axis=1), np.inf)
        a = int(grid[np.argmin(cand)])
        J[j, [a, _mirror(geo, a)]] = 0.5
    for j, ids in zip((3, 4), geo.eye_ids):
        J[j, ids] = 1.0 / len(ids)
    return J


def _skinning_weights(geo: _Geometry, jreg: np.ndarray) -> np.ndarray:
    """[V, 5] LBS weights (global, neck, jaw, left eye, right eye); rows sum to 1.

    The head above the neck follows the neck joint; the lower face, chin, lower lip and the
    lower half of the mouth pocket follow the jaw, fading smoothly across the cheeks and
    under the chin; each eyeball follows its eye joint.
    """
    v = geo.v
    y = v[:, 1]
    w_neck = _smoothstep(-0.125, -0.075, y)
    head = np.arange(geo.n_head)
    delta = geo.elev[head] - geo.alpha_mouth
    s_abs = np.abs(np.nan_to_num(geo.lip_s[head]))
    band = 0.6 * geo.ring_step + (0.16 - 0.6 * geo.ring_step) * _smoothstep(0.9, 2.4, s_abs)
    below = 1.0 - _smoothstep(-band, band, delta)
    lateral = 1.0 - _smoothstep(1.45, 1.9, np.abs(geo.azim[head]))
    chin_fade = _smoothstep(-1.15, -0.8, geo.elev[head])
    w_jaw = np.zeros(NUM_VERTICES)
    w_jaw[head] = below * lateral * chin_fade
    on_cut = geo.side != 0
    w_jaw[head[on_cut[head] & (np.abs(delta) < 1e-9)]] = 0.0  # upper lip
    w_jaw[head[(geo.side[head] < 0) & (np.abs(delta) < 1e-9)]] = 1.0  # lower lip copies
    w_jaw[geo.bag_ids] = 0.5 - 0.5 * geo.side[geo.bag_ids]
    w_jaw = np.minimum(w_jaw, w_neck)
    W = np.zeros((NUM_VERTICES, 5))
    W[:, 0] = 1.0 - w_neck
    W[:, 1] = w_neck - w_jaw
    W[:, 2] = w_jaw
    for j, ids in zip((3, 4), geo.eye_ids):
        W[ids] = 0.0
        W[ids, j] = 1.0
    return W


@functools.lru_cache(maxsize=4)
def _build(seed: int) -> Tuple[Dict[str, np.ndarray], Dict[str, int]]:
    _check_counts()
    # ---- head grid ------------------------------------------------------------------
    alpha_m = _lip_crease_elevation()
    alpha, i_m = _elevations(alpha_m)
    beta = _azimuths()
    grid = _cast(_dirs(alpha[:, None], beta[None, :]).reshape(-1, 3))  # [N_V*N_U, 3]
    gidx = np.arange(_N_V * _N_U).reshape(_N_V, _N_U)
    verts = [grid]
    n = len(grid)
    pole = n
    verts.append(_cast(_dirs(np.array([np.pi / 2]), np.array([0.0]))))
    n += 1
    neck_beta = -np.pi + 2 * np.pi * np.arange(_N_NECK) / _N_NECK
    neck = n + np.arange(_N_NECK)
    verts.append(_cast(_dirs(np.full(_N_NECK, _ALPHA_NECK), neck_beta)))
    n += _N_NECK

    # Mouth slit: ring i_m, columns strictly between the corners, duplicated for the lower lip.
    front = _N_U // 2
    c0, c1 = front - _MOUTH_H, front + _MOUTH_H  # corner columns (shared)
    slit_cols = np.arange(c0 + 1, c1)
    upper_lip = gidx[i_m, slit_cols]
    lower_lip = n + np.arange(len(slit_cols))
    verts.append(grid[upper_lip])
    n += len(slit_cols)
    lower_map = np.arange(n)  # vertex id as seen by faces below the mouth ring
    lower_map[upper_lip] = lower_lip

    faces = []
    jj = np.arange(_N_U)
    jn = (jj + 1) % _N_U
    left = jj < _N_U // 2  # mirror-symmetric diagonals
    for i in range(_N_V - 1):
        a, b = gidx[i, jj], gidx[i, jn]
        c, d = gidx[i + 1, jn], gidx[i + 1, jj]
        if i + 1 == i_m:  # faces below the mouth ring use the lower-lip copies
            c, d = lower_map[c], lower_map[d]
        t1 = np.where(left[:, None], np.stack([a, b, c], 1), np.stack([a, b, d], 1))
        t2 = np.where(left[:, None], np.stack([a, c, d], 1), np.stack([b, c, d], 1))
        faces += [t1, t2]
    top = gidx[-1]
    faces.append(np.stack([top[jj], top[jn], np.full(_N_U, pole)], 1))
    faces.append(_zip_rings(gidx[0], beta, neck, neck_beta))

    # Inner-mouth pocket sewn into the slit loop (corner, upper lips, corner, lower lips).
    corner_l, corner_r = gidx[i_m, c0], gidx[i_m, c1]
    P = np.concatenate(verts)
    loop = np.concatenate([[corner_l], upper_lip, [corner_r], lower_lip[::-1]])
    L = len(loop)
    s_loop = np.concatenate([[-1.0], np.linspace(-1, 1, len(upper_lip) + 2)[1:-1], [1.0],
                             np.linspace(-1, 1, len(upper_lip) + 2)[1:-1][::-1]])
    side_loop = np.concatenate([[0.0], np.ones(len(upper_lip)), [0.0], -np.ones(len(upper_lip))])
    lp = P[loop]
    mouth_front_z = lp[:, 2].max()
    bag_depth, bag_open = 0.024, 0.007
    rings = [loop]
    bag_side, bag_s = [], []
    for r in range(1, _BAG_RINGS + 1):
        t = r / (_BAG_RINGS + 1)
        q = lp.copy()
        q[:, 0] *= 1.0 - 0.45 * t
        q[:, 2] = lp[:, 2] - bag_depth * t - 0.004 * t * (1 - s_loop**2)
        q[:, 1] = lp[:, 1] + side_loop * bag_open * np.sin(np.pi * t) ** 0.7 * np.sqrt(1 - s_loop**2) - 0.006 * t
        verts.append(q)
        rings.append(n + np.arange(L))
        bag_side.append(side_loop)
        bag_s.append(s_loop)
        n += L
    bag_pole = n
    verts.append(np.array([[0.0, lp[:, 1].mean() - 0.006, mouth_front_z - bag_depth - 0.006]]))
    n += 1
    bag_faces = []
    for r in range(_BAG_RINGS):
        a, b = rings[r], np.roll(rings[r], -1)
        c, d = np.roll(rings[r + 1], -1), rings[r + 1]
        bag_faces += [np.stack([a, c, b], 1), np.stack([a, d, c], 1)]
    last = rings[-1]
    bag_faces.append(np.stack([last, np.full(L, bag_pole), np.roll(last, -1)], 1))
    bag_faces = np.concatenate(bag_faces)

    # Eyes (left = +x = joint 3, right = -x = joint 4).
    eye_c = [_EYE_CENTRE, _EYE_CENTRE * np.array([-1.0, 1.0, 1.0])]
    eye_ids = []
    for c in eye_c:
        ev, ef = _uv_sphere(c, _EYE_RADIUS, n)
        verts.append(ev)
        faces.append(ef)
        eye_ids.append(n + np.arange(len(ev)))
        n += len(ev)

    v = np.concatenate(verts)
    f = np.concatenate(faces + [bag_faces])
    assert v.shape == (NUM_VERTICES, 3) and f.shape == (NUM_FACES, 3), (v.shape, f.shape)

    # ---- per-vertex descriptors for the fields ----------------------------------------
    n_head = _N_V * _N_U + 1 + _N_NECK + len(slit_cols)
    side = np.zeros(NUM_VERTICES)  # +1 upper-lip side, -1 lower-lip side, 0 elsewhere/corners
    ring_of = np.full(NUM_VERTICES, -1)
    ring_of[gidx] = np.arange(_N_V)[:, None]
    side[: _N_V * _N_U] = np.sign(ring_of[: _N_V * _N_U] - i_m)
    side[lower_lip] = -1.0
    side[upper_lip] = 1.0
    side[gidx[i_m]] = np.where(np.isin(gidx[i_m], upper_lip), 1.0, 0.0)
    side[neck] = -1.0
    lip_s = np.full(NUM_VERTICES, np.nan)  # position across the mouth, -1 .. 1 at corners
    corner_x = abs(v[corner_r, 0])
    lip_s[:n_head] = v[:n_head, 0] / corner_x
    bag_ids = np.concatenate(rings[1:] + [[bag_pole]])
    side[bag_ids] = np.concatenate(bag_side + [[0.0]])
    lip_s[bag_ids] = np.concatenate(bag_s + [[0.0]])
    elev = np.full(NUM_VERTICES, np.nan)
    elev[: _N_V * _N_U] = alpha[ring_of[: _N_V * _N_U]]
    elev[pole] = np.pi / 2
    elev[neck] = _ALPHA_NECK
    elev[lower_lip] = alpha_m
    azim = np.full(NUM_VERTICES, np.nan)
    azim[: _N_V * _N_U] = np.tile(beta, _N_V)
    azim[neck] = neck_beta
    azim[lower_lip] = beta[slit_cols]
    azim[pole] = 0.0

    geo = _Geometry(
        v=v, n_head=n_head, bag_ids=bag_ids, eye_ids=eye_ids, eye_centres=eye_c, side=side, lip_s=lip_s,
        elev=elev, azim=azim, alpha_mouth=alpha_m, mouth_y=float(v[upper_lip, 1].mean()),
        mouth_z=float(mouth_front_z), corner_x=float(corner_x), normal=_sdf_normal(v),
        ring_step=float(alpha[i_m + 1] - alpha[i_m - 1]) / 2, gidx=gidx,
    )
    landmarks = _landmarks(v, gidx, i_m, front, upper_lip, lower_lip, corner_l, corner_r, eye_ids, pole)
    jreg = _joint_regressor(geo)
    arrays = {
        "v_template": v,
        "shapedirs": np.concatenate([_identity_dirs(geo, seed), _expression_dirs(geo, seed)], axis=2),
        "posedirs": _pose_dirs(geo, seed),
        "J_regressor": jreg,
        "weights": _skinning_weights(geo, jreg),
        "kintree_table": np.array([PARENTS, range(5)], dtype=np.int64),
        "f": f.astype(np.int64),
    }
    for arr in arrays.values():
        arr.setflags(write=False)
    return arrays, landmarks


def _landmarks(v, gidx, i_m, front, upper_lip, lower_lip, corner_l, corner_r, eye_ids, pole) -> Dict[str, int]:
    col = gidx[:, front]
    ys = v[col, 1]
    mid = len(upper_lip) // 2
    return {
        "nose_tip": int(col[np.argmax(v[col, 2])]),
        "upper_lip": int(upper_lip[mid]),
        "lower_lip": int(lower_lip[mid]),
        "mouth_corner_left": int(corner_r),  # +x side
        "mouth_corner_right": int(corner_l),
        "chin": int(col[np.argmin(np.abs(ys + 0.072))]),
        "forehead": int(col[np.argmin(np.abs(ys - 0.085))]),
        "top_of_head": int(pole),
        "pupil_left": int(eye_ids[0][0]),
        "pupil_right": int(eye_ids[1][0]),
    }


def build_standin_flame(seed: int = 0) -> Dict[str, np.ndarray]:
    """Build the procedural stand-in head with FLAME's exact array layout (docs/assets.md §2).

    Args:
        seed: seeds the random smooth blendshape fields (identity directions beyond the
            first hand-made ones, expression directions beyond the first twelve). The
            geometry, topology and weights do not depend on it.

    Returns:
        ``{"v_template" (5023, 3) float64 metres, "shapedirs" (5023, 3, 400) metres per unit
        coefficient (0:300 identity, 300:400 expression), "posedirs" (5023, 3, 36),
        "J_regressor" (5, 5023) dense float64 rows summing to 1, "weights" (5023, 5) rows
        summing to 1, "kintree_table" (2, 5) int64 with parents [-1, 0, 1, 1, 1],
        "f" (9976, 3) int64}``. Fresh writable copies; the build is cached per seed.

    This is **not FLAME**: see the module docstring for what it is.
    """
    arrays, _ = _build(int(seed))
    return {k: np.array(a) for k, a in arrays.items()}


def standin_landmarks() -> Dict[str, int]:
    """Vertex indices of named points on the stand-in head (``nose_tip``, ``upper_lip``,
    ``lower_lip`` (the same point at rest: the lips are closed), ``mouth_corner_left/right``,
    ``chin``, ``forehead``, ``top_of_head``, ``pupil_left/right``). Left is +x.

    Only meaningful for :func:`build_standin_flame`; official FLAME files have their own.
    """
    return dict(_build(0)[1])
