"""Generic training loop shared by the three training stages (docs/method.md §7).

A *stage* (:class:`Stage`) supplies what is specific to it: the module whose weights are
trained and checkpointed, its training dataset and collate function, the optimiser's
parameter groups, ``loss(batch) -> (loss, scalars)`` and ``validate() -> metrics``. The
:class:`Trainer` supplies everything else and knows nothing about motion, images or FLAME:

* **Data parallelism** (docs/training.md): under ``torchrun`` every rank runs this loop;
  gradients are averaged by DDP (:class:`~rsatalker_core.training.distributed.DataParallelLoss`),
  each optimiser step takes ``train.grad_accum`` micro-batches per rank (a global batch of
  ``batch_size x world_size x grad_accum``), rank 0 alone writes records and checkpoints,
  the stop request is agreed after every step, and a resume at another world size keeps
  the checkpoint's global batch. With one process all of this reduces to the plain loop.
* **Mixed precision**: ``train.amp`` (:mod:`~rsatalker_core.training.precision`), bf16
  autocast around the stage's loss on CUDA, off on the CPU.
* **Seeding** (:func:`seed_everything`): Python ``random``, numpy's global generator and
  torch (CPU and every CUDA device) from ``cfg.seed`` (ranks > 0: from ``(seed, rank)``).
  Batch order comes from a
  :class:`ResumableBatchSampler` with its own generator seeded by ``(seed, epoch)``; the
  DataLoader's generator (which draws the workers' base seed) is re-seeded by ``(seed,
  epoch)`` at every epoch, and :func:`seed_worker` seeds ``random`` / numpy in each worker
  from torch's per-worker seed.
* **Optimisation**: AdamW over the stage's parameter groups, a linear warm-up then a
  constant or cosine learning rate (:func:`lr_factor`), optional gradient-norm clipping.
* **Records**: a tqdm progress bar; TensorBoard scalars ``train/*`` and ``val/*`` (and
  images ``val/*`` when a stage's ``validate`` returns ``[3, H, W]`` tensors) through
  ``torch.utils.tensorboard.SummaryWriter`` in ``<out_dir>/tb``; and ``<out_dir>/log.jsonl``,
  one JSON object per logged step or validation (:func:`read_log`).
* **Validation** every ``val_every`` steps and at the end, in eval mode without autograd.
  It runs on a forked RNG state (saved before, restored after), so how often one validates
  never changes the training trajectory.
* **Checkpoints**: ``<out_dir>/checkpoints/last.pt``, written atomically (temporary file +
  rename, :func:`rsatalker_core.checkpoint.atomic_save`) every ``checkpoint_every`` steps,
  at the end and on interruption. It holds the model, optimiser and scheduler state, the
  step, the sampler position (epoch, global batches consumed in it), every RNG state (torch
  CPU and CUDA, numpy, Python; of every rank), the world size, global batch and
  ``grad_accum``, and the configuration.
* **Exact resume**: ``fit(resume=...)`` restores all of the above, so the loss at step
  ``k + 1`` after resuming from step ``k`` equals the uninterrupted run's bit for bit on
  the CPU (on CUDA as well with ``train.deterministic``). The TensorBoard writer purges
  events after step ``k`` and ``log.jsonl`` drops records after step ``k``, so a run that
  crashed after its last checkpoint leaves no duplicate curve. Limitation: DataLoader
  workers are re-seeded per epoch, not per batch, so random *augmentation* inside workers
  (no stage uses any) would not replay exactly after a mid-epoch resume.
* **Ctrl-C / SIGTERM** (main thread only): the current step finishes, a checkpoint is
  written and :meth:`Trainer.fit` returns with ``interrupted=True``; nothing is lost. A
  second Ctrl-C aborts at once without saving. Workers ignore SIGINT, so a terminal Ctrl-C
  reaches only the training process.

Example:
    >>> stage = MotionStage(cfg)                       # rsatalker_core.training.stage1
    >>> result = Trainer(stage, cfg.train, seed=cfg.seed).fit()
    >>> result = Trainer(stage, cfg.train, seed=cfg.seed).fit(resume="auto")  # continue
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, default_collate

from rsatalker_core.io.checkpoint import atomic_save, load_checkpoint
from rsatalker_core.config import TrainConfig
from rsatalker_core.errors import CheckpointError, ConfigError, TrainingError
from rsatalker_core.training import distributed, precision
from rsatalker_core.training.sampler import ResumableBatchSampler, derive_seed  # noqa: F401 (re-exported)

log = logging.getLogger("rsatalker.train")

#: ``format`` tag of the resumable training checkpoint (``checkpoints/last.pt``).
TRAIN_CKPT_FORMAT = "rsatalker-train"
TRAIN_CKPT_VERSION = 1
LR_SCHEDULES = ("constant", "cosine")
Scalar = Union[float, Tensor]


# --------------------------------------------------------------------------- seeding
_LOADER_KEY = 2
_RANK_KEY = 3
_RESEED_KEY = 4


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python ``random``, numpy's global generator and torch (CPU and all CUDA devices).

    Args:
        seed: the run's seed (``cfg.seed``).
        deterministic: also ``torch.use_deterministic_algorithms(True)`` (warn-only for ops
            without a deterministic version) and cuDNN's deterministic mode, and set
            ``CUBLAS_WORKSPACE_CONFIG`` when it is unset, for bit-exact CUDA runs.
    """
    random.seed(seed)
    np.random.seed(int(seed) % (1 << 32))
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and numpy from torch's per-worker seed
    (``base_seed + worker_id``, the base drawn from the loader's seeded generator), and
    ignore SIGINT so that a terminal Ctrl-C reaches only the training process."""
    s = torch.initial_seed() % (1 << 32)
    random.seed(s)
    np.random.seed(s)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread of the worker: nothing to do
        pass


def get_rng_state() -> Dict[str, Any]:
    """Every RNG state the loop depends on: ``{"python", "numpy", "torch"[, "cuda"]}``."""
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore the states of :func:`get_rng_state` (CUDA states only where CUDA exists)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning(
                "checkpoint holds %d CUDA RNG states but %d devices are visible: CUDA RNG not restored",
                len(cuda), torch.cuda.device_count(),
            )


# --------------------------------------------------------------------------- stage
class Stage(abc.ABC):
    """What a training stage hands to the :class:`Trainer`.

    Attributes:
        name: short tag stored in checkpoints (``"motion"``, ...); a checkpoint of another
            stage is refused on resume.
        model: the ``nn.Module`` whose ``state_dict`` is checkpointed and whose mode the
            trainer switches (``train()`` for steps, ``eval()`` for validation). Frozen
            parts (the speech encoder) may live outside it.
    """

    name: str = "stage"
    model: nn.Module

    @abc.abstractmethod
    def train_dataset(self) -> Dataset:
        """The map-style training dataset (indexed by the trainer's batch sampler)."""

    @property
    def collate_fn(self) -> Callable[[Sequence[Any]], Any]:
        """Collate function for the DataLoader (default: ``torch``'s ``default_collate``)."""
        return default_collate

    def param_groups(self) -> List[Dict[str, Any]]:
        """Optimiser parameter groups (dicts with ``"params"`` and optional per-group
        ``"lr"`` / ``"weight_decay"``); default: every trainable parameter of ``model``."""
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    @abc.abstractmethod
    def loss(self, batch: Any) -> Tuple[Tensor, Dict[str, Scalar]]:
        """Training loss of one batch.

        Returns:
            ``(loss, scalars)``: the scalar tensor to minimise and named detached scalars
            (floats or 0-d tensors) logged as ``train/<name>``.
        """

    def validate(self) -> Dict[str, Union[float, Tensor]]:
        """Validation metrics: floats are logged as ``val/<name>`` scalars, ``[3, H, W]``
        tensors in ``[0, 1]`` as ``val/<name>`` images. Called in eval mode under
        ``torch.no_grad()``. Default: nothing."""
        return {}

    def finalize(self, out_dir: str, step: int) -> Optional[str]:
        """Write the stage's final weights when the run completes; returns their path."""
        return None

    def state_dict(self) -> Dict[str, Any]:
        """Extra stage state to checkpoint beyond ``model`` (default: none)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


# --------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        step: optimiser steps done in total (this session and earlier ones).
        loss: the last logged training loss (mean over its logging interval), or ``None``.
        interrupted: stopped early (signal or ``stop_at``); ``checkpoint`` resumes it.
        signal: the signal number that stopped it, if any.
        checkpoint: path of ``checkpoints/last.pt``.
        final_weights: the stage's final weights (completed runs only).
        val: the last validation's scalars.
        steps_per_s: training speed this session: optimiser steps per second of loading
            batches and stepping (validation and checkpoint writing excluded).
    """

    step: int
    loss: Optional[float]
    interrupted: bool
    signal: Optional[int]
    checkpoint: str
    final_weights: Optional[str] = None
    val: Dict[str, float] = field(default_factory=dict)
    steps_per_s: float = 0.0


@dataclass
class TrainProgress:
    """What :class:`Trainer` hands its ``on_progress`` callback after every optimiser step.

    Attributes:
        stage: the stage's :attr:`Stage.name` (``"motion"``, ...).
        step: optimiser steps done in total (a resumed run continues the count).
        max_steps: the run's target (``train.max_steps``).
        loss: the training loss of this step (not averaged over ``log_every``).
        lr: the learning rate this step used.
        steps_per_s: optimiser steps per second this session (validation and checkpoint
            writing excluded, as :attr:`TrainResult.steps_per_s`).
        eta_s: ``(max_steps - step) / steps_per_s``, seconds; ``nan`` before the rate is
            known.
    """

    stage: str
    step: int
    max_steps: int
    loss: float
    lr: float
    steps_per_s: float
    eta_s: float


def read_log(out_dir: str) -> List[Dict[str, Any]]:
    """Records of ``<out_dir>/log.jsonl`` in order: ``{"step", "loss", "lr", ...}`` for
    training and ``{"step", "val": {...}}`` for validations."""
    path = os.path.join(out_dir, "log.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path, "r", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier before optimiser step ``step + 1`` (``step`` done so far).

    Linear warm-up ``(step + 1) / warmup_steps`` over ``warmup_steps`` steps, then 1
    (``"constant"``) or a half cosine from 1 to ``min_lr_ratio`` at ``max_steps``.
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_train_config(cfg: TrainConfig) -> None:
    """Range checks of :class:`TrainConfig`.

    Raises:
        ConfigError: naming the first bad ``train.*`` value.
    """
    checks = [
        ("max_steps", cfg.max_steps >= 0, ">= 0"),
        ("batch_size", cfg.batch_size >= 1, ">= 1"),
        ("num_workers", cfg.num_workers >= 0, ">= 0"),
        ("lr", cfg.lr > 0 and math.isfinite(cfg.lr), "> 0"),
        ("weight_decay", cfg.weight_decay >= 0, ">= 0"),
        ("lr_schedule", cfg.lr_schedule in LR_SCHEDULES, "one of " + ", ".join(LR_SCHEDULES)),
        ("warmup_steps", cfg.warmup_steps >= 0, ">= 0"),
        ("min_lr_ratio", 0.0 <= cfg.min_lr_ratio <= 1.0, "in [0, 1]"),
        ("grad_clip", cfg.grad_clip >= 0, ">= 0"),
        ("log_every", cfg.log_every >= 1, ">= 1"),
        ("val_every", cfg.val_every >= 0, ">= 0"),
        ("val_max_samples", cfg.val_max_samples >= 0, ">= 0"),
        ("checkpoint_every", cfg.checkpoint_every >= 0, ">= 0"),
        ("velocity_weight", cfg.velocity_weight >= 0, ">= 0"),
        ("out_dir", bool(cfg.out_dir), "a directory"),
    ]
    for name, ok, want in checks:
        if not ok:
            raise ConfigError(f"train.{name} must be {want}, got {getattr(cfg, name)!r}")


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class _StopOnSignal:
    """Context manager: SIGINT / SIGTERM ask ``trainer`` to stop after the current step."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.previous: Dict[int, Any] = {}

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is not threading.main_thread():
            log.warning("training outside the main thread: Ctrl-C / SIGTERM will not save a checkpoint")
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.trainer.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort without saving
        self.trainer.request_stop(signum)
        log.warning(
            "received %s: finishing the current step and saving a checkpoint "
            "(Ctrl-C again aborts without saving)", signal.Signals(signum).name,
        )

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class _JsonlLog:
    """``log.jsonl``: emptied on a fresh start; on resume, records after the checkpoint's
    step (left by a run that died after its last checkpoint) are dropped."""

    def __init__(self, path: str, truncate_after: int):
        self.path = path
        keep: List[str] = []
        if truncate_after > 0 and os.path.isfile(path):
            with open(path, "r", encoding="utf-8") as fh:
                keep = [ln for ln in fh if ln.strip() and json.loads(ln).get("step", 0) <= truncate_after]
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(keep)
        os.replace(tmp, path)

    def append(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------- trainer
class Trainer:
    """The training loop of every stage (see the module docstring).

    Args:
        stage: the :class:`Stage` to train.
        cfg: :class:`~rsatalker_core.config.TrainConfig` (``cfg.train``).
        seed: the run's seed (``cfg.seed``).
        run_config: the whole configuration as a plain dict, stored in checkpoints and
            compared on resume (differences are logged).
        on_progress: called in the training thread after every optimiser step (and its
            checkpoint, when one is due) with a :class:`TrainProgress`, e.g. to publish
            progress on a ROS topic. It may call :meth:`request_stop`. An exception it
            raises is logged (once) and does not stop training. The tqdm bar is unaffected.

    Raises:
        ConfigError: a ``train.*`` value out of range.
    """

    def __init__(
        self, stage: Stage, cfg: TrainConfig, seed: int = 0, run_config: Optional[Dict[str, Any]] = None,
        on_progress: Optional[Callable[[TrainProgress], None]] = None,
    ):
        check_train_config(cfg)
        self.on_progress = on_progress
        self._progress_failed = False
        self.stage = stage
        self.cfg = cfg
        self.seed = int(seed)
        self.run_config = run_config or {}
        self.stop_signal: Optional[int] = None
        self._stop = False  # the agreed stop (the same on every rank)
        self._stop_request = False  # this rank's request (signal, on_progress, stop_at)
        self._accum = int(cfg.grad_accum)
        self._amp: Optional[torch.dtype] = None

    # ------------------------------------------------------------------ paths
    @property
    def out_dir(self) -> str:
        return self.cfg.out_dir

    @property
    def checkpoint_path(self) -> str:
        """``<out_dir>/checkpoints/last.pt``."""
        return os.path.join(self.cfg.out_dir, "checkpoints", "last.pt")

    def request_stop(self, signum: Optional[int] = None) -> None:
        """Stop after the current step and save a checkpoint (what Ctrl-C / SIGTERM call).

        Under several processes the request is agreed after every step (any rank asking
        stops every rank after that same step)."""
        self._stop_request = True
        if signum is not None:
            self.stop_signal = signum

    # ------------------------------------------------------------------ checkpoints
    def _save(self, opt: torch.optim.Optimizer, sched: Any, st: Dict[str, int]) -> None:
        """Rank 0 writes ``last.pt`` atomically; every rank must call it (the RNG states of
        all ranks are gathered into it)."""
        rng_all = distributed.gather_objects(get_rng_state())
        if not distributed.is_main():
            return
        atomic_save(
            {
                "format": TRAIN_CKPT_FORMAT,
                "version": TRAIN_CKPT_VERSION,
                "stage": self.stage.name,
                "seed": self.seed,
                **st,
                "world_size": len(rng_all),
                "grad_accum": self._accum,
                "state_dict": self.stage.model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": rng_all[0],
                "rng_ranks": rng_all if len(rng_all) > 1 else None,
                "stage_state": self.stage.state_dict(),
                "train_config": dataclasses.asdict(self.cfg),
                "config": self.run_config,
            },
            self.checkpoint_path,
        )

    def _load(self, path: str, opt: torch.optim.Optimizer, sched: Any) -> Dict[str, int]:
        data = load_checkpoint(
            path, TRAIN_CKPT_FORMAT, "cpu",
            required_keys=("state_dict", "optimizer", "scheduler", "rng", "step", "epoch", "batch_in_epoch"),
        )
        if data.get("stage") != self.stage.name:
            raise CheckpointError(f"{path}: a '{data.get('stage')}' stage checkpoint, not '{self.stage.name}'")
        if int(data.get("seed", self.seed)) != self.seed:
            raise CheckpointError(
                f"{path}: trained with seed {data.get('seed')}, config has seed {self.seed}; "
                "resume with the checkpoint's seed"
            )
        try:
            self.stage.model.load_state_dict(data["state_dict"])
            opt.load_state_dict(data["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: does not match the configured model ({exc})") from exc
        sched.load_state_dict(data["scheduler"])
        self.stage.load_state_dict(data.get("stage_state") or {})
        world, rank = distributed.world_size(), distributed.rank()
        old_world = int(data.get("world_size", 1))
        if old_world == world:
            set_rng_state(data["rng_ranks"][rank] if world > 1 else data["rng"])
        else:  # another world size: fresh per-rank streams, from (seed, rank, step)
            seed_everything(derive_seed(self.seed, _RESEED_KEY, rank, int(data["step"])), self.cfg.deterministic)
        old, new = _flatten(data.get("config") or {}), _flatten(self.run_config)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed and old and new:
            log.warning("resuming with a changed config: %s", ", ".join(
                f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed))
        ckpt_cfg = data.get("train_config") or {}
        global_batch = data.get("global_batch") or int(ckpt_cfg.get("batch_size", self.cfg.batch_size))
        return {
            "step": int(data["step"]),
            "epoch": int(data["epoch"]),
            "batch_in_epoch": int(data["batch_in_epoch"]),
            "last_val_step": int(data.get("last_val_step", -1)),
            "global_batch": int(global_batch),
            "world_size": old_world,
        }

    def _grad_accum(self, st: Dict[str, int]) -> int:
        """Micro-batches per step in this process; sets ``st["global_batch"]``.

        A fresh run, or a resume at the checkpoint's world size, uses ``train.grad_accum``.
        A resume at another world size keeps the checkpoint's global batch:
        ``grad_accum = global_batch / (batch_size x world_size)``.

        Raises:
            ConfigError: that quotient is not a whole number.
        """
        cfg, world = self.cfg, distributed.world_size()
        old_world = st.pop("world_size", world)
        if "global_batch" not in st or old_world == world:
            st["global_batch"] = cfg.batch_size * world * cfg.grad_accum
            return int(cfg.grad_accum)
        g, per_pass = int(st["global_batch"]), cfg.batch_size * world
        if g % per_pass:
            raise ConfigError(
                f"the checkpoint's global batch is {g} windows ({old_world} process(es)); train.batch_size "
                f"{cfg.batch_size} x {world} process(es) does not divide it: choose a batch size or "
                "process count that does"
            )
        accum = g // per_pass
        log.warning(
            "world size %d -> %d: keeping the global batch of %d windows with train.grad_accum %d "
            "(config: %d); the items of each step stay the same, their split over ranks and the "
            "per-rank random streams do not", old_world, world, g, accum, cfg.grad_accum,
        )
        return accum

    # ------------------------------------------------------------------ steps
    def _validate(self, step: int, writer: Any, jlog: Optional["_JsonlLog"]) -> Dict[str, float]:
        model = self.stage.model
        rng = get_rng_state()
        model.eval()
        try:
            with torch.no_grad():
                out = self.stage.validate()
        finally:
            model.train()
            set_rng_state(rng)
        scalars: Dict[str, float] = {}
        for k, v in out.items():
            if isinstance(v, Tensor) and v.dim() == 3:
                writer.add_image(f"val/{k}", v.detach().float().clamp(0, 1).cpu(), step)
            else:
                scalars[k] = float(v)
                writer.add_scalar(f"val/{k}", scalars[k], step)
        if scalars and jlog is not None:
            jlog.append({"step": step, "val": scalars})
        return scalars

    def fit(self, resume: Optional[str] = None, stop_at: Optional[int] = None) -> TrainResult:
        """Train up to ``cfg.max_steps`` optimiser steps.

        Under a process group (:mod:`.distributed`, torchrun) every rank calls this; rank 0
        alone writes ``log.jsonl``, TensorBoard, checkpoints and the final weights, and the
        returned :class:`TrainResult` is the same on every rank (but ``final_weights``,
        rank 0's only).

        Args:
            resume: ``None`` starts afresh (refused when ``out_dir`` already holds a
                checkpoint); ``"auto"`` or ``""`` resumes ``<out_dir>/checkpoints/last.pt``;
                any other string is a checkpoint path.
            stop_at: stop (with a checkpoint, as if interrupted) once this many steps are
                done; for time-boxed jobs and tests.

        Returns:
            :class:`TrainResult`. The model is left in eval mode.

        Raises:
            ConfigError: a fresh start into an ``out_dir`` that holds a checkpoint; a
                ``train.amp`` the device cannot run; a world-size change whose global
                batch cannot be kept.
            CheckpointError: the resume checkpoint is missing, corrupt, of another stage
                or seed, or does not match the model.
            TrainingError: the loss became NaN / Inf (the message gives the step).
        """
        from torch.utils.tensorboard import SummaryWriter  # imported late: pulls in tensorboard

        cfg, stage = self.cfg, self.stage
        self._stop, self._stop_request, self.stop_signal = False, False, None
        rank, main = distributed.rank(), distributed.is_main()
        # Rank 0 keeps the run's seed (one process trains as before); other ranks their own.
        seed_everything(self.seed if rank == 0 else derive_seed(self.seed, _RANK_KEY, rank), cfg.deterministic)
        self._amp = precision.autocast_dtype(cfg.amp, self._device())
        opt = torch.optim.AdamW(stage.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, self.cfg))
        st = self._start(resume, opt, sched)
        self._accum = self._grad_accum(st)
        loss_fn = distributed.DataParallelLoss(stage)
        jlog = _JsonlLog(os.path.join(cfg.out_dir, "log.jsonl"), truncate_after=st["step"]) if main else None
        writer = (SummaryWriter(os.path.join(cfg.out_dir, "tb"), purge_step=st["step"] + 1 if st["step"] else None)
                  if main else _NullWriter())
        meter = _Meter()
        last_loss: Optional[float] = None
        last_val: Dict[str, float] = {}
        stage.model.train()
        try:
            with _StopOnSignal(self), _progress(cfg, st["step"], stage.name, main) as bar:
                for micro in self._batches(st):
                    loss_value, scalars, lr = self._step(micro, opt, sched, st["step"] + 1, loss_fn)
                    if loss_fn.refresh():
                        log.info("step %d: trainable parameters changed; DDP re-wrapped", st["step"] + 1)
                    st["step"] += 1
                    st["batch_in_epoch"] += 1
                    step = st["step"]
                    meter.add(loss_value, scalars)
                    bar.update(1)
                    if step % cfg.log_every == 0 or step == cfg.max_steps:
                        rec = meter.record(step, lr)
                        rec.update(distributed.mean_over_ranks({k: v for k, v in rec.items() if k not in ("step", "lr", "loss")}))
                        for k, v in rec.items():
                            if k != "step":
                                writer.add_scalar(f"train/{k}", v, step)
                        if jlog is not None:
                            jlog.append(rec)
                        last_loss = rec["loss"]
                        bar.set_postfix(loss=f"{last_loss:.4g}")
                    if cfg.val_every > 0 and step % cfg.val_every == 0:
                        last_val = self._validate(step, writer, jlog)
                        st["last_val_step"] = step
                    if cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0:
                        self._save(opt, sched, st)
                    meter.pause()
                    if main:
                        self._report(step, loss_value, lr, meter)
                    if stop_at is not None and step >= stop_at:
                        self._stop_request = True
                    self._stop = distributed.any_true(self._stop_request)
                completed = st["step"] >= cfg.max_steps
                if completed and cfg.val_every > 0 and st["last_val_step"] != st["step"]:
                    last_val = self._validate(st["step"], writer, jlog)
                    st["last_val_step"] = st["step"]
                self._save(opt, sched, st)
                distributed.barrier()  # no rank leaves before rank 0 has written the checkpoint
        finally:
            writer.close()
            stage.model.eval()
        final = stage.finalize(cfg.out_dir, st["step"]) if completed and main else None
        distributed.barrier()
        if not completed and main:
            log.warning(
                "stopped at step %d of %d; checkpoint %s (resume with --resume)",
                st["step"], cfg.max_steps, self.checkpoint_path,
            )
        rate = meter.total_steps / meter.total_time if meter.total_time > 0 else 0.0
        return TrainResult(
            step=st["step"], loss=last_loss, interrupted=not completed, signal=self.stop_signal,
            checkpoint=self.checkpoint_path, final_weights=final, val=last_val,
            steps_per_s=distributed.mean_over_ranks({"r": rate})["r"],
        )

    def _device(self) -> torch.device:
        """The stage's device (its ``device`` attribute, else its first parameter's)."""
        dev = getattr(self.stage, "device", None)
        if dev is not None:
            return torch.device(dev)
        p = next(iter(self.stage.model.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    def _report(self, step: int, loss: float, lr: float, meter: "_Meter") -> None:
        """Call ``on_progress`` (if any) with this step's :class:`TrainProgress`."""
        if self.on_progress is None:
            return
        rate = meter.total_steps / meter.total_time if meter.total_time > 0 else 0.0
        eta = (self.cfg.max_steps - step) / rate if rate > 0 else float("nan")
        try:
            self.on_progress(TrainProgress(
                stage=self.stage.name, step=step, max_steps=self.cfg.max_steps, loss=loss,
                lr=lr, steps_per_s=rate, eta_s=max(0.0, eta) if math.isfinite(eta) else eta,
            ))
        except Exception as exc:  # a reporting failure never costs the run
            if not self._progress_failed:
                log.warning("on_progress callback failed (training continues): %s: %s", type(exc).__name__, exc)
                self._progress_failed = True

    def _start(self, resume: Optional[str], opt: torch.optim.Optimizer, sched: Any) -> Dict[str, int]:
        """Fresh state, or the checkpoint's (``resume``); creates ``out_dir``."""
        st: Dict[str, int] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "last_val_step": -1}
        if resume is not None:
            path = self.checkpoint_path if resume in ("", "auto") else resume
            if not os.path.isfile(path):
                raise CheckpointError(f"{path}: no checkpoint to resume (run without --resume to start)")
            st = self._load(path, opt, sched)
            log.info("resumed %s at step %d (epoch %d, batch %d)", path, st["step"], st["epoch"], st["batch_in_epoch"])
        elif os.path.exists(self.checkpoint_path):
            raise ConfigError(
                f"{self.checkpoint_path} exists: pass --resume to continue that run, or set "
                "another train.out_dir"
            )
        distributed.barrier()  # every rank has checked out_dir before rank 0 can write into it
        os.makedirs(os.path.join(self.cfg.out_dir, "checkpoints"), exist_ok=True)
        return st

    def _batches(self, st: Dict[str, int]) -> Iterator[List[Any]]:
        """The micro-batches of each optimiser step (``grad_accum`` of them, this rank's
        share of the global batch) from the sampler position in ``st`` on, across epochs,
        until ``max_steps`` or an agreed stop (``st["epoch"]`` advances at each epoch's end)."""
        cfg, accum, rank = self.cfg, self._accum, distributed.rank()
        dataset = self.stage.train_dataset()
        sampler = ResumableBatchSampler(
            len(dataset), cfg.batch_size, self.seed,
            rank=rank, world_size=distributed.world_size(), grad_accum=accum,
        )
        generator = torch.Generator()
        loader = DataLoader(
            dataset, batch_sampler=sampler, collate_fn=self.stage.collate_fn,
            num_workers=cfg.num_workers, worker_init_fn=seed_worker, generator=generator,
        )
        while st["step"] < cfg.max_steps and not self._stop:
            sampler.set_epoch(st["epoch"], st["batch_in_epoch"])
            generator.manual_seed(derive_seed(self.seed, _LOADER_KEY, st["epoch"], *([rank] if rank else [])))
            it = iter(loader)
            try:
                while st["step"] < cfg.max_steps and not self._stop:
                    micro: List[Any] = []
                    try:
                        for _ in range(accum):
                            micro.append(next(it))
                    except StopIteration:
                        break
                    except Exception:
                        if self._stop_request:  # a worker died of the same signal: the state is intact
                            return
                        raise
                    yield micro
                else:
                    return
            finally:
                del it  # shuts DataLoader workers down
            st["epoch"] += 1
            st["batch_in_epoch"] = 0

    def _step(
        self, micro: List[Any], opt: torch.optim.Optimizer, sched: Any, step: int,
        loss_fn: "distributed.DataParallelLoss",
    ) -> Tuple[float, Dict[str, Scalar], float]:
        """One optimiser step over this rank's micro-batches (gradients accumulated, then
        averaged over the ranks); returns ``(loss averaged over the global batch's micro-
        batches, scalars of this rank, learning rate used)``."""
        opt.zero_grad(set_to_none=True)
        n = len(micro)
        total = 0.0
        sums: Dict[str, Scalar] = {}
        dev = self._device()
        for i, batch in enumerate(micro):
            with loss_fn.accumulating(sync=i == n - 1):
                with precision.autocast(self._amp, dev):
                    loss, scalars = loss_fn(batch)
                # Agreed over the ranks before backward, so that all raise together.
                loss_value = distributed.mean_over_ranks({"loss": float(loss.detach())})["loss"]
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"training loss is {loss_value} at step {step} (lower train.lr or check the "
                        f"data); last checkpoint: {self.checkpoint_path}"
                    )
                (loss / n if n > 1 else loss).backward()
            if n == 1:
                total, sums = loss_value, dict(scalars)
            else:
                total += loss_value / n
                for k, v in scalars.items():
                    sums[k] = sums.get(k, 0.0) + (v.detach() if isinstance(v, Tensor) else float(v)) / n
        scalars = sums
        if self.cfg.grad_clip > 0:
            params = [p for g in opt.param_groups for p in g["params"]]
            scalars = dict(scalars, grad_norm=torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
        lr = float(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        return total, scalars, lr


class _NullWriter:
    """TensorBoard writer of the ranks other than 0: writes nothing."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _Meter:
    """Means of the training scalars over a logging interval, and the step rate."""

    def __init__(self) -> None:
        self.sums: Dict[str, Any] = {}
        self.n = 0
        self.t_last = time.perf_counter()
        self.t_interval = 0.0
        self.total_steps = 0
        self.total_time = 0.0

    def add(self, loss: float, scalars: Dict[str, Scalar]) -> None:
        now = time.perf_counter()
        self.t_interval += now - self.t_last
        self.total_time += now - self.t_last
        self.t_last = now
        self.n += 1
        self.total_steps += 1
        self.sums["loss"] = self.sums.get("loss", 0.0) + loss
        for k, v in scalars.items():
            self.sums[k] = self.sums.get(k, 0.0) + (v.detach() if isinstance(v, Tensor) else float(v))

    def record(self, step: int, lr: float) -> Dict[str, Any]:
        rec: Dict[str, Any] = {"step": step}
        rec.update({k: float(v) / self.n for k, v in self.sums.items()})
        rec["lr"] = lr
        rec["steps_per_s"] = self.n / max(self.t_interval, 1e-9)
        self.sums, self.n, self.t_interval = {}, 0, 0.0
        return rec

    def pause(self) -> None:
        """Exclude the time since the last step (validation, checkpoints) from the rate."""
        self.t_last = time.perf_counter()


def _progress(cfg: TrainConfig, initial: int, name: str, main: bool = True) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=cfg.max_steps, initial=initial, desc=f"train {name}", unit="step",
        dynamic_ncols=True, disable=not (cfg.progress and main),
    )
