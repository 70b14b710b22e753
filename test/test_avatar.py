"""Gaussians bound to mesh triangles: frames, equivariance, social offsets, binding, files."""

import math

import pytest
import torch

from rsatalker_core.avatar.gaussians import GaussianAvatar, quat_multiply, rotmat_to_quat, triangle_frames
from rsatalker_core.errors import CheckpointError
from rsatalker_core.render import RenderError
from gsplat.cuda._torch_impl import _quat_to_rotmat  # independent quaternion convention check


def random_mesh(n_verts=30, n_faces=40, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    verts = torch.randn(n_verts, 3, generator=g, dtype=dtype) * 0.1
    faces = torch.stack([torch.randperm(n_verts, generator=g)[:3] for _ in range(n_faces)])
    return verts, faces


def random_rotation(seed):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return Q * torch.sign(torch.det(Q))


def test_triangle_frames_are_rotations_with_documented_axes():
    verts, faces = random_mesh()
    R, k, T = triangle_frames(verts[None], faces)
    assert R.shape == (1, 40, 3, 3) and k.shape == (1, 40) and T.shape == (1, 40, 3)
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-12)
    assert torch.allclose(torch.det(R), torch.ones(1, 40, dtype=torch.float64), atol=1e-12)
    v0, v1, v2 = (verts[faces[:, i]] for i in range(3))
    e0, e1 = v1 - v0, v2 - v0
    # a0 along the first edge, a1 the normal, a2 in-plane; k, T per docs/method.md §4.
    assert torch.allclose(R[0, :, :, 0], e0 / e0.norm(dim=-1, keepdim=True))
    n = torch.linalg.cross(e0, e1)
    assert torch.allclose(R[0, :, :, 1], n / n.norm(dim=-1, keepdim=True))
    assert torch.allclose((R[0, :, :, 2] * n).sum(-1), torch.zeros(40, dtype=torch.float64), atol=1e-12)
    height = (R[0, :, :, 2] * e1).sum(-1).abs()
    assert torch.allclose(k[0], 0.5 * (e0.norm(dim=-1) + height))
    assert torch.allclose(T[0], (v0 + v1 + v2) / 3)


def test_rotmat_to_quat_round_trips_through_gsplat_convention():
    Rs = torch.stack([random_rotation(s) for s in range(50)])
    # include rotations near each of the four closed-form branches (angle ~ pi about axes)
    for axis in torch.eye(3, dtype=torch.float64):
        a = axis * (math.pi - 1e-3)
        K = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
        Rs = torch.cat([Rs, torch.matrix_exp(K)[None]])
    q = rotmat_to_quat(Rs)
    assert torch.allclose(q.norm(dim=-1), torch.ones(len(Rs), dtype=torch.float64))
    assert torch.allclose(_quat_to_rotmat(q), Rs, atol=1e-10)
    q2 = rotmat_to_quat(Rs.flip(0))
    assert torch.allclose(_quat_to_rotmat(quat_multiply(q, q2)), Rs @ Rs.flip(0), atol=1e-10)


def test_rigid_motion_and_uniform_scaling_are_equivariant():
    verts, faces = random_mesh(seed=1)
    avatar = GaussianAvatar.from_mesh(verts.float(), faces, per_triangle=3).double()
    with torch.no_grad():  # non-trivial local parameters
        g = torch.Generator().manual_seed(3)
        avatar.means_local.normal_(0, 0.3, generator=g)
        avatar.log_scales.normal_(-1, 0.3, generator=g)
        avatar.quats_local.normal_(0, 1, generator=g)
    Q, t, s = random_rotation(7), torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64), 1.7
    out = avatar(verts[None], faces)
    moved = avatar((s * verts @ Q.T + t)[None], faces)
    assert torch.allclose(moved["means"][0], s * out["means"][0] @ Q.T + t, atol=1e-12)
    assert torch.allclose(moved["scales"], s * out["scales"], atol=1e-12)
    assert torch.allclose(_quat_to_rotmat(moved["quats"][0]), Q @ _quat_to_rotmat(out["quats"][0]), atol=1e-10)
    # translation alone moves nothing but the means
    shifted = avatar((verts + t)[None], faces)
    assert torch.allclose(shifted["means"], out["means"] + t, atol=1e-12)
    assert torch.allclose(shifted["scales"], out["scales"])


def test_world_rotation_is_frame_times_local_rotation():
    verts, faces = random_mesh(seed=2)
    avatar = GaussianAvatar.from_mesh(verts.float(), faces).double()
    with torch.no_grad():
        avatar.quats_local.copy_(torch.randn(avatar.num_gaussians, 4, dtype=torch.float64))
    out = avatar(verts[None], faces)
    R, k, _ = triangle_frames(verts[None], faces)
    expect = R[0] @ _quat_to_rotmat(avatar.quats_local)
    assert torch.allclose(_quat_to_rotmat(out["quats"][0]), expect, atol=1e-10)
    assert torch.allclose(out["scales"][0], k[0, :, None] * avatar.log_scales.exp())


def test_offsets_shift_exactly_the_gaussians_of_their_triangle():
    verts, faces = random_mesh(seed=4)
    avatar = GaussianAvatar.from_mesh(verts.float(), faces, per_triangle=4).double()
    base = avatar(verts[None].expand(2, -1, -1), faces)
    offsets = torch.zeros(2, faces.shape[0], 3, dtype=torch.float64)
    c = torch.tensor([0.001, -0.002, 0.003], dtype=torch.float64)
    offsets[1, 5] = c
    out = avatar(verts[None].expand(2, -1, -1), faces, offsets)
    moved = avatar.binding == 5
    assert int(moved.sum()) == 4
    assert torch.equal(out["means"][0], base["means"][0])
    assert torch.allclose(out["means"][1, moved] - base["means"][1, moved], c.expand(4, 3), atol=1e-15)
    assert torch.equal(out["means"][1, ~moved], base["means"][1, ~moved])
    assert torch.equal(out["scales"], base["scales"]) and torch.equal(out["quats"], base["quats"])


def test_binding_with_several_gaussians_per_triangle():
    verts, faces = random_mesh(seed=5)
    K = 5
    avatar = GaussianAvatar.from_mesh(verts.float(), faces, per_triangle=K).double()
    F = faces.shape[0]
    assert avatar.num_gaussians == F * K
    assert torch.equal(avatar.binding, torch.arange(F).repeat_interleave(K))
    out = avatar(verts[None], faces)["means"][0].reshape(F, K, 3)
    tri = verts[faces]  # [F, 3, 3]
    # Means lie on their own triangle (inside it: barycentric coordinates in [0, 1]).
    A = torch.stack([tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]], -1)  # [F, 3, 2]
    uv = torch.linalg.lstsq(A, (out - tri[:, None, 0]).transpose(1, 2)).solution  # [F, 2, K]
    recon = tri[:, None, 0] + (A @ uv).transpose(1, 2)
    assert torch.allclose(recon, out, atol=1e-9)
    assert (uv >= -1e-6).all() and (uv.sum(1) <= 1 + 1e-6).all()
    assert (out.std(dim=1) > 0).all()  # the K points of a triangle are distinct
    one = GaussianAvatar.from_mesh(verts.float(), faces).double()
    assert torch.allclose(one(verts[None], faces)["means"][0], tri.mean(1), atol=1e-7)


def test_appended_gaussians_inherit_triangle_and_offset():
    verts, faces = random_mesh(seed=6)
    avatar = GaussianAvatar.from_mesh(verts.float(), faces).double()
    avatar.append_gaussians(torch.tensor([3, 3, 7]))
    assert avatar.num_gaussians == faces.shape[0] + 3
    assert avatar.binding[-3:].tolist() == [3, 3, 7]
    assert isinstance(avatar.means_local, torch.nn.Parameter) and avatar.means_local.shape[0] == avatar.num_gaussians
    offsets = torch.zeros(1, faces.shape[0], 3, dtype=torch.float64)
    offsets[0, 3] = 0.01
    d = avatar(verts[None], faces, offsets)["means"] - avatar(verts[None], faces)["means"]
    assert torch.allclose(d[0, [3, -3, -2], 0], torch.full((3,), 0.01, dtype=torch.float64))
    assert d[0, -1].abs().max() == 0


def test_gradients_reach_parameters_and_vertices():
    verts, faces = random_mesh(seed=8)
    avatar = GaussianAvatar.from_mesh(verts.float(), faces)
    v = verts.float()[None].clone().requires_grad_(True)
    out = avatar(v, faces)
    loss = sum(out[k].square().sum() for k in ("means", "scales", "quats", "opacities", "colors"))
    loss.backward()
    for name, p in avatar.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_save_load_round_trip_and_bad_files(tmp_path):
    verts, faces = random_mesh(seed=9, dtype=torch.float32)
    avatar = GaussianAvatar.from_mesh(verts, faces, per_triangle=2)
    with torch.no_grad():
        avatar.colors_logit.normal_()
    avatar.append_gaussians(torch.tensor([0, 1]))
    path = str(tmp_path / "avatar.pt")
    avatar.save(path, extra={"source": "test"})
    back = GaussianAvatar.load(path, map_location="cpu")
    assert back.num_gaussians == avatar.num_gaussians and back.num_triangles == faces.shape[0]
    assert back.meta["source"] == "test" and back.meta["num_gaussians"] == avatar.num_gaussians
    a, b = avatar(verts[None], faces), back(verts[None], faces)
    for key in a:
        assert torch.equal(a[key], b[key]), key

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(open(path, "rb").read()[:200])
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        GaussianAvatar.load(str(corrupt))
    with pytest.raises(CheckpointError, match="missing.pt"):
        GaussianAvatar.load(str(tmp_path / "missing.pt"))
    data = torch.load(path, weights_only=False)
    data["meta"]["num_gaussians"] += 1
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="mismatch.pt"):
        GaussianAvatar.load(str(tmp_path / "mismatch.pt"))
    data = torch.load(path, weights_only=False)
    data["format"] = "something.else"
    torch.save(data, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign.pt"):
        GaussianAvatar.load(str(tmp_path / "foreign.pt"))


def test_bad_inputs_raise_clearly():
    verts, faces = random_mesh(seed=10, dtype=torch.float32)
    avatar = GaussianAvatar.from_mesh(verts, faces)
    with pytest.raises(RenderError, match="triangles"):
        avatar(verts[None], faces[:-1])
    with pytest.raises(RenderError, match="offsets"):
        avatar(verts[None], faces, torch.zeros(1, 3, 3))
    with pytest.raises(RenderError, match="verts"):
        avatar(verts, faces)
    with pytest.raises(RenderError, match="faces"):
        GaussianAvatar.from_mesh(verts, faces.float())
    with pytest.raises(RenderError, match="binding"):
        GaussianAvatar(torch.tensor([0, 5]), num_triangles=3)


def test_per_triangle_counts_can_vary():
    verts, faces = random_mesh(seed=11)
    F = faces.shape[0]
    counts = torch.arange(F) % 4 + 1  # 1, 2, 3, 4, 1, ...
    avatar = GaussianAvatar.from_mesh(verts.float(), faces, per_triangle=counts).double()
    assert avatar.num_gaussians == int(counts.sum())
    assert torch.equal(torch.bincount(avatar.binding, minlength=F), counts)
    means = avatar(verts[None], faces)["means"][0]
    tri = verts[faces][avatar.binding]  # [N, 3, 3] the triangle of each Gaussian
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert torch.allclose(((means - tri[:, 0]) * n).sum(-1), torch.zeros(len(means), dtype=torch.float64), atol=1e-9)
    singles = torch.repeat_interleave(counts == 1, counts)
    assert torch.allclose(means[singles], tri[singles].mean(1), atol=1e-7)
    # scales shrink with the number of Gaussians sharing a triangle
    s = avatar.log_scales.exp()[:, 0]
    assert torch.allclose(s, 0.5 / counts[avatar.binding].double().sqrt(), rtol=1e-6)
    with pytest.raises(RenderError, match="per_triangle"):
        GaussianAvatar.from_mesh(verts.float(), faces, per_triangle=torch.zeros(F, dtype=torch.long))
