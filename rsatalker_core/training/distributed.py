"""Data-parallel training with ``torch.distributed``: process group, collectives, DDP.

Every training stage runs unchanged under ``torchrun`` (docs/training.md)::

    torchrun --nproc_per_node=4 -m rsatalker_core.cli train --stage 1 --config ...
    torchrun --nnodes=2 --node_rank=$R --rdzv_backend=c10d --rdzv_endpoint=$HOST:29500 \\
        --nproc_per_node=8 -m rsatalker_core.cli train --stage 1 --config ...

:func:`init_distributed` joins the process group through ``env://`` when torchrun (or any
launcher) sets ``WORLD_SIZE > 1``: backend NCCL when the configured device is CUDA (each
process then uses ``cuda:LOCAL_RANK``), gloo on the CPU. With one process nothing is
initialised and every helper below is a no-op, so single-process training is unchanged.

What runs where (the :class:`~rsatalker_core.training.trainer.Trainer` uses these):

* gradients are averaged by :class:`DataParallelLoss` (``DistributedDataParallel`` around
  the stage's ``loss``; micro-batches but the last run under ``no_sync``);
* rank 0 alone writes TensorBoard, ``log.jsonl``, the progress bar and checkpoints;
* the stop request (Ctrl-C / SIGTERM on any rank) is agreed with :func:`any_true` after
  every step, so every rank stops after the same step;
* :func:`main_process_first` lets rank 0 build something shared (the speech-feature cache)
  while the others wait at a barrier, then reuse it.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rsatalker_core.errors import ConfigError

log = logging.getLogger("rsatalker.train")

#: Collective timeout: long enough for rank 0 to fill a speech-feature cache of a large
#: corpus while the other ranks wait (``RSATALKER_DIST_TIMEOUT_S`` overrides it).
DEFAULT_TIMEOUT_S = 4 * 3600


def env_world_size() -> int:
    """``WORLD_SIZE`` of the environment (torchrun sets it; 1 when unset)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError as exc:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ.get('WORLD_SIZE')!r}") from exc


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of data-parallel processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes logs and checkpoints."""
    return rank() == 0


def init_distributed(device: str) -> str:
    """Join the ``env://`` process group when ``WORLD_SIZE > 1``; returns this rank's device.

    Args:
        device: the configured device (``cfg.device``: ``cpu``, ``cuda``, ``cuda:N``, ``auto``).
            Under several processes a CUDA device becomes ``cuda:LOCAL_RANK`` (one GPU per
            process) and the backend NCCL; anything else keeps ``device`` and uses gloo.

    Returns:
        the device this process trains on (``device`` itself with one process).

    Raises:
        ConfigError: a CUDA device is asked for but ``LOCAL_RANK`` exceeds the visible GPUs,
            or ``torch.distributed`` is unavailable.
    """
    if env_world_size() <= 1 or is_distributed():
        return device
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    from rsatalker_core.device import resolve_device

    dev = resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "gloo"
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but {torch.cuda.device_count()} CUDA device(s) are visible: "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    timeout = float(os.environ.get("RSATALKER_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout))
    log.info("rank %d of %d (%s, device %s)", dist.get_rank(), dist.get_world_size(), backend, dev)
    return str(dev)


def shutdown() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where collective tensors live: the current CUDA device for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op with one process)."""
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first while the others wait; then the others run it (e.g. to
    find a cache rank 0 just filled)."""
    if is_distributed() and not is_main():
        dist.barrier()
    try:
        yield
    finally:
        if is_distributed() and is_main():
            dist.barrier()


def all_reduce_(tensors: Sequence[Tensor], op: str = "sum") -> None:
    """In-place ``sum`` / ``mean`` / ``max`` of ``tensors`` over every rank (one flat
    collective; no-op with one process)."""
    if not is_distributed() or not tensors:
        return
    dev = _collective_device()
    flat = torch.cat([t.detach().reshape(-1).to(dev, torch.float64) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    if op == "mean":
        flat /= dist.get_world_size()
    i = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[i : i + n].reshape(t.shape).to(t.device, t.dtype))
        i += n


def mean_over_ranks(values: Dict[str, float]) -> Dict[str, float]:
    """Each value averaged over the ranks (the same keys on every rank; one collective)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    all_reduce_([t], "mean")
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def any_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (the agreed stop request)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    all_reduce_([t], "max")
    return bool(t.item() > 0)


def gather_objects(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` with one process)."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_(tensors: Sequence[Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s (same shapes everywhere)."""
    if not is_distributed():
        return
    dev = _collective_device()
    for t in tensors:
        buf = t.detach().to(dev).contiguous()
        dist.broadcast(buf, src)
        with torch.no_grad():
            t.copy_(buf.to(t.device))


class _StageLoss(nn.Module):
    """``forward(batch) = stage.loss(batch)``, with the stage's model as its only child, so
    that DDP sees the trained parameters and the stage's own code runs unchanged."""

    def __init__(self, stage: Any):
        super().__init__()
        self.model = stage.model
        self._stage = (stage,)  # a tuple: not registered as a submodule

    def forward(self, batch: Any) -> Tuple[Tensor, Dict[str, Any]]:
        return self._stage[0].loss(batch)


class DataParallelLoss:
    """``stage.loss(batch)`` whose backward averages gradients over the ranks.

    With one process it calls ``stage.loss`` directly. Under a process group it goes
    through ``DistributedDataParallel`` (gloo or NCCL; ``device_ids=None``, the stage moves
    its inputs itself). A stage whose parameter set changes during training (stage 2's
    densification replaces the Gaussian tensors) is re-wrapped by :meth:`refresh` after the
    step that changed it; every rank changes at the same step (identical decisions).

    Args:
        stage: the :class:`~rsatalker_core.training.trainer.Stage`.
    """

    def __init__(self, stage: Any):
        self.stage = stage
        self.ddp: Optional[nn.Module] = None
        self._key: Tuple[Tuple[int, Tuple[int, ...]], ...] = ()
        self._wrap()

    def _param_key(self) -> Tuple[Tuple[int, Tuple[int, ...]], ...]:
        return tuple((id(p), tuple(p.shape)) for p in self.stage.model.parameters() if p.requires_grad)

    def _wrap(self) -> None:
        self._key = self._param_key()
        if not is_distributed():
            return
        from torch.nn.parallel import DistributedDataParallel

        find_unused = bool(getattr(self.stage, "ddp_find_unused_parameters", False))
        self.ddp = DistributedDataParallel(
            _StageLoss(self.stage), device_ids=None, find_unused_parameters=find_unused,
        )

    def refresh(self) -> bool:
        """Re-wrap when the trainable parameters changed (identity or shape); returns whether it did."""
        if self.ddp is None or self._param_key() == self._key:
            return False
        self.ddp = None
        self._wrap()
        return True

    @contextlib.contextmanager
    def accumulating(self, sync: bool) -> Iterator[None]:
        """Around a micro-batch's forward and backward: ``sync=False`` accumulates the
        gradient locally (``no_sync``), ``True`` averages it over the ranks."""
        if self.ddp is None or sync:
            yield
        else:
            with self.ddp.no_sync():
                yield

    def __call__(self, batch: Any) -> Tuple[Tensor, Dict[str, Any]]:
        if self.ddp is None:
            return self.stage.loss(batch)
        return self.ddp(batch)
