"""Inference fast path of :meth:`GaussianAvatar.forward`: the binding of Gaussians to the
posed FLAME triangles in one numba loop (no autograd).

Same maths as the torch path (docs/method.md §4, GaussianAvatars §3.1): per triangle the
frame ``R = [a0 a1 a2]``, size ``k`` and centroid ``T`` (:func:`triangle_frames`) and the
frame's quaternion (:func:`rotmat_to_quat`: the closed form with the largest ``t``, first on
ties, then normalised); per Gaussian ``mu = k R mu_c + T + c``, ``scale = k exp(s_c)``,
``rotation = q_R o n(r_c)``. The torch path issues about a hundred small tensor operations
per frame (about 5 ms of CPU for the 20k-Gaussian default avatar on one core, holding the GIL
between them); this is one call that releases the GIL (about 0.3 ms). Arithmetic is float64,
the result is cast to the input dtype: it matches the torch path to float32 rounding
(test/test_gaussians_fast.py).

The kernel is compiled by numba with ``cache=True`` (see
:mod:`rsatalker_core.render.numba_backend` for where the cache lives).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

import numba


def _njit(fn):
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError as exc:  # pragma: no cover - no writable cache location
        warnings.warn(f"numba cannot cache the avatar binding ({exc}); compiling in memory", RuntimeWarning)
        return numba.njit(nogil=True)(fn)


@_njit
def _bind(verts, faces, binding, means_local, scales_exp, quats_n, offsets, has_offsets, eps,
          out_means, out_quats, out_scales):  # pragma: no cover - compiled
    B = verts.shape[0]
    n_tri = faces.shape[0]
    N = binding.shape[0]
    R = np.empty((n_tri, 3, 3))
    k = np.empty(n_tri)
    T = np.empty((n_tri, 3))
    q = np.empty((n_tri, 4))
    e0 = np.empty(3)
    e1 = np.empty(3)
    a0 = np.empty(3)
    a1 = np.empty(3)
    a2 = np.empty(3)
    t = np.empty(4)
    c = np.empty(4)
    for bi in range(B):
        for f in range(n_tri):
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            for d in range(3):
                v0 = np.float64(verts[bi, i0, d])
                e0[d] = np.float64(verts[bi, i1, d]) - v0
                e1[d] = np.float64(verts[bi, i2, d]) - v0
                T[f, d] = (v0 + np.float64(verts[bi, i1, d]) + np.float64(verts[bi, i2, d])) / 3.0
            n0 = math.sqrt(e0[0] * e0[0] + e0[1] * e0[1] + e0[2] * e0[2])
            s = 1.0 / max(n0, eps)
            for d in range(3):
                a0[d] = e0[d] * s
            x = a0[1] * e1[2] - a0[2] * e1[1]
            y = a0[2] * e1[0] - a0[0] * e1[2]
            z = a0[0] * e1[1] - a0[1] * e1[0]
            s = 1.0 / max(math.sqrt(x * x + y * y + z * z), eps)
            a1[0], a1[1], a1[2] = x * s, y * s, z * s
            x = a1[1] * a0[2] - a1[2] * a0[1]
            y = a1[2] * a0[0] - a1[0] * a0[2]
            z = a1[0] * a0[1] - a1[1] * a0[0]
            s = -1.0 / max(math.sqrt(x * x + y * y + z * z), eps)
            a2[0], a2[1], a2[2] = x * s, y * s, z * s
            for d in range(3):
                R[f, d, 0] = a0[d]
                R[f, d, 1] = a1[d]
                R[f, d, 2] = a2[d]
            k[f] = 0.5 * (n0 + abs(a2[0] * e1[0] + a2[1] * e1[1] + a2[2] * e1[2]))
            # rotmat_to_quat: the candidate with the largest t (the first on ties)
            m00, m01, m02 = R[f, 0, 0], R[f, 0, 1], R[f, 0, 2]
            m10, m11, m12 = R[f, 1, 0], R[f, 1, 1], R[f, 1, 2]
            m20, m21, m22 = R[f, 2, 0], R[f, 2, 1], R[f, 2, 2]
            t[0] = 1 + m00 + m11 + m22
            t[1] = 1 + m00 - m11 - m22
            t[2] = 1 - m00 + m11 - m22
            t[3] = 1 - m00 - m11 + m22
            best = 0
            for j in range(1, 4):
                if t[j] > t[best]:
                    best = j
            if best == 0:
                c[0], c[1], c[2], c[3] = t[0], m21 - m12, m02 - m20, m10 - m01
            elif best == 1:
                c[0], c[1], c[2], c[3] = m21 - m12, t[1], m10 + m01, m02 + m20
            elif best == 2:
                c[0], c[1], c[2], c[3] = m02 - m20, m10 + m01, t[2], m21 + m12
            else:
                c[0], c[1], c[2], c[3] = m10 - m01, m02 + m20, m21 + m12, t[3]
            s = 2.0 * math.sqrt(max(t[best], 1e-8))
            nq = 0.0
            for j in range(4):
                c[j] = c[j] / s
                nq += c[j] * c[j]
            s = 1.0 / max(math.sqrt(nq), 1e-12)
            for j in range(4):
                q[f, j] = c[j] * s
        for g in range(N):
            f = binding[g]
            kf = k[f]
            mx, my, mz = np.float64(means_local[g, 0]), np.float64(means_local[g, 1]), np.float64(means_local[g, 2])
            for d in range(3):
                v = kf * (R[f, d, 0] * mx + R[f, d, 1] * my + R[f, d, 2] * mz) + T[f, d]
                if has_offsets:
                    v += offsets[bi, f, d]
                out_means[bi, g, d] = v
                out_scales[bi, g, d] = kf * scales_exp[g, d]
            aw, ax, ay, az = q[f, 0], q[f, 1], q[f, 2], q[f, 3]
            bw, bx, by, bz = quats_n[g, 0], quats_n[g, 1], quats_n[g, 2], quats_n[g, 3]
            out_quats[bi, g, 0] = aw * bw - ax * bx - ay * by - az * bz
            out_quats[bi, g, 1] = aw * bx + ax * bw + ay * bz - az * by
            out_quats[bi, g, 2] = aw * by - ax * bz + ay * bw + az * bx
            out_quats[bi, g, 3] = aw * bz + ax * by - ay * bx + az * bw


def bind_gaussians(
    verts: Tensor,  # [B, V, 3]
    faces: Tensor,  # [F, 3]
    binding: Tensor,  # [N]
    means_local: Tensor,  # [N, 3]
    scales_exp: Tensor,  # [N, 3]
    quats_n: Tensor,  # [N, 4]
    offsets: Optional[Tensor] = None,  # [B, F, 3]
    eps: float = 1e-12,
) -> Tuple[Tensor, Tensor, Tensor]:
    """World-space ``(means [B, N, 3], quats [B, N, 4], scales [B, N, 3])`` of Gaussians
    bound to a posed mesh, without gradients (module docstring; CPU tensors).

    Args:
        verts: posed vertices, metres. [B, V, 3]
        faces: triangles (in range: checked by the caller). [F, 3]
        binding: triangle of each Gaussian. [N]
        means_local: ``mu_c``. [N, 3]
        scales_exp: ``exp(s_c)``. [N, 3]
        quats_n: ``r_c`` normalised (wxyz). [N, 4]
        offsets: per-triangle offsets ``c``, metres, or ``None``. [B, F, 3]
        eps: guard of the normalisations, as :func:`triangle_frames`.

    Returns:
        the three tensors, in ``verts``' dtype, on the CPU.
    """
    B, N = verts.shape[0], binding.shape[0]
    v = verts.detach().numpy() if verts.dtype in (torch.float32, torch.float64) else verts.detach().double().numpy()
    f = faces.detach().to(torch.int64).numpy()
    b = binding.detach().to(torch.int64).numpy()
    ml = means_local.detach().double().numpy()
    se = scales_exp.detach().double().numpy()
    qn = quats_n.detach().double().numpy()
    off = offsets.detach().double().numpy() if offsets is not None else np.zeros((1, 1, 3))
    out_m = np.empty((B, N, 3))
    out_q = np.empty((B, N, 4))
    out_s = np.empty((B, N, 3))
    _bind(np.ascontiguousarray(v), np.ascontiguousarray(f), b, ml, se, qn, np.ascontiguousarray(off),
          offsets is not None, float(eps), out_m, out_q, out_s)
    dt = verts.dtype
    return torch.from_numpy(out_m).to(dt), torch.from_numpy(out_q).to(dt), torch.from_numpy(out_s).to(dt)
