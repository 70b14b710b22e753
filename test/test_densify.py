"""BindingStrategy: clone / split / prune of Gaussians bound to triangles (binding
inheritance, face-local thresholds, no emptied triangle, optimiser state in step)."""

import pytest
import torch

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.errors import TrainingError
from rsatalker_core.training.densify import BindingStrategy, avatar_params, group_views, protect_triangles

ATTRS = ("means_local", "log_scales", "quats_local", "opacity_logits", "colors_logit")


def _mesh():
    """Two triangles: triangle 0 is 1 m across, triangle 1 is 1 cm across (k differs 100x)."""
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [2.01, 0, 0], [2, 0.01, 0]], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    return verts, faces


def _setup(per_triangle=3):
    verts, faces = _mesh()
    av = GaussianAvatar.from_mesh(verts, faces, per_triangle=per_triangle)
    with torch.no_grad():  # tag every Gaussian with its index: copies keep the tag
        av.colors_logit[:, 0] = torch.arange(av.num_gaussians, dtype=torch.float32)
    opt = torch.optim.Adam([{"params": [getattr(av, a)]} for a in ATTRS], lr=1e-3)
    return av, opt, verts, faces


def _step(av, opt, verts, faces, grad_scale):
    """One Adam step with a known positional gradient (per Gaussian) on means_local."""
    opt.zero_grad()
    out = av(verts[None], faces)
    (out["means"].sum() * 0).backward()
    av.means_local.grad = grad_scale[:, None].expand(-1, 3).clone()
    for a in ATTRS[1:]:
        getattr(av, a).grad = torch.zeros_like(getattr(av, a))
    opt.step()


def _check_optimizer(av, opt):
    for a in ATTRS:
        p = getattr(av, a)
        groups = [g for g in opt.param_groups if g["params"][0] is p]
        assert len(groups) == 1, a
        st = opt.state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape, a


def test_clone_and_split_inherit_binding_and_follow_local_scale():
    av, opt, verts, faces = _setup()
    b0 = av.binding.clone()
    with torch.no_grad():  # Gaussians 0 and 3 (one per triangle) are large in local units
        av.log_scales[[0, 3]] = torch.log(torch.tensor(0.6))
    grad = torch.zeros(av.num_gaussians)
    grad[[0, 1, 3, 4]] = 1.0  # high gradient: 0, 3 large -> split; 1, 4 small -> clone
    strat = BindingStrategy(refine_start_iter=0, refine_every=1, grow_grad=0.5, grow_scale_local=0.3, reset_every=0)
    state = strat.initialize_state(2)
    _step(av, opt, verts, faces, grad)
    out = strat.step_post_backward_avatar(av, opt, state, step=1)
    assert out["cloned"] == 2 and out["split"] == 2 and out["pruned"] == 0
    assert av.num_gaussians == 6 + 2 + 2  # a split replaces 1 by 2
    assert av.binding.dtype == torch.long and av.binding.shape == (av.num_gaussians,)
    tags = av.colors_logit[:, 0].round().long()
    assert torch.equal(av.binding, b0[tags])  # every Gaussian sits on its parent's triangle
    assert sorted(tags.tolist()) == [0, 0, 1, 1, 2, 3, 3, 4, 4, 5]
    # children of a split are smaller (gsplat: scale / 1.6), in local units on both triangles
    split_kids = av.log_scales[(tags == 0) | (tags == 3)]
    assert torch.allclose(split_kids.exp(), torch.full_like(split_kids, 0.6 / 1.6), atol=1e-5)
    assert state["grad_accum"].shape == (10,) and float(state["grad_accum"].abs().sum()) == 0
    _check_optimizer(av, opt)
    _step(av, opt, verts, faces, torch.zeros(av.num_gaussians))  # the optimiser still steps


def test_world_scale_does_not_matter():
    """The 1 cm triangle's Gaussians grow exactly like the 1 m triangle's: thresholds are
    in triangle sizes, although their world scales differ 100x."""
    av, opt, verts, faces = _setup(per_triangle=1)
    world = av(verts[None], faces)["scales"][0].amax(-1)
    assert float((world[0] / world[1]).detach()) > 50
    strat = BindingStrategy(refine_start_iter=0, refine_every=1, grow_grad=0.5, grow_scale_local=0.6, reset_every=0)
    state = strat.initialize_state(2)
    _step(av, opt, verts, faces, torch.ones(2))
    out = strat.step_post_backward_avatar(av, opt, state, step=1)
    assert out["cloned"] == 2 and out["split"] == 0
    assert torch.equal(torch.bincount(av.binding), torch.tensor([2, 2]))


def test_prune_never_empties_a_triangle_and_keeps_the_most_opaque():
    av, opt, verts, faces = _setup()
    with torch.no_grad():
        av.opacity_logits[:3] = torch.tensor([-9.0, -7.0, -8.0])  # all of triangle 0 transparent
        av.opacity_logits[3] = -9.0  # one of triangle 1
    strat = BindingStrategy(refine_start_iter=0, refine_every=1, grow_grad=1e9, prune_opa=0.005, reset_every=0)
    state = strat.initialize_state(2)
    _step(av, opt, verts, faces, torch.zeros(6))
    kept_moment = opt.state[av.means_local]["exp_avg"][[1, 4, 5]].clone()
    out = strat.step_post_backward_avatar(av, opt, state, step=1)
    assert out["pruned"] == 3
    tags = av.colors_logit[:, 0].round().long()
    assert tags.tolist() == [1, 4, 5]  # triangle 0 keeps its most opaque Gaussian (1)
    assert torch.equal(av.binding, torch.tensor([0, 1, 1]))
    assert torch.equal(opt.state[av.means_local]["exp_avg"], kept_moment)
    _check_optimizer(av, opt)


def test_protect_triangles_directly():
    binding = torch.tensor([0, 0, 1, 2, 2, 2])
    prune = torch.tensor([True, True, True, True, False, True])
    opac = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.5, 0.95])
    out = protect_triangles(prune, binding, opac, 4)
    assert out.tolist() == [True, False, False, True, False, True]
    assert torch.bincount(binding[~out], minlength=4).tolist() == [1, 1, 1, 0]  # triangle 3 never had one


def test_reset_and_schedule_and_errors():
    av, opt, verts, faces = _setup()
    strat = BindingStrategy(refine_start_iter=5, refine_every=2, reset_every=3, prune_opa=0.1, grow_grad=1e9)
    state = strat.initialize_state(2)
    _step(av, opt, verts, faces, torch.ones(6))
    assert strat.step_post_backward_avatar(av, opt, state, step=2) == {"cloned": 0, "split": 0, "pruned": 0, "reset": 0}
    assert float(state["count"].sum()) == 6  # statistic accumulated, no refinement before step 5
    out = strat.step_post_backward_avatar(av, opt, state, step=3)
    assert out["reset"] == 1 and float(av.opacities.detach().max()) <= 0.2 + 1e-6
    with pytest.raises(TrainingError, match="refine_every"):
        BindingStrategy(refine_every=0).initialize_state(2)
    shared = torch.optim.Adam(av.parameters())  # all attributes in one group: refused
    with pytest.raises(TrainingError, match="alone in one optimiser"):
        group_views(shared, avatar_params(av))
