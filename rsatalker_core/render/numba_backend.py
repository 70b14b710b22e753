"""Fast CPU inference rasterizer for 3D Gaussians: one fused numba loop per camera.

The same maths and conventions as :mod:`rsatalker_core.render.torch_backend` (gsplat's
'classic' mode, see its module doc for the method), without autograd: it serves rendering
when no gradient is needed (inference, the ROS render node, ``rsatalker render``), where the
pure-PyTorch path spends most of its time compositing (pixel, Gaussian) entries that do not
contribute. Per camera:

1. One pass over the Gaussians: EWA projection (gsplat ``_fully_fused_projection``:
   ``eps2d`` on the 2D covariance, Jacobian at the centre clamped to 1.3x the field of
   view, near/far planes) and the opacity-aware box ``extend = min(3.33, sqrt(2 ln(255 o)))``
   sigmas; Gaussians below opacity 1/255, outside the depth range or whose box misses the
   image are culled.
2. One stable depth sort per frame, then counting-sort binning into ``tile_size`` tiles, so
   each tile's list stays front to back.
3. Per tile, front to back: each Gaussian visits only the pixels of its box inside the tile,
   in runs of ``LANES`` pixels evaluated without branches (so LLVM vectorizes them);
   ``sigma = 1/2 (a dx^2 + c dy^2) + b dx dy`` at the pixel centre (``+0.5``), ``alpha =
   min(0.999, o exp(-sigma))``, skipped when ``sigma < 0`` or ``alpha < 1/255``; a pixel stops
   at the first Gaussian that would bring its transmittance to 1e-4 or below (that one is
   excluded), and the tile stops once all its pixels have.
4. ``rgb = sum_i alpha_i T_i c_i + T_final * background``, ``alpha = 1 - T_final``.

Precision: projection and depth sort run in float64 (the sort key rounded to the inputs'
precision first, as the other backends sort: surface Gaussians often tie in float32 depth,
and a tie broken the other way swaps two layers); compositing runs in the inputs' precision,
with a polynomial exp that vectorizes (libm's does not without Intel SVML). With float64
inputs (exp relative error 3e-14, ``_exp_neg_f64``) it matches the torch backend to ~1e-10;
with float32 inputs (exp relative error ~2e-6, ``_exp_neg_f32``) to ~1e-4 (at most one uint8
level), the rest being float32 rounding on both sides: an alpha within rounding of 1/255 or
a depth tie resolved differently (test/test_render_numba.py).

Compilation: the kernels are JIT-compiled by numba with ``cache=True``, so a process pays the
few-second compile once per machine (the cache lives in ``__pycache__`` beside this file, or
numba's user-wide cache directory when that is read-only, or ``NUMBA_CACHE_DIR``); when no
cache location is writable it compiles in memory instead. :func:`warmup` compiles or loads
the kernels on a tiny scene so that the first real frame does not pay for it.
"""

from __future__ import annotations

import math
import threading
import types
import warnings
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

import numba

#: Same thresholds as the torch backend (gsplat classic mode).
ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
BOX_SIGMAS = 3.33
#: Tile edge, pixels: transmittance termination is checked per tile.
TILE_SIZE = 16


#: LLVM fast-math flags for the binning and the float32 exp: reassociation and fused
#: multiply-adds only; no 'nnan' / 'ninf', so the NaN-safe comparisons stay as written.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: The compositing loop fuses multiply-adds only (~10% faster than none): no reassociation,
#: whose result would depend on how LLVM happened to vectorize or unroll each variant, so the
#: serial and the parallel tile loops give bit-identical pixels.
_TILE_FASTMATH = {"contract"}


def _njit(fastmath=False, inline="never"):
    """``numba.njit(cache=True, nogil=True)``, or without the on-disk cache when numba finds
    no usable cache location (it raises ``RuntimeError`` at decoration then)."""

    def wrap(fn):
        try:
            return numba.njit(cache=True, nogil=True, fastmath=fastmath, inline=inline)(fn)
        except RuntimeError as exc:  # pragma: no cover - depends on the file system
            warnings.warn(f"numba cannot cache the rasterizer ({exc}); compiling in memory", RuntimeWarning)
            return numba.njit(nogil=True, fastmath=fastmath, inline=inline)(fn)

    return wrap


@_njit()
def _project(means, quats, scales, opacities, viewmat, K, width, height, near, far, eps2d):
    """Project N Gaussians for one camera.

    Returns ``(keep [N] bool, mean2d [N, 2], conic [N, 3], depth [N], box [N, 2])`` where
    ``box`` is the opacity-aware half-size in pixels (``rx, ry``).
    """
    n = means.shape[0]
    keep = np.zeros(n, np.bool_)
    mean2d = np.zeros((n, 2))
    conic = np.zeros((n, 3))
    depth = np.zeros(n)
    box = np.zeros((n, 2))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_x = 0.5 * width / fx
    tan_y = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_x
    lim_x_neg = cx / fx + 0.3 * tan_x
    lim_y_pos = (height - cy) / fy + 0.3 * tan_y
    lim_y_neg = cy / fy + 0.3 * tan_y
    r00, r01, r02 = viewmat[0, 0], viewmat[0, 1], viewmat[0, 2]
    r10, r11, r12 = viewmat[1, 0], viewmat[1, 1], viewmat[1, 2]
    r20, r21, r22 = viewmat[2, 0], viewmat[2, 1], viewmat[2, 2]
    for i in range(n):
        o = opacities[i]
        if not (o >= ALPHA_THRESHOLD):
            continue
        mx, my, mz = means[i, 0], means[i, 1], means[i, 2]
        tz = r20 * mx + r21 * my + r22 * mz + viewmat[2, 3]
        if not (tz > near and tz < far):
            continue
        tx = r00 * mx + r01 * my + r02 * mz + viewmat[0, 3]
        ty = r10 * mx + r11 * my + r12 * mz + viewmat[1, 3]
        # Rotation from the normalised wxyz quaternion; M = R S, the world covariance is M M^T.
        qw, qx, qy, qz = quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]
        qn = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
        qw, qx, qy, qz = qw / qn, qx / qn, qy / qn, qz / qn
        sx, sy, sz = scales[i, 0], scales[i, 1], scales[i, 2]
        m00 = (1 - 2 * (qy * qy + qz * qz)) * sx
        m01 = 2 * (qx * qy - qw * qz) * sy
        m02 = 2 * (qx * qz + qw * qy) * sz
        m10 = 2 * (qx * qy + qw * qz) * sx
        m11 = (1 - 2 * (qx * qx + qz * qz)) * sy
        m12 = 2 * (qy * qz - qw * qx) * sz
        m20 = 2 * (qx * qz - qw * qy) * sx
        m21 = 2 * (qy * qz + qw * qx) * sy
        m22 = (1 - 2 * (qx * qx + qy * qy)) * sz
        # Pinhole Jacobian J at the clamped centre: the camera-frame covariance is
        # Rv M M^T Rv^T, so cov2d = (J Rv M) (J Rv M)^T + eps2d I (2x3 times its transpose).
        txc = tz * min(max(tx / tz, -lim_x_neg), lim_x_pos)
        tyc = tz * min(max(ty / tz, -lim_y_neg), lim_y_pos)
        j00 = fx / tz
        j02 = -fx * txc / (tz * tz)
        j11 = fy / tz
        j12 = -fy * tyc / (tz * tz)
        # rows of J Rv: J = [[j00, 0, j02], [0, j11, j12]]
        a0 = j00 * r00 + j02 * r20
        a1 = j00 * r01 + j02 * r21
        a2 = j00 * r02 + j02 * r22
        b0 = j11 * r10 + j12 * r20
        b1 = j11 * r11 + j12 * r21
        b2 = j11 * r12 + j12 * r22
        p0 = a0 * m00 + a1 * m10 + a2 * m20
        p1 = a0 * m01 + a1 * m11 + a2 * m21
        p2 = a0 * m02 + a1 * m12 + a2 * m22
        q0 = b0 * m00 + b1 * m10 + b2 * m20
        q1 = b0 * m01 + b1 * m11 + b2 * m21
        q2 = b0 * m02 + b1 * m12 + b2 * m22
        c00 = p0 * p0 + p1 * p1 + p2 * p2 + eps2d
        c01 = p0 * q0 + p1 * q1 + p2 * q2
        c11 = q0 * q0 + q1 * q1 + q2 * q2 + eps2d
        det = max(c00 * c11 - c01 * c01, 1e-10)
        u = (K[0, 0] * tx + K[0, 1] * ty + K[0, 2] * tz) / tz
        v = (K[1, 0] * tx + K[1, 1] * ty + K[1, 2] * tz) / tz
        # gsplat's 3.33-sigma visibility test.
        r3x = math.ceil(BOX_SIGMAS * math.sqrt(c00))
        r3y = math.ceil(BOX_SIGMAS * math.sqrt(c11))
        if not (u + r3x > 0 and u - r3x < width and v + r3y > 0 and v - r3y < height):
            continue
        if r3x <= 0 or r3y <= 0:
            continue
        ca = c11 / det
        cb = -c01 / det
        cc = c00 / det
        # Opacity-aware box (diagonal of cov2d recovered from the conic, as the torch backend).
        det_inv = max(ca * cc - cb * cb, 1e-30)
        extend = min(math.sqrt(2.0 * math.log(max(o, ALPHA_THRESHOLD) / ALPHA_THRESHOLD)), BOX_SIGMAS)
        rx = math.ceil(extend * math.sqrt(max(cc / det_inv, 0.0)))
        ry = math.ceil(extend * math.sqrt(max(ca / det_inv, 0.0)))
        if not (rx > 0 or ry > 0):
            continue
        if not (u + rx > 0 and u - rx < width and v + ry > 0 and v - ry < height):
            continue
        if not (math.isfinite(ca) and math.isfinite(cb) and math.isfinite(cc)):
            continue
        keep[i] = True
        mean2d[i, 0], mean2d[i, 1] = u, v
        conic[i, 0], conic[i, 1], conic[i, 2] = ca, cb, cc
        depth[i] = tz
        box[i, 0], box[i, 1] = rx, ry
    return keep, mean2d, conic, depth, box


@_njit()
def _depth_order(keep, depth, low):
    """Indices of the kept Gaussians front to back: ``ids[argsort(depth[ids], stable)]`` with
    the depth rounded to float32 when ``low`` (else float64), as a stable LSD radix sort
    (11-bit digits) of the float's order-preserving bit pattern: ~10x faster than NumPy's
    stable argsort (a merge sort for floats) on 20k Gaussians. Ties keep index order.
    """
    n = 0
    for i in range(keep.shape[0]):
        if keep[i]:
            n += 1
    ids = np.empty(n, np.int64)
    keys = np.empty(n, np.uint64)
    j = 0
    for i in range(keep.shape[0]):
        if keep[i]:
            ids[j] = i
            j += 1
    # Order-preserving unsigned keys: flip all bits of negatives, the sign bit of the rest
    # (+ 0.0 turns -0.0 into 0.0, which the comparison sort ties with it).
    if low:
        d32 = np.empty(n, np.float32)
        for j in range(n):
            d32[j] = np.float32(depth[ids[j]]) + np.float32(0.0)
        bits32 = d32.view(np.uint32)
        for j in range(n):
            b = np.uint64(bits32[j])
            keys[j] = (b ^ np.uint64(0xFFFFFFFF)) if b >> np.uint64(31) else (b | np.uint64(0x80000000))
    else:
        d64 = np.empty(n, np.float64)
        for j in range(n):
            d64[j] = depth[ids[j]] + 0.0
        bits64 = d64.view(np.uint64)
        for j in range(n):
            b = bits64[j]
            keys[j] = ~b if b >> np.uint64(63) else (b | np.uint64(0x8000000000000000))
    k2 = np.empty(n, np.uint64)
    i2 = np.empty(n, np.int64)
    count = np.empty(2049, np.int64)
    top = np.uint64(0)
    for j in range(n):
        top = max(top, keys[j])
    shift = np.uint64(0)
    while shift < np.uint64(64) and (top >> shift) > np.uint64(0):
        count[:] = 0
        for j in range(n):
            count[((keys[j] >> shift) & np.uint64(2047)) + np.uint64(1)] += 1
        for b in range(2048):
            count[b + 1] += count[b]
        for j in range(n):
            d = (keys[j] >> shift) & np.uint64(2047)
            at = count[d]
            count[d] = at + 1
            k2[at] = keys[j]
            i2[at] = ids[j]
        keys, k2 = k2, keys
        ids, i2 = i2, ids
        shift += np.uint64(11)
    return ids


@_njit(fastmath=_FASTMATH)
def _bin(ids, mean2d, conic, box, opacities, colors, width, height, ts):
    """Bin the depth-sorted Gaussians ``ids`` into tiles (counting sort, front to back).

    Returns the depth-ordered per-Gaussian arrays in ``colors``' dtype (the compositing
    precision), the pixel range of each box, the tile list offsets ``counts [n_tiles + 1]``
    and ``lists``.
    """
    D = colors.shape[1]
    tiles_x = (width + ts - 1) // ts
    tiles_y = (height + ts - 1) // ts
    n_tiles = tiles_x * tiles_y
    m = ids.shape[0]
    # Depth-ordered copies (contiguous reads in the tile loop) and pixel ranges of each box:
    # pixel centres px + 0.5 inside [u - rx, u + rx].
    ft = colors.dtype
    gx = np.empty(m, ft)
    gy = np.empty(m, ft)
    ga = np.empty(m, ft)
    gb = np.empty(m, ft)
    gc = np.empty(m, ft)
    go = np.empty(m, ft)
    gsmax = np.empty(m, ft)
    gcol = np.empty((m, D), ft)
    px0 = np.empty(m, np.int64)
    px1 = np.empty(m, np.int64)
    py0 = np.empty(m, np.int64)
    py1 = np.empty(m, np.int64)
    counts = np.zeros(n_tiles + 1, np.int64)
    for k in range(m):
        g = ids[k]
        u, v = mean2d[g, 0], mean2d[g, 1]
        gx[k], gy[k] = u, v
        ga[k], gb[k], gc[k] = conic[g, 0], conic[g, 1], conic[g, 2]
        go[k] = opacities[g]
        # alpha >= 1/255 needs sigma <= ln(255 o); a small margin keeps the exact test decisive.
        gsmax[k] = math.log(opacities[g] / ALPHA_THRESHOLD) + 1e-6
        for d in range(D):
            gcol[k, d] = colors[g, d]
        # (clamped as floats first: a huge box must not overflow the integer conversion)
        px0[k] = int(max(0.0, math.ceil(u - box[g, 0] - 0.5)))
        px1[k] = int(min(width - 1.0, math.floor(u + box[g, 0] - 0.5)))
        py0[k] = int(max(0.0, math.ceil(v - box[g, 1] - 0.5)))
        py1[k] = int(min(height - 1.0, math.floor(v + box[g, 1] - 0.5)))
        if px0[k] > px1[k] or py0[k] > py1[k]:
            continue
        for ty in range(py0[k] // ts, py1[k] // ts + 1):
            for tx in range(px0[k] // ts, px1[k] // ts + 1):
                counts[ty * tiles_x + tx + 1] += 1
    # Counting sort: visiting Gaussians in depth order keeps each tile's list front to back.
    for t in range(n_tiles):
        counts[t + 1] += counts[t]
    fill = counts[:n_tiles].copy()
    lists = np.empty(counts[n_tiles], np.int64)
    for k in range(m):
        if px0[k] > px1[k] or py0[k] > py1[k]:
            continue
        for ty in range(py0[k] // ts, py1[k] // ts + 1):
            for tx in range(px0[k] // ts, px1[k] // ts + 1):
                t = ty * tiles_x + tx
                lists[fill[t]] = k
                fill[t] += 1
    return gx, gy, ga, gb, gc, go, gsmax, gcol, px0, px1, py0, py1, counts, lists


#: Pixels composited together (one SIMD-friendly run of a row): a Gaussian's box row inside
#: a tile is covered by runs of LANES pixels from its left edge, each run a fixed-length
#: branch-free loop that LLVM vectorizes (most boxes of a 256² avatar are <= 16 pixels wide).
LANES = 16

#: exp(-s) for float32 compositing, 0 <= s <= ln(255) (+ margin): (p(s / 8))^8 with p a
#: degree-5 least-squares fit of exp(-x) on [0, 0.7] at Chebyshev nodes (relative error
#: 7e-7 before float32 rounding; about 2e-6 after, the float32 exp's order). A branch-free
#: polynomial vectorizes where libm's exp does not (without Intel SVML).
_EXP32 = (0.9999999185311924, -0.9999924147532213, 0.4998812766652466, -0.1659690305215301,
          0.03976483434482711, -0.0058424925193448175)


@_njit(fastmath=_FASTMATH, inline="always")
def _exp_neg_f32(s):
    """``exp(-s)`` for a float32 ``0 <= s <= ~6`` (see ``_EXP32``); float32 in and out."""
    x = s * np.float32(0.125)
    e = np.float32(_EXP32[0]) + x * (np.float32(_EXP32[1]) + x * (np.float32(_EXP32[2]) + x * (
        np.float32(_EXP32[3]) + x * (np.float32(_EXP32[4]) + x * np.float32(_EXP32[5])))))
    e = e * e
    e = e * e
    return e * e


#: exp(-s) for float64 compositing: (p(s / 16))^16 with p a degree-8 least-squares fit of
#: exp(-x) on [0, 0.35] at Chebyshev nodes (relative error 3e-14 on 0 <= s <= 5.6).
_EXP64 = (0.9999999999999981, -0.9999999999992523, 0.49999999994458766, -0.16666666507468655,
          0.04166664363536481, -0.008333145247678374, 0.00138798157530414, -0.00019584075172118776,
          2.0801847501133054e-05)


@_njit(inline="always")
def _exp_neg_f64(s):
    """``exp(-s)`` for a float64 ``0 <= s <= ~6`` (see ``_EXP64``)."""
    x = s * 0.0625
    e = _EXP64[0] + x * (_EXP64[1] + x * (_EXP64[2] + x * (_EXP64[3] + x * (_EXP64[4] + x * (
        _EXP64[5] + x * (_EXP64[6] + x * (_EXP64[7] + x * _EXP64[8])))))))
    e = e * e
    e = e * e
    e = e * e
    return e * e


def _tiles_kernel(gx, gy, ga, gb, gc, go, gsmax, gcol, px0, px1, py0, py1, counts, lists,
                  background, width, height, ts):
    """Composite every tile front to back (tiles are independent: ``prange`` over them), in
    the precision ``F`` of this variant (float32 or float64, see ``_jit_tiles``).

    A stopped pixel keeps ``-T`` (its final transmittance, negated). A Gaussian's box inside a
    tile is covered by runs of ``LANES`` pixels from its left edge; each run is evaluated in
    every row of the box without branches (masks instead), so LLVM vectorizes it. Returns
    ``(rgb [H, W, D] with background, alpha [H, W])``.
    """
    D = gcol.shape[1]
    tiles_x = (width + ts - 1) // ts
    tiles_y = (height + ts - 1) // ts
    n_tiles = tiles_x * tiles_y
    rgb = np.empty((height, width, D), F)
    alpha = np.empty((height, width), F)
    zero, half, one = F(0.0), F(0.5), F(1.0)
    a_thr, a_max, t_min = F(ALPHA_THRESHOLD), F(ALPHA_MAX), F(T_MIN)
    for t in numba.prange(n_tiles):
        # Tile rows padded by LANES pixels, so a run starting at any pixel of the row fits.
        T = np.ones((ts, ts + LANES), F)
        acc = np.zeros((ts, D, ts + LANES), F)
        a_run = np.empty((ts, LANES), F)  # alphas of one run, per tile row
        w_run = np.empty(LANES, F)  # weights of one run (D != 3)
        row_left = np.empty(ts, np.int64)  # pixels still compositing, per tile row
        x0 = (t % tiles_x) * ts
        y0 = (t // tiles_x) * ts
        nx = min(x0 + ts, width) - x0
        ny = min(y0 + ts, height) - y0
        row_left[:] = nx
        n_left = nx * ny
        for j in range(counts[t], counts[t + 1]):
            k = lists[j]
            ux, uy, o, smax = gx[k], gy[k], go[k], gsmax[k]
            hca, cb, hcc = half * ga[k], gb[k], half * gc[k]
            lo = max(px0[k] - x0, 0)
            hi = min(px1[k] - x0, nx - 1)
            ya = max(py0[k], y0)
            yb = min(py1[k], y0 + ny - 1)
            for cs in range(lo, hi + 1, LANES):
                last = hi - cs  # lanes 0..last are inside the box
                dx0 = ux - (F(x0 + cs) + half)
                # Pass 1: alpha of each pixel of the run in every live row (0 where the pixel is
                # skipped). It does not read T, so the exp of successive rows overlaps in the
                # pipeline instead of waiting on the previous Gaussian's T (~20% faster).
                for py in range(ya, yb + 1):
                    r = py - y0
                    if row_left[r] == 0:
                        continue
                    dy = uy - (F(py) + half)
                    cdy = hcc * dy * dy
                    bdy = cb * dy
                    ar = a_run[r]
                    for i in range(LANES):
                        dx = dx0 - F(i)
                        sigma = hca * dx * dx + cdy + bdy * dx
                        a = min(a_max, o * _exp_neg(min(max(sigma, zero), smax)))
                        ok = (i <= last) & (sigma >= zero) & (sigma <= smax) & (a >= a_thr)
                        ar[i] = a if ok else zero
                # Pass 2: transmittance and colour, front to back (D = 3 unrolled).
                if D == 3:
                    c0, c1, c2 = gcol[k, 0], gcol[k, 1], gcol[k, 2]
                    for py in range(ya, yb + 1):
                        r = py - y0
                        if row_left[r] == 0:
                            continue
                        ar = a_run[r]
                        Tr = T[r, cs : cs + LANES]
                        acc0 = acc[r, 0, cs : cs + LANES]
                        acc1 = acc[r, 1, cs : cs + LANES]
                        acc2 = acc[r, 2, cs : cs + LANES]
                        n_stop = 0
                        for i in range(LANES):
                            Tp = Tr[i]
                            a = ar[i]
                            ok = (Tp > zero) & (a > zero)
                            nT = Tp * (one - a)
                            stop = ok & (nT <= t_min)  # stops before this Gaussian
                            use = ok & (nT > t_min)
                            w = a * Tp if use else zero
                            Tr[i] = -Tp if stop else (nT if use else Tp)
                            n_stop += np.int64(stop)
                            acc0[i] += w * c0
                            acc1[i] += w * c1
                            acc2[i] += w * c2
                        row_left[r] -= n_stop
                        n_left -= n_stop
                else:
                    for py in range(ya, yb + 1):
                        r = py - y0
                        if row_left[r] == 0:
                            continue
                        ar = a_run[r]
                        Tr = T[r, cs : cs + LANES]
                        n_stop = 0
                        for i in range(LANES):
                            Tp = Tr[i]
                            a = ar[i]
                            ok = (Tp > zero) & (a > zero)
                            nT = Tp * (one - a)
                            stop = ok & (nT <= t_min)
                            use = ok & (nT > t_min)
                            w_run[i] = a * Tp if use else zero
                            Tr[i] = -Tp if stop else (nT if use else Tp)
                            n_stop += np.int64(stop)
                        for d in range(D):
                            acc_d = acc[r, d, cs : cs + LANES]
                            cd = gcol[k, d]
                            for i in range(LANES):
                                acc_d[i] += w_run[i] * cd
                        row_left[r] -= n_stop
                        n_left -= n_stop
            if n_left == 0:
                break
        for y in range(ny):
            for x in range(nx):
                Tp = abs(T[y, x])
                for d in range(D):
                    rgb[y0 + y, x0 + x, d] = acc[y, d, x] + Tp * background[d]
                alpha[y0 + y, x0 + x] = one - Tp
    return rgb, alpha


def _jit_tiles(parallel, dtype):
    # A distinct function object per variant: numba's on-disk cache is keyed by the
    # function's qualified name, not by the ``parallel`` flag or the globals it was built with.
    name = f"_tiles_{'parallel' if parallel else 'serial'}_{np.dtype(dtype).name}"
    env = dict(_tiles_kernel.__globals__)
    env["F"] = dtype
    env["_exp_neg"] = _exp_neg_f32 if dtype is np.float32 else _exp_neg_f64
    fn = types.FunctionType(_tiles_kernel.__code__, env, name)
    fn.__qualname__ = fn.__name__
    try:
        return numba.njit(cache=True, nogil=True, fastmath=_TILE_FASTMATH, parallel=parallel)(fn)
    except RuntimeError as exc:  # pragma: no cover - depends on the file system
        warnings.warn(f"numba cannot cache the rasterizer ({exc}); compiling in memory", RuntimeWarning)
        return numba.njit(nogil=True, fastmath=_TILE_FASTMATH, parallel=parallel)(fn)


#: The tile loop on one thread, and over numba's thread pool (``prange`` over tiles), per
#: compositing precision; compiled on first use.
_TILES = {(par, dt): _jit_tiles(par, dt) for par in (False, True) for dt in (np.float32, np.float64)}


def _composite(ids, mean2d, conic, box, opacities, colors, background, width, height, ts, threads=1):
    """Bin the depth-sorted Gaussians ``ids`` into tiles and composite each tile, on
    ``threads`` numba threads (1 = this thread only), in ``colors``' precision (float32 or
    float64; ``background`` in the same dtype).

    Returns ``(rgb [H, W, D] with background, alpha [H, W])``.
    """
    binned = _bin(ids, mean2d, conic, box, opacities, colors, width, height, ts)
    dtype = np.float32 if colors.dtype == np.float32 else np.float64
    if threads <= 1:
        return _TILES[False, dtype](*binned, background, width, height, ts)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return _TILES[True, dtype](*binned, background, width, height, ts)


def _f64(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())


def rasterize_numba(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = TILE_SIZE,
    threads: int = 1,
) -> Tuple[Tensor, Tensor]:
    """Rasterize 3D Gaussians to C images on the CPU, without gradients (module doc).

    Inputs are assumed validated (see :func:`rsatalker_core.render.rasterize`); the result is
    detached, on the inputs' device and in their dtype (float32 or float64).

    Args:
        means: world positions, metres. [N, 3]
        quats: rotations, wxyz, need not be normalised. [N, 4]
        scales: standard deviations along the rotated axes, metres. [N, 3]
        opacities: in [0, 1]. [N]
        colors: per-Gaussian features (RGB for D = 3). [N, D]
        viewmats: world-to-camera, OpenCV axes. [C, 4, 4]
        Ks: intrinsics, pixels. [C, 3, 3]
        width, height: image size, pixels.
        backgrounds: colour behind the Gaussians, or ``None`` for black. [C, D]
        near_plane, far_plane: camera-space depth range kept, metres.
        eps2d: added to the projected 2D covariance's diagonal, pixels^2.
        tile_size: tile edge, pixels (termination granularity; does not change pixels).
        threads: numba threads compositing tiles in parallel (identical pixels; 1 = the
            calling thread only). Only a free core makes this faster: on a 2-core machine
            with the other core busy, 2 threads took 28 ms instead of 25 ms per 256² frame
            (benchmarks/results_render.md, measured before the vectorized compositing).
            Not for concurrent calls from several threads (numba's thread pool is shared).

    Returns:
        ``(rgb [C, H, W, D], alpha [C, H, W, 1])``.
    """
    width, height, ts = int(width), int(height), int(tile_size)
    C, D = viewmats.shape[0], colors.shape[-1]
    m, q, s, o = (_f64(t) for t in (means, quats, scales, opacities))
    vm, ks = _f64(viewmats), _f64(Ks)
    # Projection and sort in float64; depth sort key and compositing in the inputs' precision.
    low = means.dtype in (torch.float32, torch.float16, torch.bfloat16)
    cdt, tdt = (np.float32, torch.float32) if low else (np.float64, torch.float64)
    col = np.ascontiguousarray(colors.detach().to("cpu", tdt).numpy())
    bg = (np.zeros((C, D), cdt) if backgrounds is None
          else np.ascontiguousarray(backgrounds.detach().to("cpu", tdt).numpy()))
    rgbs = np.empty((C, height, width, D), cdt)
    alphas = np.empty((C, height, width, 1), cdt)
    for c in range(C):
        keep, mean2d, conic, depth, box = _project(
            m, q, s, o, vm[c], ks[c], width, height, float(near_plane), float(far_plane), float(eps2d)
        )
        # Sort on depth rounded to the inputs' precision, as the other backends do: surface
        # Gaussians often tie in float32 depth, and ties then go by index there too.
        ids = _depth_order(keep, depth, low)
        rgb, alpha = _composite(ids, mean2d, conic, box, o, col, bg[c], width, height, ts, int(threads))
        rgbs[c] = rgb
        alphas[c, ..., 0] = alpha
    out_rgb = torch.from_numpy(rgbs).to(device=means.device, dtype=means.dtype)
    out_alpha = torch.from_numpy(alphas).to(device=means.device, dtype=means.dtype)
    return out_rgb, out_alpha


_warm_lock = threading.Lock()
_warm = False


def warmup() -> None:
    """Compile (or load from numba's cache) the kernels on a one-Gaussian 8x8 scene.

    Idempotent and thread-safe; call it at start-up so the first frame does not pay the
    compile (a few seconds on the first run on a machine, ~0.1 s to load from the cache).
    """
    global _warm
    with _warm_lock:
        if _warm:
            return
        eye = torch.eye(4, dtype=torch.float32)[None]
        eye[0, 2, 3] = 1.0
        K = torch.tensor([[[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]]])
        rasterize_numba(
            torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1),
            torch.ones(1), torch.ones(1, 3), eye, K, 8, 8,
        )
        _warm = True
