"""The generic trainer: exact resume (bit for bit on the CPU), SIGTERM through the CLI loses
nothing, validation never changes the trajectory, and a non-motion stage logs images."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from rsatalker_core.io.checkpoint import load_checkpoint
from rsatalker_core.config import TrainConfig, load_config
from rsatalker_core.errors import CheckpointError, ConfigError
from rsatalker_core.training import TRAIN_CKPT_FORMAT, ResumableBatchSampler, Stage, Trainer, read_log
from rsatalker_core.training.stage1 import MotionStage

from conftest import REPO
from test_training_stage1 import PRESET, make_excerpt

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_STEPS = 8
# 50-frame windows every 25 frames of the 200-frame excerpt: 7 windows, batches of 3 ->
# 3 batches per epoch (3, 3, 1); dropout on, so the RNG state matters.
SMALL = {
    "data.window_frames": 50, "data.stride_frames": 25, "train.batch_size": 3,
    "train.max_steps": MAX_STEPS, "motion.dropout": 0.1, "train.val_every": 0,
    "train.checkpoint_every": 0, "train.log_every": 1, "train.warmup_steps": 2,
}


@pytest.fixture(scope="module")
def excerpt(dualtalk_sample, tmp_path_factory):
    return make_excerpt(dualtalk_sample, tmp_path_factory.mktemp("excerpt"))


def _cfg(excerpt, out_dir, **over):
    return load_config(str(PRESET), {**SMALL, "data.root": str(excerpt), "train.out_dir": str(out_dir), **over})


def _train(cfg, resume=None, stop_at=None):
    return Trainer(MotionStage(cfg), cfg.train, seed=cfg.seed).fit(resume=resume, stop_at=stop_at)


def _losses(out_dir):
    return [(r["step"], r["loss"], r["grad_norm"]) for r in read_log(str(out_dir)) if "val" not in r]


@pytest.fixture(scope="module")
def reference(one_torch_thread, excerpt, tmp_path_factory):
    """The uninterrupted run: its log and final checkpoint."""
    out = tmp_path_factory.mktemp("reference")
    result = _train(_cfg(excerpt, out))
    assert result.step == MAX_STEPS and not result.interrupted
    return {"losses": _losses(out), "ckpt": load_checkpoint(result.checkpoint, TRAIN_CKPT_FORMAT)}


# Stop at 3 (an epoch boundary) or 4 (mid-epoch); 2 DataLoader workers reading a feature
# cache (filled first in the main process) must give the same batches and losses.
@pytest.mark.parametrize("stop_at,workers", [(3, 0), (4, 0), (4, 2)])
def test_resume_is_bit_exact(excerpt, tmp_path, reference, stop_at, workers):
    over = {"train.num_workers": workers, "data.feature_cache": str(tmp_path / "features")} if workers else {}
    cfg = _cfg(excerpt, tmp_path, **over)
    first = _train(cfg, stop_at=stop_at)
    assert first.interrupted and first.step == stop_at and first.final_weights is None
    ckpt = load_checkpoint(first.checkpoint, TRAIN_CKPT_FORMAT)
    # Sampler position: all 3 batches of epoch 0 consumed, or 1 batch of epoch 1.
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == {3: (3, 0, 3), 4: (4, 1, 1)}[stop_at]
    assert {"python", "numpy", "torch"} <= set(ckpt["rng"])
    assert {"optimizer", "scheduler", "state_dict"} <= set(ckpt)

    second = _train(cfg, resume="auto")
    assert second.step == MAX_STEPS and not second.interrupted
    # Loss (and gradient norm) at every step, k + 1 included, equal the uninterrupted run's.
    assert _losses(tmp_path) == reference["losses"]
    assert [s for s, _, _ in reference["losses"]] == list(range(1, MAX_STEPS + 1))
    final = load_checkpoint(second.checkpoint, TRAIN_CKPT_FORMAT)
    for name, value in reference["ckpt"]["state_dict"].items():
        assert torch.equal(final["state_dict"][name], value), name
    # A completed run resumed again does nothing more.
    again = _train(cfg, resume="auto")
    assert again.step == MAX_STEPS and _losses(tmp_path) == reference["losses"]


def test_validation_does_not_change_the_trajectory(excerpt, tmp_path, reference):
    cfg = _cfg(excerpt, tmp_path, **{"train.val_every": 3, "train.val_split": ""})
    result = _train(cfg)
    assert _losses(tmp_path) == reference["losses"]
    assert [r["step"] for r in read_log(str(tmp_path)) if "val" in r] == [3, 6, 8]
    assert "MSE-POSE" in result.val


def test_refuses_overwrite_and_mismatched_resume(excerpt, tmp_path):
    cfg = _cfg(excerpt, tmp_path, **{"train.max_steps": 1})
    _train(cfg)
    with pytest.raises(ConfigError, match="--resume"):
        _train(cfg)
    with pytest.raises(CheckpointError, match="seed"):
        _train(_cfg(excerpt, tmp_path, **{"train.max_steps": 1, "seed": 5}), resume="auto")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _train(_cfg(excerpt, tmp_path / "empty"), resume="auto")
    with pytest.raises(CheckpointError, match="does not match"):
        _train(_cfg(excerpt, tmp_path, **{"train.max_steps": 1, "motion.d_model": 48}), resume="auto")


def test_sigterm_saves_checkpoint_and_resume_finishes_like_uninterrupted(excerpt, tmp_path):
    steps = 120
    sets = {**SMALL, "train.max_steps": steps, "data.root": str(excerpt), "train.out_dir": str(tmp_path / "cli")}
    cmd = [sys.executable, "-m", "rsatalker_core.cli", "train", "--stage", "1", "--config", str(PRESET)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_path = tmp_path / "cli" / "log.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log_path.exists() and len(log_path.read_text().splitlines()) >= 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "training ended before it could be interrupted"
        t1 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        t2 = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped at step" in out and "--resume" in out
    ckpt = load_checkpoint(str(tmp_path / "cli" / "checkpoints" / "last.pt"), TRAIN_CKPT_FORMAT)
    k = ckpt["step"]
    assert 3 <= k < steps
    assert [s for s, _, _ in _losses(tmp_path / "cli")] == list(range(1, k + 1))

    done = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    t3 = time.monotonic()
    print(f"start->signal {t1 - t0:.1f}s, signal->exit {t2 - t1:.1f}s, resume {t3 - t2:.1f}s")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli" / "motion_stage1.pt").is_file()

    # The same run uninterrupted (in this process, also on one thread).
    ref_cfg = load_config(str(PRESET), {**sets, "train.out_dir": str(tmp_path / "ref")})
    _train(ref_cfg)
    interrupted, uninterrupted = _losses(tmp_path / "cli"), _losses(tmp_path / "ref")
    assert [s for s, _, _ in interrupted] == list(range(1, steps + 1))
    assert interrupted[-1] == uninterrupted[-1]  # the same final loss, bit for bit
    assert interrupted == uninterrupted
    print(f"SIGTERM at step {k}; final loss {interrupted[-1][1]!r} in both runs")


class _Toy(Stage):
    """A stage that has nothing to do with motion: 8-D linear regression with an image."""

    name = "toy"

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(40, 8, generator=g)
        self.data = TensorDataset(x, x @ torch.randn(8, 1, generator=g))
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.Linear(16, 1))

    def train_dataset(self):
        return self.data

    def loss(self, batch):
        x, y = batch
        loss = nn.functional.mse_loss(self.model(x), y)
        return loss, {"abs": (self.model(x) - y).abs().mean().detach()}

    def validate(self):
        x, y = self.data.tensors
        return {"mse": float(nn.functional.mse_loss(self.model(x), y)), "picture": torch.rand(3, 6, 5)}


def test_generic_stage_logs_scalars_and_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = TrainConfig(out_dir=str(tmp_path), max_steps=30, batch_size=8, lr=0.05, log_every=5,
                      val_every=10, checkpoint_every=10, progress=False)
    toy = _Toy()
    with torch.no_grad():
        untrained = toy.model.eval() and toy.validate()["mse"]
    result = Trainer(toy, cfg, seed=3).fit()
    print(f"toy regression: val MSE {untrained:.3f} -> {result.val['mse']:.4f}")
    assert result.val["mse"] < untrained / 4
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert "val/picture" in acc.Tags()["images"]
    assert [e.step for e in acc.Images("val/picture")] == [10, 20, 30]
    assert {"train/loss", "train/abs", "val/mse"} <= set(acc.Tags()["scalars"])
    # A checkpoint of one stage is refused by another.
    with pytest.raises(CheckpointError, match="toy"):
        Trainer(_FakeMotionName(), cfg, seed=3).fit(resume="auto")


class _FakeMotionName(_Toy):
    name = "motion"


def test_batch_sampler_order_and_resume_position():
    s = ResumableBatchSampler(7, 3, seed=11)
    e0, e1 = s.epoch_batches(0), s.epoch_batches(1)
    assert [len(b) for b in e0] == [3, 3, 1] and sorted(sum(e0, [])) == list(range(7))
    assert e0 != e1 and e0 == ResumableBatchSampler(7, 3, seed=11).epoch_batches(0)
    assert e0 != ResumableBatchSampler(7, 3, seed=12).epoch_batches(0)
    s.set_epoch(1, start_batch=2)
    assert list(s) == e1[2:] and len(s) == 1
    with pytest.raises(ConfigError, match="batch_size"):
        ResumableBatchSampler(7, 0, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate(e1)), np.arange(7))
