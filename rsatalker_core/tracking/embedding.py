"""Where MediaPipe's face landmarks sit on the head mesh (docs/ros.md "Face tracker").

A :class:`LandmarkEmbedding` ties MediaPipe landmark ``landmark_indices[i]`` to a point of
the mesh: triangle ``face_idx[i]`` at barycentric coordinates ``bary[i]``, so the landmark
moves with the posed FLAME mesh. The layout is FLAME's own MediaPipe embedding file
(``mediapipe_landmark_embedding.npz``: ``lmk_face_idx``, ``lmk_b_coords``,
``landmark_indices``), which FLAME publishes alongside its models; users of the official
FLAME pass that file (:func:`load_embedding`).

The procedural stand-in head (:mod:`rsatalker_core.head.standin`) has no such file, so this
module builds one (:func:`build_embedding_from_renders`): the default avatar, rendered at
rest from several head poses, is shown to MediaPipe, and every landmark's pixel ray is cast
onto the posed mesh; the hit (triangle, barycentric) whose rest position lies nearest the
median over the views is kept, landmarks whose hits disagree by more than a few
millimetres are dropped. ``scripts/build_standin_landmark_embedding.py`` writes the result
to ``rsatalker_core/assets/standin_mediapipe_embedding.npz`` (:func:`standin_embedding`).
Iris landmarks are cast onto the eyeballs only, every other landmark onto the skin only, so
gaze moves the irises and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from rsatalker_core.tracking.landmarks import IRIS_CENTRES, NUM_LANDMARKS, TrackingError

__all__ = [
    "LandmarkEmbedding",
    "load_embedding",
    "save_embedding",
    "standin_embedding",
    "embedding_for",
    "eye_face_mask",
    "ray_mesh_hits",
    "build_embedding_from_renders",
    "STANDIN_EMBEDDING_ASSET",
]

#: Packaged embedding of the stand-in head (built by scripts/build_standin_landmark_embedding.py).
STANDIN_EMBEDDING_ASSET = "standin_mediapipe_embedding.npz"


@dataclass
class LandmarkEmbedding:
    """MediaPipe landmarks -> points on the FLAME mesh.

    Attributes:
        landmark_indices: ``[L]`` int64 MediaPipe landmark ids (0..477).
        face_idx: ``[L]`` int64 triangle ids of the mesh (``faces`` of the FLAME layer).
        bary: ``[L, 3]`` float32 barycentric coordinates (rows sum to 1).
        source: where it came from (a path, or ``"standin"``).
        depth_offset: ``[L]`` float32 metres (None: zeros): where MediaPipe's relative depth
            of each landmark lies behind (+) or in front of (-) its mesh point, along the
            head's backward axis (:func:`calibrate_depth_offsets`; optional npz key
            ``lmk_depth_offset``).
    """

    landmark_indices: np.ndarray
    face_idx: np.ndarray
    bary: np.ndarray
    source: str = ""
    depth_offset: Optional[np.ndarray] = None

    def __post_init__(self):
        self.landmark_indices = np.asarray(self.landmark_indices, dtype=np.int64).reshape(-1)
        self.face_idx = np.asarray(self.face_idx, dtype=np.int64).reshape(-1)
        self.bary = np.asarray(self.bary, dtype=np.float32).reshape(-1, 3)
        L = len(self.landmark_indices)
        if self.depth_offset is None:
            self.depth_offset = np.zeros(L, np.float32)
        self.depth_offset = np.asarray(self.depth_offset, dtype=np.float32).reshape(-1)
        if len(self.depth_offset) != L or not np.isfinite(self.depth_offset).all():
            raise TrackingError(
                f"landmark embedding {self.source!r}: depth offsets must be {L} finite values, "
                f"got {len(self.depth_offset)}"
            )
        if len(self.face_idx) != L or len(self.bary) != L or L == 0:
            raise TrackingError(
                f"landmark embedding {self.source!r}: {L} landmark ids, {len(self.face_idx)} faces, "
                f"{len(self.bary)} barycentric rows (need the same number, > 0)"
            )
        if self.landmark_indices.min() < 0 or self.landmark_indices.max() >= NUM_LANDMARKS:
            raise TrackingError(f"landmark embedding {self.source!r}: landmark ids outside 0..{NUM_LANDMARKS - 1}")
        if not np.allclose(self.bary.sum(1), 1.0, atol=1e-3) or not np.isfinite(self.bary).all():
            raise TrackingError(f"landmark embedding {self.source!r}: barycentric rows must sum to 1")

    def __len__(self) -> int:
        return len(self.landmark_indices)

    def vertex_ids(self, faces: np.ndarray) -> np.ndarray:
        """``[L, 3]`` vertex ids of the landmark triangles.

        Raises:
            TrackingError: a triangle id outside ``faces`` (the embedding is for another mesh).
        """
        faces = np.asarray(faces)
        if self.face_idx.max() >= len(faces):
            raise TrackingError(
                f"landmark embedding {self.source!r} names triangle {int(self.face_idx.max())} but the mesh "
                f"has {len(faces)}: it is for another head model"
            )
        return faces[self.face_idx]

    def points(self, verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """``[..., L, 3]`` landmark positions on vertices ``[..., V, 3]``."""
        tri = np.asarray(verts)[..., self.vertex_ids(faces), :]  # [..., L, 3, 3]
        return np.einsum("...lkc,lk->...lc", tri, self.bary)


def load_embedding(path: str) -> LandmarkEmbedding:
    """Read a FLAME-layout MediaPipe embedding npz (``lmk_face_idx``, ``lmk_b_coords``,
    ``landmark_indices``), e.g. FLAME's ``mediapipe_landmark_embedding.npz``.

    Raises:
        TrackingError: missing file, missing keys or inconsistent arrays (names the file).
    """
    if not os.path.isfile(path):
        raise TrackingError(f"{path}: no such landmark embedding file")
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in ("lmk_face_idx", "lmk_b_coords", "landmark_indices") if k not in d.files]
            if missing:
                raise TrackingError(f"{path}: landmark embedding lacks {', '.join(missing)}")
            off = d["lmk_depth_offset"] if "lmk_depth_offset" in d.files else None
            return LandmarkEmbedding(d["landmark_indices"], d["lmk_face_idx"], d["lmk_b_coords"], source=path,
                                     depth_offset=off)
    except (OSError, ValueError) as exc:
        raise TrackingError(f"{path}: not a readable landmark embedding npz ({exc})") from exc


def save_embedding(path: str, emb: LandmarkEmbedding, **extra) -> None:
    """Write ``emb`` in FLAME's embedding layout (plus ``extra`` arrays, e.g. notes)."""
    np.savez(path, landmark_indices=emb.landmark_indices, lmk_face_idx=emb.face_idx,
             lmk_b_coords=emb.bary, lmk_depth_offset=emb.depth_offset, **extra)


def standin_embedding() -> LandmarkEmbedding:
    """The packaged embedding of the stand-in head (:data:`STANDIN_EMBEDDING_ASSET`).

    Raises:
        TrackingError: the asset is missing (rebuild it with
            ``scripts/build_standin_landmark_embedding.py``).
    """
    from rsatalker_core.config import resolve_asset

    path = resolve_asset(STANDIN_EMBEDDING_ASSET)
    emb = load_embedding(path)
    emb.source = "standin"
    return emb


def embedding_for(flame, path: str = "") -> LandmarkEmbedding:
    """The embedding to track with the FLAME layer ``flame`` (:class:`FlameModel`).

    ``path`` given: that file. Otherwise the stand-in's packaged embedding when ``flame``
    is the stand-in; the official FLAME needs ``path``. Iris centres missing from the file
    (FLAME's own has none) are added on the front-most vertex of each eyeball, so gaze is
    fitted with any head model.

    Raises:
        TrackingError: official FLAME without an embedding file, or a file for another mesh.
    """
    if path:
        emb = load_embedding(path)
    elif getattr(flame, "is_standin", False):
        emb = standin_embedding()
    else:
        raise TrackingError(
            "tracking with the official FLAME needs its MediaPipe landmark embedding "
            "(mediapipe_landmark_embedding.npz from the FLAME website): pass its path"
        )
    faces = flame.faces.cpu().numpy()
    emb.vertex_ids(faces)  # checks the triangle range
    return _with_iris(emb, flame.v_template.cpu().numpy(), faces, flame.lbs_weights.cpu().numpy())


def eye_face_mask(faces: np.ndarray, lbs_weights: np.ndarray) -> np.ndarray:
    """``[F]`` bool: triangles whose three vertices are skinned mostly to an eye joint (3, 4)."""
    dom = np.asarray(lbs_weights).argmax(1)
    return np.isin(dom[np.asarray(faces)], (3, 4)).all(1)


def _with_iris(emb: LandmarkEmbedding, v: np.ndarray, faces: np.ndarray, w: np.ndarray) -> LandmarkEmbedding:
    missing = [i for i in IRIS_CENTRES if i not in set(emb.landmark_indices.tolist())]
    if not missing:
        return emb
    dom = w.argmax(1)
    ids, fids, bs = [], [], []
    for lmk, joint_sign in zip(IRIS_CENTRES, (-1.0, 1.0)):  # 468: subject's right eye = -x = joint 4
        if lmk not in missing:
            continue
        joint = 3 if joint_sign > 0 else 4
        verts = np.flatnonzero(dom == joint)
        if len(verts) == 0:
            continue
        front = verts[np.argmax(v[verts, 2])]
        f = int(np.flatnonzero((faces == front).any(1))[0])
        b = (faces[f] == front).astype(np.float32)
        ids.append(lmk)
        fids.append(f)
        bs.append(b)
    if not ids:
        return emb
    return LandmarkEmbedding(np.concatenate([emb.landmark_indices, ids]), np.concatenate([emb.face_idx, fids]),
                             np.concatenate([emb.bary, np.stack(bs)]), emb.source,
                             np.concatenate([emb.depth_offset, np.zeros(len(ids), np.float32)]))


def ray_mesh_hits(
    origin: np.ndarray,  # [3]
    dirs: np.ndarray,  # [R, 3]
    tris: np.ndarray,  # [F, 3, 3]
    chunk: int = 16,
) -> Tuple[np.ndarray, np.ndarray]:
    """First hits of rays from ``origin`` along ``dirs`` on triangles ``tris`` (Moller-Trumbore).

    Returns:
        ``(tri_index [R] int64, -1 = no hit; bary [R, 3] float64)``.
    """
    o = np.asarray(origin, dtype=np.float64)
    tris = np.asarray(tris, dtype=np.float64)
    a, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    s = o - a  # [F, 3]
    q = np.cross(s, e1)  # [F, 3]
    out_i = np.full(len(dirs), -1, dtype=np.int64)
    out_b = np.zeros((len(dirs), 3))
    for c in range(0, len(dirs), chunk):
        d = np.asarray(dirs[c : c + chunk], dtype=np.float64)  # [r, 3]
        p = np.cross(d[:, None, :], e2[None])  # [r, F, 3]
        det = np.einsum("rfc,fc->rf", p, e1)
        ok = np.abs(det) > 1e-14
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = np.einsum("rfc,fc->rf", p, s) * inv
        v = np.einsum("rc,fc->rf", d, q) * inv
        t = np.einsum("fc,fc->f", e2, q)[None] * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6)
        t = np.where(hit, t, np.inf)
        best = t.argmin(1)
        has = np.isfinite(t[np.arange(len(d)), best])
        r = np.arange(len(d))
        out_i[c : c + len(d)] = np.where(has, best, -1)
        uu, vv = u[r, best], v[r, best]
        out_b[c : c + len(d)] = np.stack([1 - uu - vv, uu, vv], 1) * has[:, None]
    return out_i, out_b


#: Head rotations (axis-angle, radians) of the renders an embedding is built from.
EMBEDDING_HEAD_POSES = (
    (0.0, 0.0, 0.0), (0.0, 0.25, 0.0), (0.0, -0.25, 0.0), (0.15, 0.0, 0.0), (-0.15, 0.0, 0.0),
    (0.1, 0.15, 0.0), (-0.1, -0.15, 0.0),
)


def build_embedding_from_renders(
    renderer,
    landmarker,
    head_poses: Sequence[Tuple[float, float, float]] = EMBEDDING_HEAD_POSES,
    max_spread_m: float = 0.004,
) -> Tuple[LandmarkEmbedding, Dict[str, np.ndarray]]:
    """Build a landmark embedding by showing renders of the avatar to MediaPipe (see the
    module docstring).

    Args:
        renderer: an :class:`~rsatalker_core.render.renderer.AvatarRenderer` (its camera,
            FLAME layer and avatar are used; the expression is neutral).
        landmarker: a :class:`~rsatalker_core.tracking.landmarks.FaceLandmarker` with
            ``video=False``.
        head_poses: head rotations (axis-angle, radians) of the views.
        max_spread_m: landmarks whose rest-pose hits spread (median distance from their
            median) more than this, metres, are dropped.

    Returns:
        ``(embedding, {"spread": [478] metres, NaN = never hit})``.

    Raises:
        TrackingError: MediaPipe found no face in the frontal view.
    """
    import torch

    from rsatalker_core.config import HEAD_SLICE, MOTION_DIM

    flame = renderer.flame
    faces = flame.faces.cpu().numpy()
    eye = eye_face_mask(faces, flame.lbs_weights.cpu().numpy())
    rest = flame.forward_motion(torch.zeros(1, MOTION_DIM, device=flame.v_template.device))[0].cpu().numpy()
    view = renderer.viewmat[0].cpu().numpy().astype(np.float64)
    K = renderer.K[0].cpu().numpy().astype(np.float64)
    R, t = view[:3, :3], view[:3, 3]
    cam_centre = -R.T @ t
    is_iris = np.arange(NUM_LANDMARKS) >= 468
    hits: list = [[] for _ in range(NUM_LANDMARKS)]
    for k, hp in enumerate(head_poses):
        m = np.zeros(MOTION_DIM, np.float32)
        m[HEAD_SLICE] = hp
        lm = landmarker(renderer.render(m))
        if lm is None:
            if k == 0:
                raise TrackingError("MediaPipe finds no face in the frontal render of the avatar")
            continue
        verts = flame.forward_motion(torch.as_tensor(m, device=flame.v_template.device)[None])[0].cpu().numpy()
        pix = np.concatenate([lm.points[:, :2], np.ones((NUM_LANDMARKS, 1))], 1).astype(np.float64)
        d_cam = (np.linalg.inv(K) @ pix.T).T
        d_world = d_cam @ R  # R^T d
        for group, fmap in ((is_iris, np.flatnonzero(eye)), (~is_iris, np.flatnonzero(~eye))):
            fi, b = ray_mesh_hits(cam_centre, d_world[group], verts[faces[fmap]])
            for lmk, f, bb in zip(np.flatnonzero(group), fi, b):
                if f >= 0:
                    F = int(fmap[f])
                    hits[lmk].append((F, bb, bb @ rest[faces[F]]))
    ids, fids, bs = [], [], []
    spread = np.full(NUM_LANDMARKS, np.nan)
    for lmk in range(NUM_LANDMARKS):
        if not hits[lmk]:
            continue
        pts = np.stack([h[2] for h in hits[lmk]])
        med = np.median(pts, 0)
        dist = np.linalg.norm(pts - med, axis=1)
        spread[lmk] = float(np.median(dist))
        if spread[lmk] > max_spread_m and not is_iris[lmk]:
            continue
        best = hits[lmk][int(np.argmin(dist))]
        ids.append(lmk)
        fids.append(best[0])
        bs.append(best[1] / best[1].sum())
    emb = LandmarkEmbedding(np.array(ids), np.array(fids), np.stack(bs), source="standin")
    return emb, {"spread": spread}


def calibrate_depth_offsets(
    renderer,
    landmarker,
    emb: LandmarkEmbedding,
    head_poses: Sequence[Tuple[float, float, float]] = EMBEDDING_HEAD_POSES,
) -> np.ndarray:
    """Where MediaPipe's relative depth (the third landmark column) puts each landmark of
    ``emb`` relative to its mesh point, from renders of the avatar at rest in known head poses.

    Per view the two depth profiles are compared in metres about their means (MediaPipe's
    depth is in pixels, like x: times ``z_mean / fx``); each landmark's offset is the
    least-squares fit, over the views, of a displacement along the head's backward axis.

    Args:
        renderer, landmarker: as :func:`build_embedding_from_renders`.
        emb: the embedding to calibrate (its triangles on ``renderer.flame``'s mesh).
        head_poses: head rotations (axis-angle, radians) of the views.

    Returns:
        ``[L]`` float32 offsets, metres (:attr:`LandmarkEmbedding.depth_offset`), median 0.

    Raises:
        TrackingError: MediaPipe found no face in any view.
    """
    import torch

    from rsatalker_core.config import HEAD_SLICE, MOTION_DIM
    from rsatalker_core.head.flame import batch_rodrigues

    flame = renderer.flame
    faces = flame.faces.cpu().numpy()
    view = renderer.viewmat[0].cpu().numpy().astype(np.float64)
    fx = float(renderer.K[0, 0, 0])
    R, t = view[:3, :3], view[:3, 3]
    num = np.zeros(len(emb))
    den = 0.0
    for hp in head_poses:
        m = np.zeros(MOTION_DIM, np.float32)
        m[HEAD_SLICE] = hp
        lm = landmarker(renderer.render(m))
        if lm is None:
            continue
        verts = flame.forward_motion(torch.as_tensor(m, device=flame.v_template.device)[None])[0].cpu().numpy()
        z = (emb.points(verts, faces) @ R.T + t)[:, 2]  # [L] camera depth, metres
        z_mp = lm.points[emb.landmark_indices, 2].astype(np.float64) * z.mean() / fx
        err = (z_mp - z_mp.mean()) - (z - z.mean())
        head = batch_rodrigues(torch.tensor([hp], dtype=torch.float64))[0].numpy()
        c = float((R @ head @ np.array([0.0, 0.0, -1.0]))[2])  # depth change per metre backward
        num += c * err
        den += c * c
    if den == 0.0:
        raise TrackingError("MediaPipe finds no face in any render of the avatar")
    off = num / den
    return (off - np.median(off)).astype(np.float32)
