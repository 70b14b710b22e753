"""FLAME layer: loader (pkl without chumpy, npz), skinning against smplx, the stand-in head."""

import importlib.util
import logging
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from rsatalker_core.config import FlameConfig
from rsatalker_core.errors import ConfigError, FlameModelError
from rsatalker_core.head.flame import FlameModel, batch_rodrigues, lbs, load_flame_arrays
from rsatalker_core.head.standin import EYELID_EXPR_INDEX, build_standin_flame, standin_landmarks

LAYOUT = {
    "v_template": (5023, 3),
    "shapedirs": (5023, 3, 400),
    "posedirs": (5023, 3, 36),
    "J_regressor": (5, 5023),
    "weights": (5023, 5),
    "kintree_table": (2, 5),
    "f": (9976, 3),
}


@pytest.fixture(scope="module")
def standin():
    return build_standin_flame()


@pytest.fixture(scope="module")
def flame64(standin):
    return FlameModel(FlameConfig(n_shape=300, n_expr=100), arrays=standin).double()


def _pose(B, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(B, 15, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------- skinning


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-7), (torch.float32, 1e-5)])
def test_skinning_matches_smplx_reference(standin, dtype, tol):  # smplx adds 1e-8 to rotation vectors
    smplx_lbs = pytest.importorskip("smplx.lbs")
    m = FlameModel(FlameConfig(n_shape=300, n_expr=100), arrays=standin).to(dtype)
    g = torch.Generator().manual_seed(1)
    B = 3
    shape = torch.randn(B, 300, generator=g).to(dtype)
    exp = torch.randn(B, 100, generator=g).to(dtype)
    pose = _pose(B, 0.4, 2).to(dtype)
    ours = m(exp, pose[:, 6:9], global_pose=pose[:, :3], neck_pose=pose[:, 3:6], eye_pose=pose[:, 9:], shape=shape)
    # Independent reference on the same arrays, in smplx's own layouts.
    posedirs = torch.as_tensor(standin["posedirs"].reshape(-1, 36).T, dtype=dtype)
    ref, _ = smplx_lbs.lbs(
        torch.cat([shape, exp], 1), pose,
        torch.as_tensor(standin["v_template"], dtype=dtype),
        torch.as_tensor(standin["shapedirs"], dtype=dtype), posedirs,
        torch.as_tensor(standin["J_regressor"], dtype=dtype),
        torch.as_tensor(standin["kintree_table"][0]), torch.as_tensor(standin["weights"], dtype=dtype),
    )
    assert ours.dtype == dtype and ours.shape == (B, 5023, 3)
    assert (ours - ref).abs().max().item() < tol
    assert (ours - m.v_template).abs().max().item() > 1e-3  # the parameters did something


def test_skinning_matches_smplx_on_random_arrays():
    """Dense random weights/regressor/correctives exercise every term of the chain."""
    smplx_lbs = pytest.importorskip("smplx.lbs")
    g = torch.Generator().manual_seed(3)
    V, K = 50, 7
    args = dict(
        v_template=torch.randn(V, 3, generator=g, dtype=torch.float64),
        shapedirs=0.1 * torch.randn(V, 3, K, generator=g, dtype=torch.float64),
        posedirs=0.1 * torch.randn(36, V * 3, generator=g, dtype=torch.float64),
        J_regressor=torch.softmax(torch.randn(5, V, generator=g, dtype=torch.float64), 1),
        parents=torch.tensor([-1, 0, 1, 1, 1]),
        lbs_weights=torch.softmax(torch.randn(V, 5, generator=g, dtype=torch.float64), 1),
    )
    betas = torch.randn(4, K, generator=g, dtype=torch.float64)
    pose = _pose(4, 0.8, 4)
    ours, joints = lbs(betas, pose.view(4, 5, 3), **args)
    ref, ref_joints = smplx_lbs.lbs(betas, pose, **args)
    # smplx perturbs rotation vectors by 1e-8 inside its Rodrigues.
    assert torch.allclose(ours, ref, atol=1e-7) and torch.allclose(joints, ref_joints, atol=1e-7)


def test_rodrigues_matches_scipy_and_is_smooth_at_zero():
    g = torch.Generator().manual_seed(5)
    aa = torch.cat([torch.randn(20, 3, generator=g, dtype=torch.float64),
                    1e-6 * torch.randn(5, 3, generator=g, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)])
    ref = torch.as_tensor(Rotation.from_rotvec(aa.numpy()).as_matrix())
    assert torch.allclose(batch_rodrigues(aa), ref, atol=1e-12)
    z = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    batch_rodrigues(z)[:, 2, 1].sum().backward()  # dR/dθ at 0 is the generator: finite
    assert torch.isfinite(z.grad).all() and z.grad[:, 0].eq(1.0).all()


def test_forward_is_differentiable(flame64):
    exp = torch.zeros(2, 100, dtype=torch.float64, requires_grad=True)
    jaw = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    flame64(exp, jaw).square().sum().backward()
    assert torch.isfinite(exp.grad).all() and exp.grad.abs().sum() > 0
    assert torch.isfinite(jaw.grad).all() and jaw.grad[:, 0].abs().sum() > 0


# ------------------------------------------------------------------------------ loading


def _fake_chumpy():
    """A throw-away module that pickles like chumpy.ch.Ch (state dict holding 'x')."""
    ch_pkg, ch_mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    ch_pkg.ch = ch_mod
    return ch_pkg, ch_mod


def _old_scipy_csc(dense):
    """A csc_matrix whose state looks like an old scipy's (plain 'shape', no '_shape')."""
    m = scipy.sparse.csc_matrix(dense)
    old = object.__new__(scipy.sparse.csc_matrix)
    old.__dict__.update(data=m.data, indices=m.indices, indptr=m.indptr, shape=m.shape)
    return old


def _official_like_payload(arrays, Ch, old_scipy=False):
    jreg = arrays["J_regressor"]
    return {
        "v_template": arrays["v_template"],
        "shapedirs": Ch(arrays["shapedirs"].astype(np.float32)),
        "posedirs": arrays["posedirs"],
        "J_regressor": _old_scipy_csc(jreg) if old_scipy else scipy.sparse.csc_matrix(jreg),
        "weights": arrays["weights"],
        "kintree_table": np.where(arrays["kintree_table"] < 0, 2**32 - 1, arrays["kintree_table"]).astype(np.uint32),
        "f": arrays["f"].astype(np.uint32),
        "J": arrays["J_regressor"] @ arrays["v_template"],
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


@pytest.mark.parametrize("old_scipy", [False, True])
def test_pkl_loader_needs_no_chumpy(tmp_path, standin, caplog, old_scipy):
    ch_pkg, ch_mod = _fake_chumpy()
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = ch_pkg, ch_mod
    try:
        payload = _official_like_payload(standin, ch_mod.Ch, old_scipy)
        path = tmp_path / "generic_model.pkl"
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    assert importlib.util.find_spec("chumpy") is None, "a real chumpy would weaken this test"
    assert b"chumpy.ch" in path.read_bytes()  # the file really references chumpy

    arrays = load_flame_arrays(str(path))
    assert {k: a.shape for k, a in arrays.items()} == LAYOUT
    np.testing.assert_allclose(arrays["shapedirs"], standin["shapedirs"], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(arrays["J_regressor"], standin["J_regressor"])
    assert arrays["kintree_table"][0].tolist() == [-1, 0, 1, 1, 1]
    assert arrays["f"].dtype == np.int64 and (arrays["f"] == standin["f"]).all()

    with caplog.at_level(logging.WARNING, logger="rsatalker.flame"):
        m = FlameModel(FlameConfig(model_path=str(path)))
    assert not m.is_standin and m.source == str(path)
    assert not [r for r in caplog.records if "stand-in" in r.getMessage()]
    assert m.faces.dtype == torch.long and m.faces.shape == (9976, 3)


def test_pkl_loader_refuses_foreign_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    class EvilNumpy:
        def __reduce__(self):
            return (np.load, ("/dev/null",))

    for i, evil in enumerate((Evil(), EvilNumpy())):
        path = tmp_path / f"evil{i}.pkl"
        path.write_bytes(pickle.dumps({"v_template": evil}, protocol=2))
        with pytest.raises(FlameModelError, match="refusing to unpickle"):
            load_flame_arrays(str(path))


def test_npz_round_trip(tmp_path, standin, flame64):
    path = tmp_path / "flame.npz"
    np.savez(path, **standin)
    arrays = load_flame_arrays(str(path))
    for k in LAYOUT:
        np.testing.assert_array_equal(arrays[k], standin[k])
    m = FlameModel(FlameConfig(model_path=str(path), n_shape=300, n_expr=100)).double()
    exp = torch.randn(2, 100, dtype=torch.float64)
    jaw = 0.2 * torch.ones(2, 3, dtype=torch.float64)
    assert torch.equal(m(exp, jaw), flame64(exp, jaw))


def test_missing_file_error_says_where_to_get_flame(tmp_path):
    missing = tmp_path / "nope" / "generic_model.pkl"
    with pytest.raises(FlameModelError) as err:
        FlameModel(FlameConfig(model_path=str(missing)))
    msg = str(err.value)
    assert str(missing) in msg and "flame.is.tue.mpg.de" in msg and "stand-in" in msg


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda a: a.pop("posedirs"), "missing array 'posedirs'"),
        (lambda a: a.update(v_template=a["v_template"][:-1]), "'v_template' has shape (5022, 3)"),
        (lambda a: a.update(shapedirs=a["shapedirs"][:, :, :300]), "'shapedirs' has shape (5023, 3, 300)"),
        (lambda a: a.update(f=a["f"][:, :2]), "'f' has shape (9976, 2)"),
        (lambda a: a.update(kintree_table=np.array([[-1, 0, 0, 1, 1], [0, 1, 2, 3, 4]])), "parents"),
        (lambda a: a.update(f=a["f"] + 5000), "outside 0..5022"),
    ],
)
def test_bad_layout_raises_flame_model_error(tmp_path, standin, edit, needle):
    arrays = dict(standin)
    edit(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(FlameModelError) as err:
        load_flame_arrays(str(path))
    assert needle in str(err.value) and str(path) in str(err.value)


def test_unreadable_file_raises_flame_model_error(tmp_path):
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(FlameModelError, match="not a readable FLAME model"):
        load_flame_arrays(str(path))


def test_config_ranges():
    with pytest.raises(ConfigError, match="n_shape"):
        FlameModel(FlameConfig(n_shape=301))
    with pytest.raises(ConfigError, match="n_expr"):
        FlameModel(FlameConfig(n_expr=101))


# ------------------------------------------------------------------------------ stand-in


def test_standin_layout_and_mesh_quality(standin):
    assert {k: a.shape for k, a in standin.items()} == LAYOUT
    assert standin["kintree_table"][0].tolist() == [-1, 0, 1, 1, 1]
    v, f = standin["v_template"], standin["f"]
    assert f.min() == 0 and f.max() == 5022 and len(np.unique(f)) == 5023  # every vertex used
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert 0.5 * np.linalg.norm(n, axis=1).min() > 1e-7  # m²: no degenerate face
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(edges, axis=0)) == len(edges)  # consistently oriented manifold
    # Outward: positive enclosed volume, eyeball normals point away from the eye centres.
    assert np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6 > 1e-3
    J = standin["J_regressor"] @ v
    for eye in (3, 4):
        ids = np.flatnonzero(standin["J_regressor"][eye])
        ef = f[np.isin(f, ids).all(1)]
        c = v[ef].mean(1) - J[eye]
        nn = np.cross(v[ef[:, 1]] - v[ef[:, 0]], v[ef[:, 2]] - v[ef[:, 0]])
        assert (np.einsum("ij,ij->i", nn, c) > 0).all()
    np.testing.assert_allclose(standin["weights"].sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(standin["J_regressor"].sum(1), 1.0, atol=1e-12)
    assert np.abs(standin["shapedirs"]).max() < 0.02 and np.abs(standin["posedirs"]).max() < 0.005


def test_standin_scale_orientation_and_face_density(standin):
    v, f = standin["v_template"], standin["f"]
    lm = standin_landmarks()
    width = v[:, 0].max() - v[:, 0].min()
    height = v[lm["top_of_head"], 1] - v[lm["chin"], 1]
    assert 0.13 < width < 0.18 and 0.19 < height < 0.25  # metres, human scale
    assert v[lm["top_of_head"], 1] == v[:, 1].max()  # y up
    assert v[lm["nose_tip"], 2] > 0.09 and v[lm["nose_tip"], 2] >= v[:, 2].max() - 1e-9  # faces +z
    assert v[lm["pupil_left"], 0] > 0 > v[lm["pupil_right"], 0]  # left eye on +x
    assert abs(v[:, 0].mean()) < 1e-9  # mirror symmetric
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]]])
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    zmid = v[e].mean(1)[:, 2]
    assert np.median(length[zmid < -0.03]) > 1.6 * np.median(length[zmid > 0.05])  # denser face


def test_standin_is_deterministic_and_seeded():
    a, b, c = build_standin_flame(0), build_standin_flame(0), build_standin_flame(1)
    for k in LAYOUT:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["v_template"], c["v_template"])
    assert not np.allclose(a["shapedirs"][:, :, 100], c["shapedirs"][:, :, 100])
    a["v_template"][0] = 1.0  # copies: the cache is not corrupted
    assert build_standin_flame(0)["v_template"][0, 0] != 1.0


@pytest.fixture(scope="module")
def flame_standin():
    return FlameModel(FlameConfig(n_expr=100))


def test_jaw_rotation_opens_the_mouth(flame_standin):
    lm = standin_landmarks()
    rest = flame_standin(torch.zeros(1, 100), torch.zeros(1, 3))[0]
    opened = flame_standin(torch.zeros(1, 100), torch.tensor([[0.3, 0.0, 0.0]]))[0]
    moved = (opened - rest).norm(dim=1)
    assert moved[lm["chin"]] > 0.015 and moved[lm["lower_lip"]] > 0.01  # metres
    assert moved[lm["forehead"]] < 1e-4 and moved[lm["upper_lip"]] < 0.001
    assert moved[lm["chin"]] > 100 * moved[lm["forehead"]]
    gap = lambda v: (v[lm["upper_lip"]] - v[lm["lower_lip"]]).norm()
    assert gap(rest) < 1e-9 and gap(opened) > 0.01  # closed at rest, open by > 1 cm
    assert opened[lm["lower_lip"], 1] < rest[lm["lower_lip"], 1]  # opens downward
    # Smooth falloff: the cheek beside the mouth corner moves partly.
    corner = lm["mouth_corner_left"]
    assert 0.1 * moved[lm["lower_lip"]] < moved[corner] < 0.9 * moved[lm["lower_lip"]]


def test_head_rotation_is_rigid(flame_standin):
    exp = 0.5 * torch.randn(1, 100, generator=torch.Generator().manual_seed(7))
    jaw = torch.tensor([[0.2, 0.0, 0.0]])
    rest = flame_standin(exp, jaw)[0].double()
    turned = flame_standin(exp, jaw, global_pose=torch.tensor([[0.2, 0.6, -0.1]]))[0].double()
    idx = torch.randperm(5023, generator=torch.Generator().manual_seed(8))[:400]
    assert (turned - rest).norm(dim=1).max() > 0.05
    assert torch.allclose(torch.cdist(rest[idx], rest[idx]), torch.cdist(turned[idx], turned[idx]), atol=2e-6)


def test_first_expressions_are_plausible(flame_standin):
    lm = standin_landmarks()
    jaw = torch.zeros(1, 3)
    rest = flame_standin(torch.zeros(1, 100), jaw)[0]

    def with_exp(k, val=1.0):
        e = torch.zeros(1, 100)
        e[0, k] = val
        return flame_standin(e, jaw)[0]

    lips = with_exp(0)
    assert 0.002 < (lips[lm["upper_lip"]] - lips[lm["lower_lip"]]).norm() < 0.01  # lips part by mm
    smile = with_exp(1)
    assert smile[lm["mouth_corner_left"], 1] - rest[lm["mouth_corner_left"], 1] > 0.001  # corners up
    assert smile[lm["mouth_corner_right"], 1] - rest[lm["mouth_corner_right"], 1] > 0.001
    every = flame_standin(torch.eye(100), jaw.expand(100, 3))  # one unit of each direction
    d = (every - rest).norm(dim=2)  # [100, V]
    big = d.max(1).values
    assert (big > 1e-4).all() and (big[torch.arange(100) != EYELID_EXPR_INDEX] < 0.01).all()  # metres
    assert big[EYELID_EXPR_INDEX] < 0.02  # the lid travels across the eyeball
    assert (d[:, lm["pupil_left"]] == 0).all() and (d[:, lm["pupil_right"]] == 0).all()


def test_eyelid_direction_covers_the_eyes_and_nothing_else(flame_standin, standin):
    """Expression 12 closes the lids: at 1 the socket skin lies in front of both pupils
    (blinks are visible), at rest it does not; only vertices around the eyes move."""
    lm = standin_landmarks()
    v = standin["v_template"]
    e = torch.zeros(2, 100)
    e[1, EYELID_EXPR_INDEX] = 1.0
    rest, shut = flame_standin(e, torch.zeros(2, 3)).double()
    moved = (shut - rest).norm(dim=1).numpy()
    assert np.allclose((shut - rest)[:, :2].numpy(), 0.0)  # forward only
    for pupil in ("pupil_left", "pupil_right"):
        p = v[lm[pupil]]
        near = (np.hypot(*(v[:, :2] - p[:2]).T) < 0.004) & (v[:, 2] > 0.04)  # on the pupil's line of sight
        near[np.flatnonzero(standin["J_regressor"][3] + standin["J_regressor"][4])] = False  # not the eyeballs
        assert near.any()
        assert (shut.numpy()[near, 2] > p[2]).all() and (rest.numpy()[near, 2] < p[2]).all()
    far = np.hypot(np.abs(v[:, 0]) - 0.031, v[:, 1] - 0.031) > 0.02
    assert moved[far].max() == 0.0 and moved.max() > 0.01


def test_standin_use_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="rsatalker.flame"):
        m = FlameModel(FlameConfig())
    assert m.is_standin and m.source == "standin"
    msgs = [r.getMessage() for r in caplog.records if r.name == "rsatalker.flame"]
    assert any("stand-in" in s and "NOT the FLAME model" in s for s in msgs)


# ---------------------------------------------------------------------------- motion API


def test_forward_motion_matches_forward(flame_standin):
    g = torch.Generator().manual_seed(9)
    motion = 0.2 * torch.randn(2, 3, 56, generator=g)
    out = flame_standin.forward_motion(motion)
    assert out.shape == (2, 3, 5023, 3)
    m = motion.reshape(6, 56)
    ref = flame_standin(m[:, :50], m[:, 50:53], global_pose=m[:, 53:56])
    assert torch.allclose(out.reshape(6, 5023, 3), ref)
    assert flame_standin.forward_motion(motion[0, 0]).shape == (5023, 3)
    shape = torch.randn(100, generator=g)
    with_shape = flame_standin.forward_motion(motion, shape=shape)
    assert torch.allclose(with_shape[1, 2], flame_standin(m[5:, :50], m[5:, 50:53], m[5:, 53:], shape=shape[None])[0])
    with pytest.raises(ValueError, match="56"):
        flame_standin.forward_motion(torch.zeros(4, 55))
    with pytest.raises(ValueError, match="expression"):
        flame_standin(torch.zeros(1, 101), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match="n_expr"):
        FlameModel(FlameConfig(n_expr=10)).forward_motion(motion)


def test_real_dualtalk_motion_moves_the_mouth(dualtalk_sample, flame_standin):
    from rsatalker_core.io.motion_npz import load_motion_npz

    motion = torch.as_tensor(load_motion_npz(str(dualtalk_sample["speaker2_npz"]))[:100])
    verts = flame_standin.forward_motion(motion)
    lm = standin_landmarks()
    gap = (verts[:, lm["upper_lip"]] - verts[:, lm["lower_lip"]]).norm(dim=1)
    assert torch.isfinite(verts).all() and verts.abs().max() < 0.5
    assert gap.max() - gap.min() > 0.001  # speech opens and closes the mouth by millimetres
