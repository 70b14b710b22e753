"""Adaptive density control for Gaussians bound to FLAME triangles (RSATalker §3.4).

:class:`BindingStrategy` is a gsplat :class:`gsplat.strategy.Strategy` for a face-local
avatar (:class:`~rsatalker_core.avatar.gaussians.GaussianAvatar`, docs/method.md §4). It follows gsplat's
``DefaultStrategy`` schedule (accumulate a positional-gradient statistic, every
``refine_every`` steps clone small / split large high-gradient Gaussians and prune
transparent / oversized ones, reset opacities every ``reset_every`` steps) with three
differences that binding requires (GaussianAvatars §3.3; docs/method.md §5):

* **Binding inheritance.** ``binding`` travels in the parameter dict as a non-trainable
  tensor, so gsplat's own ops (:func:`gsplat.strategy.ops.duplicate`, ``split``,
  ``remove``) copy, split and drop it in step with every parameter: a new (neural)
  Gaussian is bound to its parent's triangle and therefore moves with it and receives its
  anchor's social offset ``c``.
* **Face-local thresholds.** Sizes are compared in units of the triangle size ``k``:
  the local scale ``exp(s_c)`` (``world scale = k exp(s_c)``), not world metres, so one
  threshold serves the large triangles of the scalp and the small ones of the lips.
  The gradient statistic is the norm of the loss gradient with respect to the local mean
  ``mu_c`` (also per triangle size), averaged over the steps in which the Gaussian
  received any gradient (was visible).
* **Pruning never empties a triangle.** Of the Gaussians selected for pruning, the most
  opaque one of each triangle that would otherwise lose all its Gaussians is kept.

Split samples in the local frame (``mu_c + R(r_c) diag(exp(s_c)) z``, ``z ~ N(0, I)``),
which is the Gaussian's own world-space distribution mapped by the triangle's similarity
transform ``k R``; children get ``s_c - ln 1.6`` (gsplat). Random draws come from torch's
global generator, whose state the :class:`~rsatalker_core.training.trainer.Trainer`
checkpoints, so densifying runs resume exactly.

Parameter names. gsplat's ops know the Gaussian attributes by the names ``means``,
``scales``, ``quats``, ``opacities``; :func:`avatar_params` maps the avatar's face-local
tensors onto them (``means`` = ``means_local``, ``scales`` = ``log_scales``, ``quats`` =
``quats_local``, ``opacities`` = ``opacity_logits``, ``colors`` = ``colors_logit``) and
:func:`write_back` stores the (new) tensors on the avatar again.

Optimisers. gsplat expects one optimiser with one parameter group per attribute. A
training loop with a single optimiser (as the project's Trainer) gives each attribute its
own parameter group; :func:`group_views` wraps those groups as gsplat "optimisers" that
share the real optimiser's state, so Adam moments are extended (zeros for new Gaussians)
and pruned consistently. :func:`avatar_param_groups` builds those groups (stages 2 and 3).

Example:
    >>> strategy = BindingStrategy(refine_every=100, refine_start_iter=500)
    >>> state = strategy.initialize_state(avatar.num_triangles)
    >>> # after loss.backward():
    >>> strategy.step_post_backward_avatar(avatar, optimizer, state, step)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn

from gsplat.strategy import Strategy
from gsplat.strategy.ops import duplicate, remove, reset_opa, split

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.errors import TrainingError
from rsatalker_core.training import distributed

#: gsplat attribute name -> GaussianAvatar attribute.
PARAM_NAMES: Dict[str, str] = {
    "means": "means_local",
    "scales": "log_scales",
    "quats": "quats_local",
    "opacities": "opacity_logits",
    "colors": "colors_logit",
    "binding": "binding",
}

#: Avatar attribute -> ``train.stage2`` learning-rate field (config.py, ``Stage2Config``).
AVATAR_LR_FIELDS: Dict[str, str] = {
    "means_local": "lr_means",
    "log_scales": "lr_scales",
    "quats_local": "lr_quats",
    "opacity_logits": "lr_opacity",
    "colors_logit": "lr_colors",
}

__all__ = [
    "AVATAR_LR_FIELDS",
    "PARAM_NAMES",
    "avatar_param_groups",
    "BindingStrategy",
    "avatar_params",
    "write_back",
    "group_views",
    "protect_triangles",
    "synchronize_avatar",
]


def avatar_param_groups(avatar: GaussianAvatar, stage2_cfg: Any, scale: float = 1.0) -> List[Dict[str, Any]]:
    """One optimiser parameter group per Gaussian attribute, at ``train.stage2.lr_* x scale``
    without weight decay (each attribute alone in its group, as gsplat's ops need).

    Args:
        avatar: the avatar being trained.
        stage2_cfg: ``cfg.train.stage2`` (the ``lr_*`` fields of :data:`AVATAR_LR_FIELDS`).
        scale: learning-rate factor (stage 3's ``avatar_lr_scale``).
    """
    return [
        {"params": [getattr(avatar, attr)], "lr": float(getattr(stage2_cfg, f)) * float(scale), "weight_decay": 0.0}
        for attr, f in AVATAR_LR_FIELDS.items()
    ]


def synchronize_avatar(avatar: GaussianAvatar) -> None:
    """After a densification under several processes: check that every rank holds the same
    number of Gaussians and the same binding, then give every rank rank 0's Gaussian
    tensors (a split draws the children's positions from each rank's own generator).

    No-op with one process. Every rank must call it at the same step.

    Raises:
        TrainingError: the ranks' Gaussian counts or bindings differ (listed per rank).
    """
    if not distributed.is_distributed():
        return
    binding = avatar.binding.detach().to("cpu", torch.int64).contiguous()
    seen = distributed.gather_objects((int(avatar.num_gaussians), hashlib.sha1(binding.numpy().tobytes()).hexdigest()))
    if len(set(seen)) > 1:
        raise TrainingError(
            "densification diverged between ranks: (Gaussians, binding sha1) per rank " + repr(seen)
        )
    distributed.broadcast_([getattr(avatar, attr) for attr in AVATAR_LR_FIELDS])


def avatar_params(avatar: GaussianAvatar) -> Dict[str, Tensor]:
    """gsplat-named view of an avatar's tensors (``binding`` as a non-trainable Parameter)."""
    out: Dict[str, Tensor] = {k: getattr(avatar, v) for k, v in PARAM_NAMES.items() if k != "binding"}
    out["binding"] = nn.Parameter(avatar.binding, requires_grad=False)
    return out


def write_back(avatar: GaussianAvatar, params: Dict[str, Tensor]) -> None:
    """Store the tensors of ``params`` (as left by gsplat's ops) on ``avatar``."""
    for k, attr in PARAM_NAMES.items():
        if k == "binding":
            avatar.binding = params[k].data.long()
        else:
            p = params[k]
            setattr(avatar, attr, p if isinstance(p, nn.Parameter) else nn.Parameter(p))


class _GroupView:
    """One parameter group of a shared optimiser, seen by gsplat as an optimiser."""

    def __init__(self, optimizer: torch.optim.Optimizer, group: Dict[str, Any]):
        self.param_groups = [group]
        self.state = optimizer.state


def group_views(optimizer: Optional[torch.optim.Optimizer], params: Dict[str, Tensor]) -> Dict[str, Any]:
    """gsplat's ``optimizers`` dict for ``params`` from one optimiser: for each trainable
    tensor, the parameter group that holds it (which must hold nothing else).

    Raises:
        TrainingError: a trainable tensor is in no group, or shares its group.
    """
    views: Dict[str, Any] = {}
    if optimizer is None:
        return views
    for name, p in params.items():
        if not p.requires_grad:
            continue
        groups = [g for g in optimizer.param_groups if any(q is p for q in g["params"])]
        if len(groups) != 1 or len(groups[0]["params"]) != 1:
            raise TrainingError(
                f"densification needs the avatar's '{PARAM_NAMES[name]}' alone in one optimiser "
                f"parameter group (found in {len(groups)} group(s))"
            )
        views[name] = _GroupView(optimizer, groups[0])
    return views


def protect_triangles(
    prune: Tensor,  # [N] bool
    binding: Tensor,  # [N] long
    opacities: Tensor,  # [N]
    num_triangles: int,
) -> Tensor:
    """Drop from ``prune`` the most opaque Gaussian of every triangle it would empty.

    Args:
        prune: Gaussians selected for removal. [N] bool
        binding: triangle of each Gaussian. [N] long
        opacities: any score where higher means "keep first" (opacity). [N]
        num_triangles: triangles of the mesh.

    Returns:
        The reduced mask ``[N]``: no triangle that had a Gaussian is left without one.
    """
    have = torch.bincount(binding, minlength=num_triangles)
    lose = torch.bincount(binding[prune], minlength=num_triangles)
    emptied = (have > 0) & (lose == have)  # [F]
    cand = prune & emptied[binding]
    if not bool(cand.any()):
        return prune
    idx = cand.nonzero().squeeze(1)
    # Sort candidates by (triangle, -opacity): the first of each triangle is kept.
    order = torch.argsort(opacities[idx].detach().float(), descending=True, stable=True)
    idx = idx[order]
    order = torch.argsort(binding[idx], stable=True)
    idx = idx[order]
    tri = binding[idx]
    first = torch.ones_like(tri, dtype=torch.bool)
    first[1:] = tri[1:] != tri[:-1]
    out = prune.clone()
    out[idx[first]] = False
    return out


@dataclass
class BindingStrategy(Strategy):
    """Clone / split / prune of face-local Gaussians with binding inheritance (module doc).

    Thresholds on sizes are in triangle sizes ``k`` (local scale ``exp(s_c)``); the
    gradient threshold is on ``||dL/d mu_c||`` averaged over visible steps.

    Attributes:
        grow_grad: Gaussians whose mean local-position gradient norm exceeds this grow
            (clone when small, split when large). The statistic is not gsplat's
            screen-space one: refining the default avatar on its portrait (256x256,
            L_image) its median was 1.6e-6 and its 99th percentile 3.2e-5; the default
            1e-5 (about the 93rd percentile) grew that avatar by 13 % in 120 steps.
        grow_scale_local: largest local scale ``max exp(s_c)`` (units of ``k``) of a
            Gaussian that is cloned; larger ones are split.
        prune_opa: Gaussians with opacity below this are pruned.
        prune_scale_local: Gaussians with local scale above this (units of ``k``) are pruned.
        refine_start_iter: first step at which Gaussians are refined.
        refine_stop_iter: no refinement after this step.
        refine_every: steps between refinements.
        reset_every: steps between opacity resets (to ``2 prune_opa``); 0 = never.
        max_gaussians: no growth beyond this many Gaussians (0 = unbounded); when the
            candidates exceed the room left, the highest-gradient ones grow.
        verbose: log each refinement.
    """

    grow_grad: float = 1e-5
    grow_scale_local: float = 0.3
    prune_opa: float = 0.005
    prune_scale_local: float = 3.0
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    max_gaussians: int = 0
    verbose: bool = False

    def check_config(self) -> None:
        """Raise :class:`TrainingError` naming the first value out of range."""
        checks = [
            ("grow_grad", self.grow_grad >= 0), ("grow_scale_local", self.grow_scale_local > 0),
            ("prune_opa", 0 <= self.prune_opa < 1), ("prune_scale_local", self.prune_scale_local > 0),
            ("refine_every", self.refine_every >= 1), ("reset_every", self.reset_every >= 0),
            ("refine_start_iter", self.refine_start_iter >= 0), ("max_gaussians", self.max_gaussians >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise TrainingError(f"densify.{name} is out of range: {getattr(self, name)!r}")

    # ------------------------------------------------------------------ gsplat interface
    def initialize_state(self, num_triangles: int) -> Dict[str, Any]:
        """Running state: ``grad_accum [N]``, ``count [N]`` (created lazily), and the
        mesh's ``num_triangles``. Checkpoint it with the model (plain tensors / ints)."""
        self.check_config()
        return {"grad_accum": None, "count": None, "num_triangles": int(num_triangles)}

    def check_sanity(self, params: Dict[str, Tensor], optimizers: Dict[str, Any]) -> None:
        """gsplat's check plus: every attribute present, ``binding`` non-trainable and in step.

        Raises:
            TrainingError: a missing attribute or a ``binding`` of another length.
        """
        missing = [k for k in PARAM_NAMES if k not in params]
        if missing:
            raise TrainingError(f"densification: parameters lack {', '.join(missing)}")
        if params["binding"].requires_grad or params["binding"].shape != params["means"].shape[:1]:
            raise TrainingError("densification: binding must be a non-trainable [N] tensor beside means [N, 3]")
        super().check_sanity(params, optimizers)

    def step_pre_backward(self, *args, **kwargs) -> None:
        """Nothing to do: the statistic is read from ``means.grad`` after backward."""

    @torch.no_grad()
    def step_post_backward(
        self,
        params: Dict[str, Tensor],
        optimizers: Dict[str, Any],
        state: Dict[str, Any],
        step: int,
        info: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, int]:
        """Update the gradient statistic from ``params["means"].grad`` and refine when due.

        Args:
            params: gsplat-named tensors (:func:`avatar_params`); replaced in place.
            optimizers: gsplat-style optimisers per trainable name (:func:`group_views`).
            state: from :meth:`initialize_state`; updated in place.
            step: optimiser steps done, this one included (1-based).
            info: unused (gsplat passes its rasterizer's info).

        Returns:
            counts of this call: ``{"cloned", "split", "pruned", "reset"}``.
        """
        n = int(params["means"].shape[0])
        if state["grad_accum"] is None or state["grad_accum"].shape[0] != n:
            dev = params["means"].device
            state["grad_accum"] = torch.zeros(n, device=dev)
            state["count"] = torch.zeros(n, device=dev)
        grad = params["means"].grad
        if grad is not None:
            g = grad.detach().norm(dim=-1).float()
            seen = g > 0
            state["grad_accum"] += g
            state["count"] += seen.float()
        out = {"cloned": 0, "split": 0, "pruned": 0, "reset": 0}
        if self.refine_start_iter < step <= self.refine_stop_iter and step % self.refine_every == 0:
            # Data parallel: the statistic averaged over the ranks before any decision, so that
            # every rank clones, splits and prunes the same Gaussians (under DDP the gradients
            # are already averaged and this changes nothing; it guards every other path).
            distributed.all_reduce_([state["grad_accum"], state["count"]], "mean")
            out.update(self._refine(params, optimizers, state))
            state["grad_accum"].zero_()
            state["count"].zero_()
        if self.reset_every > 0 and step % self.reset_every == 0 and step <= self.refine_stop_iter:
            reset_opa(params, optimizers, state, value=min(0.99, 2.0 * self.prune_opa))
            out["reset"] = 1
        return out

    # ------------------------------------------------------------------ convenience
    def step_post_backward_avatar(
        self,
        avatar: GaussianAvatar,
        optimizer: Optional[torch.optim.Optimizer],
        state: Dict[str, Any],
        step: int,
    ) -> Dict[str, int]:
        """:meth:`step_post_backward` on a :class:`GaussianAvatar` and one optimiser whose
        parameter groups hold one avatar tensor each; the avatar's tensors are replaced."""
        params = avatar_params(avatar)
        views = group_views(optimizer, params)
        out = self.step_post_backward(params, views, state, step)
        if any(out.values()):
            write_back(avatar, params)
        return out

    # ------------------------------------------------------------------ refinement
    def _refine(self, params: Dict[str, Tensor], optimizers: Dict[str, Any], state: Dict[str, Any]) -> Dict[str, int]:
        self.check_sanity(params, optimizers)
        n = int(params["means"].shape[0])
        avg = state["grad_accum"] / state["count"].clamp_min(1.0)
        local_scale = torch.exp(params["scales"].detach()).amax(dim=-1)
        grow = avg > self.grow_grad
        if self.max_gaussians > 0:
            room = self.max_gaussians - n
            if room <= 0:
                grow = torch.zeros_like(grow)
            elif int(grow.sum()) > room:  # split adds one net Gaussian, clone one: keep the strongest
                keep = torch.topk(torch.where(grow, avg, torch.full_like(avg, -1.0)), room).indices
                grow = torch.zeros_like(grow)
                grow[keep] = True
        is_small = local_scale <= self.grow_scale_local
        clone_mask = grow & is_small
        split_mask = grow & ~is_small
        n_clone, n_split = int(clone_mask.sum()), int(split_mask.sum())
        if n_clone:
            duplicate(params, optimizers, state, clone_mask)
        if n_split:
            # duplicate() appended the clones at the end: the split mask gets False there.
            split_mask = torch.cat([split_mask, torch.zeros(n_clone, dtype=torch.bool, device=split_mask.device)])
            split(params, optimizers, state, split_mask)
        opac = torch.sigmoid(params["opacities"].detach())
        local_scale = torch.exp(params["scales"].detach()).amax(dim=-1)
        prune = (opac < self.prune_opa) | (local_scale > self.prune_scale_local)
        prune = protect_triangles(prune, params["binding"].data.long(), opac, state["num_triangles"])
        n_prune = int(prune.sum())
        if n_prune:
            remove(params, optimizers, state, prune)
        return {"cloned": n_clone, "split": n_split, "pruned": n_prune}
