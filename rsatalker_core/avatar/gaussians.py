"""Gaussian head avatar bound to FLAME triangles (GaussianAvatars, Qian et al., CVPR 2024).

Reimplemented from the equations in docs/method.md §4 (the reference code is CC BY-NC-SA and
was not used). Every Gaussian lives in the local frame of one FLAME triangle, given by the
non-trainable ``binding`` index. For triangle ``(v0, v1, v2)``:

* ``a0 = n(v1 - v0)``, ``a1 = n(a0 x (v2 - v0))`` (the normal), ``a2 = -n(a1 x a0)``,
  ``R = [a0 a1 a2]`` (a rotation: orthonormal, det +1),
* ``k = (|v1 - v0| + |a2 . (v2 - v0)|) / 2`` (the triangle's size, metres),
* ``T = (v0 + v1 + v2) / 3``.

A Gaussian with local mean ``mu_c``, log-scale ``s_c`` and rotation ``r_c`` is, in world
space, ``mu = k R mu_c + T + c``, ``scale = k exp(s_c)``, ``rotation = R o r_c``, where ``c``
is the social position offset of its triangle's anchor (RSATalker §3.3; neural Gaussians added
by densification inherit their anchor's triangle and therefore its ``c``). An avatar trained
with the relationship (stages 2-3) carries the module computing ``c``
(:class:`~rsatalker_core.avatar.offsets.RelationshipOffsets`, attribute ``offsets``, saved in
its checkpoint); one without it renders with ``c = 0``.

Appearance: ``colors = sigmoid(colors_logit)`` (RGB in [0, 1], view-independent: the paper
renders the face from one frontal camera, so SH degree 0 suffices and the sigmoid keeps
colours in range without clamping); ``opacities = sigmoid(opacity_logits)``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsatalker_core.avatar.offsets import RelationshipOffsets
from rsatalker_core.io.checkpoint import atomic_save, load_checkpoint
from rsatalker_core.errors import CheckpointError
from rsatalker_core.render import RenderError

#: ``format`` tag of avatar checkpoints (see :mod:`rsatalker_core.io.checkpoint`).
CHECKPOINT_FORMAT = "rsatalker.gaussian_avatar"
#: Version of the avatar checkpoint layout.
CHECKPOINT_VERSION = 1

_PARAM_SHAPES = {
    "means_local": (3,),
    "log_scales": (3,),
    "quats_local": (4,),
    "opacity_logits": (),
    "colors_logit": (3,),
}


def triangle_frames(
    verts: Tensor,  # [B, V, 3]
    faces: Tensor,  # [F, 3]
    eps: float = 1e-12,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-triangle frame ``R``, scale ``k`` and centroid ``T`` (docs/method.md §4, GaussianAvatars §3.1).

    Args:
        verts: mesh vertices, metres. [B, V, 3]
        faces: vertex indices of each triangle. [F, 3]
        eps: guards the normalisations of degenerate triangles.

    Returns:
        ``(R [B, F, 3, 3], k [B, F], T [B, F, 3])``; ``R``'s columns are ``a0, a1, a2``.
    """
    B, n_faces = verts.shape[0], faces.shape[0]
    # one gather of the three corners (index_select: faster than advanced indexing)
    v0, v1, v2 = verts.index_select(1, faces.reshape(-1)).view(B, n_faces, 3, 3).unbind(2)
    e0, e1 = v1 - v0, v2 - v0
    a0 = F.normalize(e0, dim=-1, eps=eps)
    a1 = F.normalize(_cross(a0, e1), dim=-1, eps=eps)
    a2 = -F.normalize(_cross(a1, a0), dim=-1, eps=eps)
    R = torch.stack([a0, a1, a2], dim=-1)
    k = 0.5 * (e0.norm(dim=-1) + (a2 * e1).sum(-1).abs())
    T = (v0 + v1 + v2) / 3.0
    return R, k, T


def _cross(a: Tensor, b: Tensor) -> Tensor:  # [..., 3], [..., 3] -> [..., 3]
    """``a x b`` written out (the same products as ``torch.linalg.cross``, without its
    broadcasting checks: several times faster on ``[1, F, 3]``)."""
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], -1)


def rotmat_to_quat(R: Tensor) -> Tensor:  # [..., 3, 3] -> [..., 4]
    """Rotation matrices to unit quaternions (wxyz), differentiable.

    Each of the four standard closed forms divides by ``2 sqrt(t)`` with ``t`` one of
    ``1 + R00 + R11 + R22``, ``1 + R00 - R11 - R22``, ``1 - R00 + R11 - R22``,
    ``1 - R00 - R11 + R22``; the one with the largest ``t`` is taken (numerically stable).
    """
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    t = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    cands = torch.stack(
        [
            torch.stack([t[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, t[..., 1], m10 + m01, m02 + m20], -1),
            torch.stack([m02 - m20, m10 + m01, t[..., 2], m21 + m12], -1),
            torch.stack([m10 - m01, m02 + m20, m21 + m12, t[..., 3]], -1),
        ],
        -2,
    )  # [..., 4 candidates, 4]
    cands = cands / (2.0 * t.clamp_min(1e-8).sqrt())[..., None]
    best = t.argmax(-1)[..., None, None].expand(*t.shape[:-1], 1, 4)
    return F.normalize(cands.gather(-2, best).squeeze(-2), dim=-1)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:  # [..., 4], [..., 4] -> [..., 4]
    """Hamilton product ``a b`` of wxyz quaternions (rotation ``b`` first, then ``a``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def _barycentric_points(counts: Tensor) -> Tensor:
    """Well-spread barycentric coordinates for ``counts [F]`` points per triangle.

    Returns ``[sum(counts), 3]`` (float64), triangle by triangle: the centroid where a
    triangle has one point, else the first ``K`` points of the R2 low-discrepancy sequence
    on the unit square folded into the triangle.
    """
    local = torch.arange(int(counts.sum()), dtype=torch.float64)
    starts = torch.cumsum(counts, 0) - counts
    local = local - torch.repeat_interleave(starts, counts).double()
    g = 1.32471795724474602596  # plastic number
    u = torch.frac(0.5 + local / g)
    v = torch.frac(0.5 + local / (g * g))
    flip = (u + v) > 1.0
    u, v = torch.where(flip, 1.0 - u, u), torch.where(flip, 1.0 - v, v)
    single = torch.repeat_interleave(counts == 1, counts)
    third = torch.full_like(u, 1.0 / 3.0)
    u, v = torch.where(single, third, u), torch.where(single, third, v)
    return torch.stack([1.0 - u - v, u, v], -1)


class GaussianAvatar(nn.Module):
    """Gaussians bound to mesh triangles; ``forward`` poses them on a deformed mesh.

    Parameters (all ``[N, ...]``, trainable): ``means_local [N, 3]`` (``mu_c``),
    ``log_scales [N, 3]`` (``s_c``), ``quats_local [N, 4]`` (``r_c``, wxyz),
    ``opacity_logits [N]``, ``colors_logit [N, 3]``. Buffer: ``binding [N]`` (long, the
    triangle of each Gaussian). Optional submodule ``offsets``
    (:class:`~rsatalker_core.avatar.offsets.RelationshipOffsets` or ``None``): the
    relationship's per-anchor offsets ``c``. Build one with :meth:`from_mesh` or :meth:`load`.

    Args:
        binding: triangle index of each Gaussian. [N]
        num_triangles: triangles in the mesh the avatar is bound to (9976 for FLAME).

    Raises:
        RenderError: ``binding`` is not a 1-D index tensor within ``[0, num_triangles)``.
    """

    def __init__(self, binding: Tensor, num_triangles: int):
        super().__init__()
        binding = torch.as_tensor(binding)
        if binding.dim() != 1 or binding.dtype not in (torch.int32, torch.int64):
            raise RenderError(
                f"GaussianAvatar: binding must be a 1-D integer tensor, got {binding.dtype} {list(binding.shape)}"
            )
        if binding.numel() and (int(binding.min()) < 0 or int(binding.max()) >= num_triangles):
            raise RenderError(f"GaussianAvatar: binding indices must lie in [0, {num_triangles})")
        n = binding.numel()
        self.num_triangles = int(num_triangles)
        #: Metadata read from the checkpoint (empty for a new avatar).
        self.meta: Dict[str, Any] = {}
        #: ``load_state_dict`` adopts the state's number of Gaussians (densified training).
        self.resize_on_load = False
        self.register_buffer("binding", binding.long().clone())
        self.means_local = nn.Parameter(torch.zeros(n, 3))
        self.log_scales = nn.Parameter(torch.full((n, 3), math.log(0.5)))
        self.quats_local = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1))
        self.opacity_logits = nn.Parameter(torch.full((n,), math.log(0.9 / 0.1)))
        self.colors_logit = nn.Parameter(torch.zeros(n, 3))
        self.register_module("offsets", None)

    def attach_offsets(self, offsets: Optional[RelationshipOffsets]) -> None:
        """Set (or, with ``None``, remove) the relationship offsets module.

        Raises:
            RenderError: ``offsets.num_anchors`` is not the avatar's number of triangles.
        """
        if offsets is not None and offsets.num_anchors != self.num_triangles:
            raise RenderError(
                f"GaussianAvatar: offsets for {offsets.num_anchors} anchors, the avatar is bound to "
                f"{self.num_triangles} triangles"
            )
        self.offsets = offsets

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mesh(
        cls,
        verts: Tensor,  # [V, 3]
        faces: Tensor,  # [F, 3]
        per_triangle: Union[int, Tensor] = 1,
        scale: float = 0.5,
        normal_scale: float = 0.1,
        opacity: float = 0.9,
    ) -> "GaussianAvatar":
        """Anchor Gaussians on a mesh: ``per_triangle`` per triangle, flat discs in its plane.

        With ``per_triangle = 1`` each Gaussian sits at its triangle's centroid (the
        paper's anchors); with more, at well-spread barycentric points. The returned
        avatar reproduces those positions on ``verts`` exactly.

        Args:
            verts: rest-pose vertices, metres. [V, 3]
            faces: triangles. [F, 3]
            per_triangle: Gaussians per triangle (>= 1): one number for all, or a count
                per triangle ``[F]`` (denser where the image needs detail).
            scale: in-plane standard deviation as a fraction of the triangle size ``k``
                (divided by ``sqrt(per_triangle)``).
            normal_scale: standard deviation along the normal, as a fraction of ``k``.
            opacity: initial opacity in (0, 1).

        Returns:
            An avatar with ``N = sum(per_triangle)`` Gaussians, binding ``[0,..,0,1,..]``
            (triangle by triangle).

        Raises:
            RenderError: malformed ``verts``/``faces`` or out-of-range settings.
        """
        if verts.dim() != 2 or verts.shape[-1] != 3:
            raise RenderError(f"from_mesh: verts must be [V, 3], got {list(verts.shape)}")
        _check_faces(faces, verts.shape[0])
        n_faces = faces.shape[0]
        counts = torch.as_tensor(per_triangle).long().cpu()
        counts = counts.expand(n_faces).clone() if counts.dim() == 0 else counts
        if tuple(counts.shape) != (n_faces,) or (counts.numel() and int(counts.min()) < 1):
            raise RenderError(f"from_mesh: per_triangle must be >= 1, as one number or [F={n_faces}] counts")
        if not 0.0 < opacity < 1.0 or scale <= 0 or normal_scale <= 0:
            raise RenderError(
                f"from_mesh: need 0 < opacity < 1 and positive scales, got {opacity}, {scale}, {normal_scale}"
            )
        avatar = cls(torch.repeat_interleave(torch.arange(n_faces), counts), n_faces)
        with torch.no_grad():
            v = verts.detach().cpu().to(torch.float64)
            R, k, T = triangle_frames(v[None], faces.long().cpu())
            b = avatar.binding
            bary = _barycentric_points(counts)  # [N, 3]
            pts = torch.einsum("nj,njd->nd", bary, v[faces.long().cpu()][b])  # [N, 3]
            local = torch.einsum("ndi,nd->ni", R[0][b], pts - T[0][b]) / k[0][b].clamp_min(1e-12)[:, None]
            avatar.means_local.copy_(local.float())
            s = scale / counts[b].double().sqrt()
            avatar.log_scales.copy_(
                torch.stack([s.log(), torch.full_like(s, math.log(normal_scale)), s.log()], -1).float()
            )
            avatar.opacity_logits.fill_(math.log(opacity / (1.0 - opacity)))
        return avatar.to(verts.device)

    @property
    def num_gaussians(self) -> int:
        """Number of Gaussians ``N``."""
        return int(self.binding.shape[0])

    @property
    def opacities(self) -> Tensor:  # [N]
        """Opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def colors(self) -> Tensor:  # [N, 3]
        """RGB colours in (0, 1)."""
        return torch.sigmoid(self.colors_logit)

    @torch.no_grad()
    def append_gaussians(self, parents: Tensor) -> None:
        """Densify: append copies of Gaussians ``parents [M]`` bound to the same triangles.

        The new (neural) Gaussians inherit their parent's triangle, hence its social
        offset ``c``. Parameters are replaced by larger ones: rebuild any optimizer.
        """
        parents = torch.as_tensor(parents, device=self.binding.device).long().reshape(-1)
        if parents.numel() and (int(parents.min()) < 0 or int(parents.max()) >= self.num_gaussians):
            raise RenderError(f"append_gaussians: parent indices must lie in [0, {self.num_gaussians})")
        self.binding = torch.cat([self.binding, self.binding[parents]])
        for name in _PARAM_SHAPES:
            p = getattr(self, name)
            setattr(self, name, nn.Parameter(torch.cat([p.data, p.data[parents]]), requires_grad=p.requires_grad))

    @torch.no_grad()
    def resize_(self, num_gaussians: int) -> None:
        """Give every per-Gaussian tensor ``num_gaussians`` rows, keeping the Parameter
        objects (so an optimiser built on them stays valid); the values are undefined
        until loaded. Used to load a training checkpoint whose densification changed N."""
        n = int(num_gaussians)
        self.binding = self.binding.new_zeros(n)
        for name, shape in _PARAM_SHAPES.items():
            p = getattr(self, name)
            p.data = p.data.new_zeros((n,) + shape)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Training with densification (rsatalker_core.training.densify) changes N: when
        # ``resize_on_load`` is set, adopt the checkpoint's N before the usual shape checks.
        key = prefix + "binding"
        if getattr(self, "resize_on_load", False) and key in state_dict:
            n = int(state_dict[key].shape[0])
            if n != self.num_gaussians:
                self.resize_(n)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # ------------------------------------------------------------------ deformation
    def forward(
        self,
        verts: Tensor,  # [B, V, 3]
        faces: Tensor,  # [F, 3]
        offsets: Optional[Tensor] = None,  # [B, F, 3]
    ) -> Dict[str, Tensor]:
        """World-space Gaussians on a posed mesh (docs/method.md §4).

        Without gradients on the CPU (inference: rendering, the ROS render node) the binding
        runs as one numba call (:mod:`rsatalker_core.avatar.binding_numba`, the same maths
        in float64, equal to this path to float32 rounding, about 4x less CPU); with
        gradients, on other devices or without numba, as torch operations.

        Args:
            verts: posed vertices, metres. [B, V, 3]
            faces: triangles, ``F == num_triangles``. [F, 3]
            offsets: per-anchor (per-triangle) social position offsets ``c``, metres,
                gathered through ``binding``; ``None`` for none. [B, F, 3]

        Returns:
            dict with ``means [B, N, 3]`` (metres), ``quats [B, N, 4]`` (wxyz, unit),
            ``scales [B, N, 3]`` (metres), ``opacities [N]``, ``colors [N, 3]``.

        Raises:
            RenderError: shapes that do not fit the mesh the avatar is bound to.
        """
        if verts.dim() != 3 or verts.shape[-1] != 3:
            raise RenderError(f"GaussianAvatar: verts must be [B, V, 3], got {list(verts.shape)}")
        _check_faces(faces, verts.shape[1], check_range=False)  # no device sync per frame
        if faces.shape[0] != self.num_triangles:
            raise RenderError(
                f"GaussianAvatar: bound to a mesh of {self.num_triangles} triangles, got faces with {faces.shape[0]}"
            )
        B = verts.shape[0]
        if offsets is not None and tuple(offsets.shape) != (B, self.num_triangles, 3):
            raise RenderError(
                f"GaussianAvatar: offsets must be [B={B}, F={self.num_triangles}, 3], got {list(offsets.shape)}"
            )
        if not torch.is_grad_enabled() and verts.device.type == "cpu" and _fast_binding() is not None:
            # inference: the same maths in one numba call (rsatalker_core/avatar/binding_numba.py)
            means, quats, scales = _fast_binding()(
                verts, faces, self.binding, self.means_local, torch.exp(self.log_scales),
                F.normalize(self.quats_local, dim=-1), offsets,
            )
            return {"means": means, "quats": quats, "scales": scales,
                    "opacities": self.opacities, "colors": self.colors}
        R, k, T = triangle_frames(verts, faces.long())
        q_tri = rotmat_to_quat(R)  # [B, F, 4]
        b = self.binding
        # Everything per triangle in one [B, F, 17] table, gathered once per Gaussian
        # (index_select; one gather instead of four advanced-indexing copies).
        per_tri = [R.reshape(B, -1, 9), k[..., None], T, q_tri]
        if offsets is not None:
            per_tri.append(offsets.to(R))
        table = torch.cat(per_tri, -1).index_select(1, b)  # [B, N, 17 (+3)]
        Rb, kb, Tb, qb = table[..., :9].view(B, -1, 3, 3), table[..., 9:10], table[..., 10:13], table[..., 13:17]
        # R mu_c as an elementwise product and sum (a batched 3x3 matmul per Gaussian is slow on CPU)
        means = kb * (Rb * self.means_local[None, :, None, :]).sum(-1) + Tb
        if offsets is not None:
            means = means + table[..., 17:20]
        scales = kb * torch.exp(self.log_scales)[None]
        quats = quat_multiply(qb, F.normalize(self.quats_local, dim=-1)[None])
        return {
            "means": means,
            "quats": quats,
            "scales": scales,
            "opacities": self.opacities,
            "colors": self.colors,
        }

    # ------------------------------------------------------------------ files
    def save(self, path: str, extra: Optional[Dict[str, Any]] = None) -> None:
        """Write the avatar (atomically) with its metadata.

        Args:
            path: destination ``.pt`` file.
            extra: more metadata to keep (e.g. how it was fitted); plain Python values.
        """
        meta = {
            "num_gaussians": self.num_gaussians,
            "num_triangles": self.num_triangles,
            "color_activation": "sigmoid",
            "opacity_activation": "sigmoid",
        }
        meta.update(extra or {})
        state = {k: v.detach().cpu().clone() for k, v in self.state_dict().items() if not k.startswith("offsets.")}
        data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "meta": meta, "state_dict": state}
        if self.offsets is not None:
            data["offsets"] = self.offsets.to_checkpoint()
        atomic_save(data, path)

    @classmethod
    def load(
        cls,
        path: str,
        map_location: Optional[Union[str, torch.device]] = "cpu",
        num_triangles: Optional[int] = None,
    ) -> "GaussianAvatar":
        """Read an avatar written by :meth:`save` (with its relationship offsets, when saved).

        Args:
            path: the checkpoint.
            map_location: device to load onto.
            num_triangles: when given, the triangles of the mesh the avatar must be bound to
                (``FlameModel.faces.shape[0]``).

        Raises:
            CheckpointError: the file is missing, corrupt, of another format or version, its
                tensors disagree with its metadata, or it is bound to another number of
                triangles than ``num_triangles`` (the message names ``path``).
        """
        data = load_checkpoint(path, CHECKPOINT_FORMAT, map_location, required_keys=("state_dict", "meta", "version"))
        if data["version"] != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path}: avatar checkpoint version {data['version']}, expected {CHECKPOINT_VERSION}")
        meta, state = data["meta"], data["state_dict"]
        try:
            n, n_tri = int(meta["num_gaussians"]), int(meta["num_triangles"])
            binding = state["binding"]
            for name, shape in _PARAM_SHAPES.items():
                if tuple(state[name].shape) != (n,) + shape:
                    raise CheckpointError(
                        f"{path}: '{name}' has shape {list(state[name].shape)}, expected {[n, *shape]}"
                    )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{path}: malformed avatar checkpoint ({type(exc).__name__}: {exc})") from exc
        if tuple(binding.shape) != (n,):
            raise CheckpointError(f"{path}: binding has shape {list(binding.shape)}, expected [{n}]")
        try:
            avatar = cls(binding, n_tri)
        except RenderError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        try:
            avatar.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: state does not fit a GaussianAvatar ({exc})") from exc
        avatar.meta = dict(meta)
        if data.get("offsets") is not None:
            try:
                avatar.attach_offsets(RelationshipOffsets.from_checkpoint(data["offsets"], path))
            except RenderError as exc:
                raise CheckpointError(f"{path}: {exc}") from exc
        if num_triangles is not None and avatar.num_triangles != int(num_triangles):
            raise CheckpointError(
                f"{path}: avatar is bound to {avatar.num_triangles} triangles, the mesh has {int(num_triangles)}"
            )
        return avatar.to(map_location) if map_location is not None else avatar


_FAST_BINDING: Any = False  # not yet looked up


def _fast_binding():
    """:func:`rsatalker_core.avatar.binding_numba.bind_gaussians`, or ``None`` where numba
    does not import (looked up once)."""
    global _FAST_BINDING
    if _FAST_BINDING is False:
        try:
            from rsatalker_core.avatar.binding_numba import bind_gaussians
        except Exception:  # ImportError, or numba refusing this numpy: the torch path serves
            bind_gaussians = None
        _FAST_BINDING = bind_gaussians
    return _FAST_BINDING


def _check_faces(faces: Tensor, n_verts: int, check_range: bool = True) -> None:
    """Raise :class:`RenderError` unless ``faces`` is an integer ``[F, 3]`` index into ``n_verts``."""
    if not isinstance(faces, Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        raise RenderError(f"faces must be an [F, 3] tensor, got {getattr(faces, 'shape', type(faces))}")
    if faces.is_floating_point():
        raise RenderError(f"faces must be an integer tensor, got {faces.dtype}")
    if check_range and faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= n_verts):
        raise RenderError(f"faces index vertices outside [0, {n_verts})")
