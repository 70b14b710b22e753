"""The training batch sampler: resumable, seeded per epoch, and data-parallel.

One *global batch* is what one optimiser step sees across every process:
``batch_size x world_size x grad_accum`` dataset indices (docs/training.md). Each epoch is a
fresh permutation of the dataset (``torch.randperm`` on a generator seeded with
``derive_seed(seed, 1, epoch)``, so every rank draws the same one without communicating),
cut into global batches; process ``rank`` takes its contiguous share of each global batch
and splits it into ``grad_accum`` micro-batches of ``batch_size``. A run with one process
and ``grad_accum = A`` therefore sees, step for step, the same items as ``A`` processes with
``grad_accum = 1`` (what makes their loss trajectories equal, test/test_ddp.py).

The last global batch of an epoch: with one process and no accumulation it is simply
smaller (the single-process behaviour, unchanged). With several processes or micro-batches
every rank must run the same number of forward/backward passes, so it is filled up with
the epoch's first indices (as ``torch.utils.data.DistributedSampler`` pads), and every
global batch is full.

The position inside an epoch is counted in global batches (optimiser steps), so a
checkpoint's ``(epoch, batch_in_epoch)`` means the same thing at any world size.
"""

from __future__ import annotations

from typing import Iterator, List

import numpy as np
import torch
from torch.utils.data import Sampler

from rsatalker_core.errors import ConfigError

_SAMPLER_KEY = 1


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for one purpose (``keys``, e.g. ``(SAMPLER, epoch)``) of run ``seed``.

    Uses numpy's ``SeedSequence`` so nearby seeds and epochs give unrelated streams.
    """
    ss = np.random.SeedSequence([int(seed) % (1 << 63)] + [int(k) for k in keys])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class ResumableBatchSampler(Sampler):
    """Micro-batches of dataset indices for one process, whose order depends only on
    ``(seed, epoch)``, and which can start part-way through an epoch (the resume position).

    Args:
        num_items: dataset length, >= 1.
        batch_size: indices per micro-batch (``train.batch_size``), >= 1.
        seed: the run's seed.
        shuffle: permute each epoch; ``False`` keeps dataset order.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of data-parallel processes, >= 1.
        grad_accum: micro-batches per optimiser step in each process, >= 1.

    Raises:
        ConfigError: a value out of range (``num_items``, ``batch_size``, ``rank``, ...).
    """

    def __init__(
        self, num_items: int, batch_size: int, seed: int, shuffle: bool = True,
        rank: int = 0, world_size: int = 1, grad_accum: int = 1,
    ):
        if num_items < 1:
            raise ConfigError(f"training dataset is empty ({num_items} items)")
        if batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {batch_size}")
        if grad_accum < 1:
            raise ConfigError(f"train.grad_accum must be >= 1, got {grad_accum}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in a world of {world_size} process(es)")
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank, self.world_size, self.grad_accum = int(rank), int(world_size), int(grad_accum)
        self.epoch = 0
        self.start_batch = 0

    @property
    def global_batch(self) -> int:
        """Indices per optimiser step over all processes: ``batch_size x world_size x grad_accum``."""
        return self.batch_size * self.world_size * self.grad_accum

    @property
    def batches_per_epoch(self) -> int:
        """Global batches (optimiser steps) in one full epoch: ``ceil(num_items / global_batch)``."""
        return -(-self.num_items // self.global_batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch ``epoch`` from its global batch ``start_batch`` (0-based) on."""
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def epoch_order(self, epoch: int) -> List[int]:
        """The epoch's permutation of ``range(num_items)`` (identical on every rank)."""
        if not self.shuffle:
            return list(range(self.num_items))
        g = torch.Generator().manual_seed(derive_seed(self.seed, _SAMPLER_KEY, epoch))
        return torch.randperm(self.num_items, generator=g).tolist()

    def epoch_batches(self, epoch: int) -> List[List[int]]:
        """All global batches of ``epoch``, in order (the last one padded when
        ``world_size x grad_accum > 1``, see the module doc)."""
        order, G = self.epoch_order(epoch), self.global_batch
        batches = [order[i : i + G] for i in range(0, self.num_items, G)]
        if self.world_size * self.grad_accum > 1 and len(batches[-1]) < G:
            pad = G - len(batches[-1])
            batches[-1] = batches[-1] + (order * (-(-pad // len(order))))[:pad]
        return batches

    def micro_batches(self, global_batch: List[int]) -> List[List[int]]:
        """This rank's ``grad_accum`` micro-batches of one global batch (its contiguous
        share, rank-major)."""
        share = self.batch_size * self.grad_accum
        mine = global_batch[self.rank * share : (self.rank + 1) * share]
        return [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]

    def __iter__(self) -> Iterator[List[int]]:
        for gb in self.epoch_batches(self.epoch)[self.start_batch :]:
            yield from self.micro_batches(gb)

    def __len__(self) -> int:
        """Micro-batches left in the epoch for this rank."""
        return max(0, self.batches_per_epoch - self.start_batch) * self.grad_accum
