"""The FLAME layer: official model files (or the stand-in head) and linear blend skinning.

FLAME (Li, Bolkart, Black, Li, Romero, "Learning a model of facial shape and expression
from 4D scans", SIGGRAPH Asia 2017) maps identity β, expression ψ and joint rotations θ to
mesh vertices (paper Eq. 1-4):

    T_P(β, θ, ψ) = T̄ + B_S(β; S) + B_P(θ; P) + B_E(ψ; E)          (Eq. 2-3)
    J(β, ψ)      = 𝒥 (T̄ + B_S + B_E)                                (joint regressor)
    M(β, θ, ψ)   = W(T_P, J, θ, 𝒲)                                   (Eq. 1, LBS)

with B_P driven by the 36 entries of (R_k(θ) - I) of the four non-root joints (Eq. 4) and
W the standard linear blend skinning along the kinematic chain global → neck → {jaw,
left eye, right eye}. :func:`lbs` implements this directly in PyTorch (differentiable,
following the device and dtype of its inputs); :class:`FlameModel` holds the arrays.

Model files: the official FLAME 2020 / 2023 / 2023 Open pkl (python-2 pickles holding
chumpy objects, read here *without* chumpy) or an npz with the same keys (docs/assets.md §1).
When ``flame.model_path`` is empty the procedural stand-in of
:mod:`rsatalker_core.head.standin` is used and a warning says so at every use.

Example:
    >>> flame = FlameModel(FlameConfig())              # stand-in (logged)
    >>> motion = torch.zeros(10, 56)                   # [T, exp 50 | jaw 3 | head 3]
    >>> flame.forward_motion(motion).shape
    torch.Size([10, 5023, 3])
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Dict, Optional

import numpy as np
import scipy.sparse
import torch
from torch import Tensor, nn

from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, JAW_SLICE, MOTION_DIM, FlameConfig
from rsatalker_core.errors import ConfigError, FlameModelError
from rsatalker_core.head.standin import build_standin_flame

LOG = logging.getLogger("rsatalker.flame")

NUM_VERTICES = 5023
NUM_FACES = 9976
NUM_JOINTS = 5
NUM_SHAPE_MAX = 300
NUM_EXPR_MAX = 100
JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")
PARENTS = (-1, 0, 1, 1, 1)
FLAME_HINT = (
    "get FLAME 2020, 2023 or 2023 Open from https://flame.is.tue.mpg.de (free registration; "
    "FLAME 2020/2023 are for non-commercial use, FLAME 2023 Open is CC-BY-4.0) and set "
    "flame.model_path to its .pkl or .npz; an empty flame.model_path uses the procedural "
    "stand-in head (not FLAME)"
)

#: Array name -> expected shape (docs/assets.md §1).
FLAME_ARRAYS = {
    "v_template": (NUM_VERTICES, 3),
    "shapedirs": (NUM_VERTICES, 3, NUM_SHAPE_MAX + NUM_EXPR_MAX),
    "posedirs": (NUM_VERTICES, 3, 36),
    "J_regressor": (NUM_JOINTS, NUM_VERTICES),
    "weights": (NUM_VERTICES, NUM_JOINTS),
    "kintree_table": (2, NUM_JOINTS),
    "f": (NUM_FACES, 3),
}

STANDIN_WARNING = (
    "flame.model_path is empty: using the procedural stand-in head, NOT the FLAME model "
    "(same array layout, hand-made geometry and blendshapes); " + FLAME_HINT.split("; an empty")[0]
)


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


class _ChumpyStandIn:
    """Receives the pickled state of a chumpy object; ``state['x']`` holds a plain array."""

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"x": state}


_SAFE_BUILTINS = {"object", "set", "frozenset", "dict", "list", "tuple", "slice", "complex", "bytearray"}
_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}
_NUMPY = {"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer"}  # what arrays pickle to


class _FlameUnpickler(pickle.Unpickler):
    """Resolves only what FLAME pickles need: numpy arrays/scalars/dtypes, scipy.sparse
    matrices, chumpy (mapped to :class:`_ChumpyStandIn`, so chumpy need not be installed)
    and plain containers. Anything else (e.g. ``os.system``) is refused."""

    def __init__(self, fh, path: str):
        super().__init__(fh, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn
        if module.startswith("scipy.sparse") and name in _SPARSE:
            return getattr(scipy.sparse, name)
        if module in ("copy_reg", "copyreg") and name in ("_reconstructor", "__newobj__"):
            return super().find_class(module, name)
        if module in ("__builtin__", "builtins") and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles from python 3
            return super().find_class(module, name)
        if (module == "numpy" or module.startswith("numpy.")) and name in _NUMPY:
            if module.startswith("numpy.core") and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
                module = "numpy._core" + module[len("numpy.core") :]
            return super().find_class(module, name)
        raise FlameModelError(
            f"{self.path}: refusing to unpickle '{module}.{name}', which a FLAME model file "
            f"does not contain"
        )


def _to_numpy(value, key: str, path: str) -> np.ndarray:
    if isinstance(value, _ChumpyStandIn):
        if "x" not in value.state:
            raise FlameModelError(
                f"{path}: '{key}' is a chumpy expression, not a stored array; "
                f"re-export the model with plain arrays (npz)"
            )
        value = value.state["x"]
    if scipy.sparse.issparse(value):
        try:
            value = value.toarray()
        except Exception:  # pickled by an old scipy: rebuild it from its stored parts
            st, cls = vars(value), type(value)
            shape = st.get("_shape", st.get("shape"))
            if {"data", "indices", "indptr"} <= st.keys():
                value = cls((st["data"], st["indices"], st["indptr"]), shape=shape).toarray()
            elif {"data", "row", "col"} <= st.keys():
                value = cls((st["data"], (st["row"], st["col"])), shape=shape).toarray()
            else:
                raise FlameModelError(f"{path}: '{key}' is a sparse matrix that cannot be read") from None
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - defensive
        raise FlameModelError(f"{path}: '{key}' is not an array ({type(value).__name__})") from exc
    if arr.dtype == object:
        raise FlameModelError(f"{path}: '{key}' is not a numeric array ({type(value).__name__})")
    return arr


def validate_flame_arrays(arrays: Dict[str, np.ndarray], source: str) -> Dict[str, np.ndarray]:
    """Check every array of docs/assets.md §1 and normalise dtypes.

    Args:
        arrays: name -> array (dense ``J_regressor``).
        source: file name (or description) used in error messages.

    Returns:
        ``{name: array}`` for the seven FLAME arrays: float64 geometry/blendshapes/weights,
        int64 ``kintree_table`` (root parent -1, as FLAME stores 2**32 - 1) and ``f``.

    Raises:
        FlameModelError: a missing array, a wrong shape, non-finite values, face indices
            out of range, or a kinematic tree other than parents (-1, 0, 1, 1, 1).
    """
    out = {}
    for key, shape in FLAME_ARRAYS.items():
        if key not in arrays:
            raise FlameModelError(f"{source}: missing array '{key}' (expected shape {shape})")
        arr = np.asarray(arrays[key])
        if arr.shape != shape:
            raise FlameModelError(f"{source}: array '{key}' has shape {arr.shape}, expected {shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise FlameModelError(f"{source}: array '{key}' is not numeric (dtype {arr.dtype})")
        if key in ("kintree_table", "f"):
            arr = arr.astype(np.int64)
            if key == "kintree_table":
                arr = np.where(arr >= 2**31 - 1, -1, arr)
        else:
            arr = arr.astype(np.float64)
            if not np.isfinite(arr).all():
                raise FlameModelError(f"{source}: array '{key}' holds NaN or Inf")
        out[key] = arr
    parents = tuple(int(p) for p in out["kintree_table"][0])
    if parents != PARENTS:
        raise FlameModelError(f"{source}: kintree_table parents are {parents}, expected {PARENTS}")
    f = out["f"]
    if f.min() < 0 or f.max() >= NUM_VERTICES:
        raise FlameModelError(f"{source}: array 'f' indexes vertices outside 0..{NUM_VERTICES - 1}")
    return out


def load_flame_arrays(path: str) -> Dict[str, np.ndarray]:
    """Read an official FLAME model (pkl or npz) into plain numpy arrays, validated.

    The FLAME 2020/2023 pkl is a python-2 pickle (read with ``encoding="latin1"``) whose
    ``shapedirs`` is a chumpy object and ``J_regressor`` a scipy.sparse matrix; chumpy is
    not needed (its objects are unpickled into a stand-in holding their array), and
    nothing but numpy, scipy.sparse, chumpy and plain containers may be unpickled. An npz
    holds the same keys as plain arrays (``allow_pickle=False``).

    Args:
        path: the model file, ``.pkl`` or ``.npz``.

    Returns:
        see :func:`validate_flame_arrays`; ``J_regressor`` is dense.

    Raises:
        FlameModelError: missing/unreadable file (with a hint on where to get FLAME) or an
            array missing or of the wrong layout.
    """
    if not os.path.isfile(path):
        raise FlameModelError(f"{path}: FLAME model file not found; {FLAME_HINT}")
    try:
        if path.lower().endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                raw = {k: data[k] for k in data.files}
        else:
            with open(path, "rb") as fh:
                raw = _FlameUnpickler(fh, path).load()
    except FlameModelError:
        raise
    except Exception as exc:
        raise FlameModelError(
            f"{path}: not a readable FLAME model ({type(exc).__name__}: {exc}); {FLAME_HINT}"
        ) from exc
    if not isinstance(raw, dict):
        raise FlameModelError(f"{path}: expected a dict of arrays, got {type(raw).__name__}")
    arrays = {k: _to_numpy(raw[k], k, path) for k in FLAME_ARRAYS if k in raw}
    return validate_flame_arrays(arrays, path)


# --------------------------------------------------------------------------------------
# Skinning
# --------------------------------------------------------------------------------------


def batch_rodrigues(rot_vecs: Tensor) -> Tensor:  # [N, 3]
    """Axis-angle (radians) to rotation matrices, exact and differentiable at zero.

    ``R = I + (sin θ / θ) K + ((1 - cos θ) / θ²) K²`` with ``K`` the cross-product matrix
    of the rotation vector (Rodrigues' formula); Taylor series below θ = 1e-4.

    Returns:
        ``[N, 3, 3]``.
    """
    theta2 = (rot_vecs * rot_vecs).sum(-1, keepdim=True)  # [N, 1]
    small = theta2 < 1e-8
    t2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = t2.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / t2)
    x, y, z = rot_vecs.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)
    return eye + a[..., None] * K + b[..., None] * (K @ K)


def lbs(
    betas: Tensor,  # [B, K] identity and expression coefficients
    pose: Tensor,  # [B, J, 3] axis-angle per joint, radians
    v_template: Tensor,  # [V, 3]
    shapedirs: Tensor,  # [V, 3, K]
    posedirs: Tensor,  # [P, V*3], P = (J - 1) * 9
    J_regressor: Tensor,  # [J, V]
    parents: Tensor,  # [J] long, parents[0] = -1
    lbs_weights: Tensor,  # [V, J]
):
    """FLAME's skinning (Li et al. 2017, Eq. 1-4): blendshapes, joints, pose correctives, LBS.

    1. ``v_shaped = T̄ + Σ β_k S_k`` (identity and expression blendshapes, Eq. 2-3).
    2. ``J = 𝒥 v_shaped`` (joint regression).
    3. ``v_posed = v_shaped + Σ (R_j - I)_{rc} P_{jrc}`` over joints j >= 1 (Eq. 4).
    4. World transforms along the kinematic chain, ``G_j = G_parent(j) [R_j | J_j - J_parent]``,
       made relative to the rest pose, ``G'_j = G_j [I | -J_j]``.
    5. ``v = Σ_j w_j G'_j v_posed`` (linear blend skinning, Eq. 1).

    Returns:
        ``(vertices [B, V, 3], joints [B, J, 3])`` (posed joints), dtype/device of the inputs.
    """
    B, J = pose.shape[0], pose.shape[1]
    V = v_template.shape[0]
    blend = betas @ shapedirs.reshape(V * 3, -1).T  # [B, V*3] (plain matmuls: fast on CPU)
    v_shaped = v_template + blend.view(B, V, 3)  # [B, V, 3]
    joints = J_regressor @ v_shaped  # [B, J, 3]
    rot = batch_rodrigues(pose.reshape(-1, 3)).view(B, J, 3, 3)
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
    pose_feature = (rot[:, 1:] - eye).reshape(B, -1)  # [B, (J-1)*9]
    v_posed = v_shaped + (pose_feature @ posedirs).view(B, -1, 3)

    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.cat([rot, rel[..., None]], dim=-1)  # [B, J, 3, 4]
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=pose.dtype, device=pose.device).expand(B, J, 1, 4)
    local = torch.cat([local, bottom], dim=-2)  # [B, J, 4, 4]
    chain = [local[:, 0]]
    parent_list = parents.tolist()  # one host transfer, not one per joint
    for j in range(1, J):
        chain.append(chain[parent_list[j]] @ local[:, j])
    world = torch.stack(chain, dim=1)  # [B, J, 4, 4]
    posed_joints = world[:, :, :3, 3]
    # Relative to the rest pose: translation t - R J.
    offset = world[:, :, :3, 3] - (world[:, :, :3, :3] @ joints[..., None])[..., 0]
    A = torch.cat([world[:, :, :3, :3], offset[..., None]], dim=-1)  # [B, J, 3, 4]
    T = (lbs_weights @ A.reshape(B, J, 12)).view(B, V, 3, 4)  # blended transforms
    verts = (T[..., :3] * v_posed[:, :, None, :]).sum(-1) + T[..., 3]
    return verts, posed_joints


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------


#: Expression space of the official FLAME model (FLAME's expression PCA basis): real
#: DualTalk npz files, motion tracked with an official FLAME file.
FLAME_SPACE = "flame"
#: Expression space of the stand-in head (rsatalker_core/head/standin.py: hand-made
#: directions, 0 lips part, 1 smile, 3 brow raise, 12 eyelids close, ...): the synthetic
#: corpus, the shipped default motion model, motion tracked without a FLAME file.
STANDIN_SPACE = "rsatalker-standin"


class FlameModel(nn.Module):
    """FLAME: identity, expression and joint rotations → mesh vertices (metres).

    Args:
        cfg: ``model_path`` (official pkl/npz; empty: the stand-in head, logged as such),
            ``n_shape`` (identity coefficients kept, 0..300), ``n_expr`` (expression
            coefficients kept, 0..100).
        arrays: optional FLAME arrays (the layout of :func:`load_flame_arrays`) used
            instead of ``cfg.model_path``, e.g. for tests.

    Buffers (float32 unless converted with ``.to()``):
        ``v_template [V, 3]``, ``shapedirs [V, 3, n_shape + n_expr]`` (identity then
        expression), ``posedirs [36, V*3]`` (the matmul layout of FLAME's (V, 3, 36)),
        ``J_regressor [5, V]`` (dense), ``lbs_weights [V, 5]``, ``parents [5]`` long,
        ``faces [9976, 3]`` long. ``V = 5023``.

    Attributes:
        is_standin: True when the procedural stand-in is in use (not FLAME).
        source: the model file, or ``"standin"``.
        expression_space: :data:`STANDIN_SPACE` or :data:`FLAME_SPACE`: whose expression
            basis the coefficients this layer consumes are in.

    Raises:
        FlameModelError: ``cfg.model_path`` is missing or not a FLAME model.
        ConfigError: ``n_shape`` / ``n_expr`` out of range.
    """

    def __init__(self, cfg: Optional[FlameConfig] = None, arrays: Optional[Dict[str, np.ndarray]] = None):
        super().__init__()
        cfg = cfg if cfg is not None else FlameConfig()
        if not 0 <= int(cfg.n_shape) <= NUM_SHAPE_MAX:
            raise ConfigError(f"flame.n_shape must be in 0..{NUM_SHAPE_MAX}, got {cfg.n_shape!r}")
        if not 0 <= int(cfg.n_expr) <= NUM_EXPR_MAX:
            raise ConfigError(f"flame.n_expr must be in 0..{NUM_EXPR_MAX}, got {cfg.n_expr!r}")
        self.n_shape, self.n_expr = int(cfg.n_shape), int(cfg.n_expr)
        if arrays is not None:
            arrays, self.source, self.is_standin = validate_flame_arrays(arrays, "arrays"), "arrays", False
        elif cfg.model_path:
            arrays, self.source, self.is_standin = load_flame_arrays(cfg.model_path), cfg.model_path, False
        else:
            LOG.warning(STANDIN_WARNING)
            arrays, self.source, self.is_standin = build_standin_flame(), "standin", True
        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)
        sd = arrays["shapedirs"]
        dirs = np.concatenate([sd[:, :, : self.n_shape], sd[:, :, NUM_SHAPE_MAX : NUM_SHAPE_MAX + self.n_expr]], 2)
        self.register_buffer("v_template", f32(arrays["v_template"]))
        self.register_buffer("shapedirs", f32(dirs))
        self.register_buffer("posedirs", f32(arrays["posedirs"].reshape(-1, 36).T))
        self.register_buffer("J_regressor", f32(arrays["J_regressor"]))
        self.register_buffer("lbs_weights", f32(arrays["weights"]))
        self.register_buffer("parents", torch.as_tensor(arrays["kintree_table"][0], dtype=torch.long))
        self.register_buffer("faces", torch.as_tensor(arrays["f"], dtype=torch.long))

    @property
    def expression_space(self) -> str:
        return STANDIN_SPACE if self.is_standin else FLAME_SPACE

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    def _coeffs(self, x: Optional[Tensor], n_max: int, B: int, name: str) -> Tensor:
        """[B, n_max] coefficients: given ones, zero-padded; None -> zeros."""
        ref = self.v_template
        if x is None:
            return ref.new_zeros(B, n_max)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[1] > n_max or x.shape[0] not in (1, B):
            raise ValueError(
                f"{name} must be [{B}, <= {n_max}] (flame.n_{'shape' if name == 'shape' else 'expr'} "
                f"= {n_max}), got {tuple(x.shape)}"
            )
        x = x.to(ref).expand(B, -1)
        return nn.functional.pad(x, (0, n_max - x.shape[1]))

    def forward(
        self,
        expression: Tensor,  # [B, <= n_expr]
        jaw_pose: Tensor,  # [B, 3] axis-angle, radians
        global_pose: Optional[Tensor] = None,  # [B, 3] head rotation, radians
        neck_pose: Optional[Tensor] = None,  # [B, 3]
        eye_pose: Optional[Tensor] = None,  # [B, 6] left eye 3 | right eye 3
        shape: Optional[Tensor] = None,  # [B or 1, <= n_shape]
    ) -> Tensor:
        """Posed vertices ``[B, 5023, 3]`` in metres (FLAME Eq. 1-4, :func:`lbs`).

        Missing coefficients are zero (fewer than ``n_expr``/``n_shape`` given: the rest
        are zero; None: all zero). Poses are axis-angle in radians.

        Raises:
            ValueError: a tensor of the wrong shape (more coefficients than configured).
        """
        if expression.dim() != 2:
            raise ValueError(f"expression must be [B, <= {self.n_expr}], got {tuple(expression.shape)}")
        B = expression.shape[0]
        ref = self.v_template
        poses = []
        for name, p, width in (("global_pose", global_pose, 3), ("neck_pose", neck_pose, 3),
                               ("jaw_pose", jaw_pose, 3), ("eye_pose", eye_pose, 6)):
            if p is None:
                p = ref.new_zeros(B, width)
            if p.shape != (B, width):
                raise ValueError(f"{name} must be [{B}, {width}], got {tuple(p.shape)}")
            poses.append(p.to(ref))
        pose = torch.cat(poses, dim=1).view(B, NUM_JOINTS, 3)
        betas = torch.cat(
            [self._coeffs(shape, self.n_shape, B, "shape"), self._coeffs(expression, self.n_expr, B, "expression")], 1
        )
        verts, _ = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs,
                       self.J_regressor, self.parents, self.lbs_weights)
        return verts

    def forward_motion(self, motion: Tensor, shape: Optional[Tensor] = None, eye_pose: Optional[Tensor] = None) -> Tensor:
        """Vertices for motion vectors ``[..., 56]`` = ``[exp 50 | jaw 3 | head 3]`` (radians).

        The head rotation is FLAME's global rotation (DualTalk ``pose[:, :3]``), the jaw
        rotation FLAME's jaw joint (DualTalk ``pose[:, 3:]``); the neck stays at rest, and
        the eyes too unless ``eye_pose`` is given.

        Args:
            motion: ``[..., 56]`` (config.EXP_SLICE / JAW_SLICE / HEAD_SLICE).
            shape: ``[<= n_shape]`` or ``[..., <= n_shape]`` identity, broadcast over frames.
            eye_pose: ``[6]`` or ``[..., 6]`` gaze, left eye | right eye axis-angle (radians,
                FLAME order; ``FlameParams.eye_pose``), broadcast over frames; None: at rest.

        Returns:
            ``[..., 5023, 3]`` vertices, metres.

        Raises:
            ValueError: the last dimension is not 56.
            ConfigError: ``flame.n_expr`` < 50, so the motion's expression does not fit.
        """
        if motion.shape[-1] != MOTION_DIM:
            raise ValueError(f"motion must be [..., {MOTION_DIM}], got {tuple(motion.shape)}")
        n_exp = EXP_SLICE.stop - EXP_SLICE.start
        if self.n_expr < n_exp:
            raise ConfigError(f"flame.n_expr must be >= {n_exp} to drive FLAME from motion, got {self.n_expr}")
        lead = motion.shape[:-1]
        m = motion.reshape(-1, MOTION_DIM).to(self.v_template)
        if shape is not None:
            shape = shape.to(self.v_template).expand(*lead, shape.shape[-1]).reshape(-1, shape.shape[-1])
        if eye_pose is not None:
            eye_pose = eye_pose.to(self.v_template).expand(*lead, 6).reshape(-1, 6)
        verts = self.forward(m[:, EXP_SLICE], m[:, JAW_SLICE], global_pose=m[:, HEAD_SLICE], shape=shape,
                             eye_pose=eye_pose)
        return verts.view(*lead, self.num_vertices, 3)
