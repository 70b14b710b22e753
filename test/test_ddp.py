"""Data-parallel training on the CPU with the gloo backend and 2 processes (issue 13).

One ``torchrun --nproc_per_node=2`` launch of this file (``__main__`` below, the worker) runs
every multi-process scenario in sequence, so the two processes start once (start-up is most
of the cost on a 2-core CI machine):

* **a**: stage 1 on 50-frame windows of the real DualTalk excerpt, dropout on, the speech
  feature cache filled once, sharded by rank; **b**: the same run stopped at step 3 and
  resumed (its step-3 checkpoint is also kept for the world-size-change test); **e**: the
  same run with dropout off (compared with one process and the same global batch);
* **c**: stage 2 with densification every 2 steps (the Gaussian count and binding of both
  ranks compared);
* **d**: ``rsatalker train`` (the CLI) for many steps, stopped by a SIGTERM to the whole
  process group (torchrun and both workers) once it has logged 3 steps.

The tests then check what the ranks wrote. Tolerance of the 1-vs-2-process comparison:
relative 1e-4 on every logged loss, for float32 rounding (DDP averages the two gradients
in one all-reduce, one process accumulates them in two backward passes); measured on this
CPU: 0, the trajectories are bit-identical.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rsatalker_core.config import load_config
from rsatalker_core.errors import ConfigError
from rsatalker_core.io.checkpoint import load_checkpoint
from rsatalker_core.training import TRAIN_CKPT_FORMAT, ResumableBatchSampler, Trainer, read_log
from rsatalker_core.training.precision import autocast_dtype

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PRESET = REPO / "config" / "train_stage1_test.yaml"
STEPS = 6
STOP_AT = 3
# 50-frame windows every 25 frames of the 200-frame excerpt: 7 windows; one window per
# process and step (global batch 2), so an epoch is 4 steps (the last batch padded).
SMALL = {
    "data.window_frames": 50, "data.stride_frames": 25, "train.batch_size": 1,
    "train.max_steps": STEPS, "motion.dropout": 0.1, "train.val_every": 0,
    "train.checkpoint_every": 0, "train.log_every": 1, "train.warmup_steps": 2,
}
LOSS_RTOL = 1e-4


def _cfg(excerpt, out_dir, **over):
    return load_config(str(PRESET), {**SMALL, "data.root": str(excerpt), "train.out_dir": str(out_dir), **over})


def _losses(out_dir):
    return [(r["step"], r["loss"]) for r in read_log(str(out_dir)) if "val" not in r]


# --------------------------------------------------------------------------- worker (torchrun)
def _stage2_cfg(out_dir):
    return load_config(None, {
        "device": "cpu", "render.width": 24, "render.height": 24, "render.backend": "torch",
        "social.embed_dim": 8, "social.hidden_dim": 8, "social.time_dim": 4, "motion.d_model": 8,
        "motion.checkpoint": "", "train.out_dir": str(out_dir), "train.batch_size": 1, "train.log_every": 1,
        "train.val_every": 0, "train.checkpoint_every": 0, "train.grad_clip": 0.0, "train.progress": False,
        "train.max_steps": 4, "train.stage2.init_avatar": "anchors",
        "train.stage2.densify.enabled": True, "train.stage2.densify.refine_start_iter": 0,
        "train.stage2.densify.refine_every": 2, "train.stage2.densify.grow_grad": 1e-9,
        "train.stage2.densify.max_gaussians": 10100, "train.stage2.densify.reset_every": 0,
        "train.stage2.densify.prune_opa": 0.005,
    })


def _digest(t):
    return hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _worker(excerpt: str, out: str) -> int:  # pragma: no cover - runs in the torchrun processes
    from rsatalker_core.cli import main
    from rsatalker_core.training import distributed
    from rsatalker_core.training.stage1 import MotionStage
    from rsatalker_core.training.stage2 import RendererStage

    sys.path.insert(0, str(HERE))
    from test_training_stage2 import _scene  # the teacher-student frames of the stage-2 tests

    torch.set_num_threads(1)
    distributed.init_distributed("cpu")
    rank, out = distributed.rank(), Path(out)
    res = {"world_size": distributed.world_size()}
    cache = out / "features"

    stage = MotionStage(_cfg(excerpt, out / "a", **{"data.feature_cache": str(cache)}))
    res["fill"] = dict(stage.train_data.features.stats)
    Trainer(stage, stage.cfg.train, seed=0).fit()

    cfg_b = _cfg(excerpt, out / "b", **{"data.feature_cache": str(cache)})
    r = Trainer(MotionStage(cfg_b), cfg_b.train, seed=0).fit(stop_at=STOP_AT)
    res["b_stop"] = [r.step, r.interrupted]
    if rank == 0:
        (out / "b_step3.pt").write_bytes(Path(r.checkpoint).read_bytes())
    distributed.barrier()
    Trainer(MotionStage(cfg_b), cfg_b.train, seed=0).fit(resume="auto")

    cfg_e = _cfg(excerpt, out / "e", **{"motion.dropout": 0.0})
    Trainer(MotionStage(cfg_e), cfg_e.train, seed=0).fit()

    cfg_c = _stage2_cfg(out / "c")
    data, *_ = _scene(cfg_c)
    st2 = RendererStage(cfg_c, train_data=data)
    n0 = st2.avatar.num_gaussians
    try:
        Trainer(st2, cfg_c.train, seed=0).fit()
    finally:
        st2.close()
    av = st2.avatar
    res["densify"] = {
        "initial": n0, "final": av.num_gaussians, "totals": st2.densify_totals,
        "binding": _digest(av.binding), "means": _digest(av.means_local), "colors": _digest(av.colors_logit),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(res))
    distributed.barrier()

    # d: the CLI, stopped by SIGTERM to the process group (sent by the test).
    argv = ["train", "--stage", "1", "--config", str(PRESET)]
    for k, v in {**SMALL, "train.max_steps": 100000, "data.root": excerpt, "train.out_dir": str(out / "d"),
                 "data.feature_cache": str(cache)}.items():
        argv += ["--set", f"{k}={v}"]
    return main(argv)


# --------------------------------------------------------------------------- the launch
@pytest.fixture(scope="module")
def launch(dualtalk_sample, tmp_path_factory):
    """Run the worker on 2 gloo processes; SIGTERM the process group during run d."""
    from test_training_stage1 import make_excerpt

    excerpt = make_excerpt(dualtalk_sample, tmp_path_factory.mktemp("excerpt"))
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(Path(__file__).resolve()), str(excerpt), str(out)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    log_d = out / "d" / "log.jsonl"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if log_d.exists() and len(log_d.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the launch ended before run d could be interrupted:\n" + proc.stdout.read()
        t1 = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)  # torchrun and both workers
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"2-process launch: {t1 - t0:.1f} s to run d's 3rd step, {time.monotonic() - t1:.1f} s to stop")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"out": out, "excerpt": excerpt, "ranks": ranks, "output": output, "rc": proc.returncode}


def test_two_processes_match_one_process_with_the_same_global_batch(launch, tmp_path):
    assert [r["world_size"] for r in launch["ranks"]] == [2, 2]
    two = _losses(launch["out"] / "e")
    # One process, one window per micro-batch, 2 micro-batches per step: global batch 2.
    cfg = _cfg(launch["excerpt"], tmp_path, **{"motion.dropout": 0.0, "train.grad_accum": 2})
    from rsatalker_core.training.stage1 import MotionStage

    Trainer(MotionStage(cfg), cfg.train, seed=0).fit()
    one = _losses(tmp_path)
    assert [s for s, _ in one] == [s for s, _ in two] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([l for _, l in two], [l for _, l in one], rtol=LOSS_RTOL)
    print("max relative difference:", max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(two, one)))
    # the loss moves (the comparison is not of a constant)
    assert len({round(l, 6) for _, l in one}) == STEPS


def test_resume_of_a_two_process_run_is_exact(launch):
    out = launch["out"]
    assert all(r["b_stop"] == [STOP_AT, True] for r in launch["ranks"])
    assert _losses(out / "b") == _losses(out / "a")  # bit for bit, step 4 right after the resume included
    a = load_checkpoint(str(out / "a" / "checkpoints" / "last.pt"), TRAIN_CKPT_FORMAT)
    b = load_checkpoint(str(out / "b" / "checkpoints" / "last.pt"), TRAIN_CKPT_FORMAT)
    assert (a["step"], a["world_size"], a["global_batch"]) == (STEPS, 2, 2)
    for name, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][name], value), name
    # both ranks' RNG states are in the checkpoint, and they differ (per-rank dropout streams)
    assert len(a["rng_ranks"]) == 2 and not torch.equal(a["rng_ranks"][0]["torch"], a["rng_ranks"][1]["torch"])


def test_feature_cache_built_once_sharded_by_rank(launch):
    fill = [r["fill"] for r in launch["ranks"]]
    entries = list((launch["out"] / "features").rglob("*.npy"))
    # 7 windows x 2 speakers, each computed by exactly one rank, nothing read twice before training
    assert len(entries) == 14
    assert sum(f["misses"] for f in fill) == 14 and all(f["misses"] > 0 for f in fill)
    arr = np.load(entries[0], mmap_mode="r")  # memory-mappable entries
    assert isinstance(arr, np.memmap) and arr.dtype == np.float32 and arr.shape[0] == 50


def test_world_size_change_keeps_the_global_batch(launch, tmp_path):
    from rsatalker_core.training.stage1 import MotionStage

    ckpt = launch["out"] / "b_step3.pt"
    cfg = _cfg(launch["excerpt"], tmp_path)
    trainer = Trainer(MotionStage(cfg), cfg.train, seed=0)
    result = trainer.fit(resume=str(ckpt))  # 2 processes x 1 -> 1 process x 2 micro-batches
    assert result.step == STEPS and trainer._accum == 2
    final = load_checkpoint(result.checkpoint, TRAIN_CKPT_FORMAT)
    assert (final["world_size"], final["grad_accum"], final["global_batch"]) == (1, 2, 2)
    two = dict(_losses(launch["out"] / "b"))
    one = dict(_losses(tmp_path))
    assert sorted(one) == list(range(STOP_AT + 1, STEPS + 1))
    # the same windows at each step; only the per-rank dropout streams differ
    assert all(abs(one[s] - two[s]) < 0.5 * two[s] for s in one)
    with pytest.raises(ConfigError, match="global batch"):
        bad = _cfg(launch["excerpt"], tmp_path / "bad", **{"train.batch_size": 3})
        Trainer(MotionStage(bad), bad.train, seed=0).fit(resume=str(ckpt))


def test_densification_stays_in_step_across_ranks(launch):
    d0, d1 = (r["densify"] for r in launch["ranks"])
    assert d0 == d1  # count, totals, binding and the Gaussians themselves, bit for bit
    t = d0["totals"]
    assert t["cloned"] + t["split"] > 0 and d0["final"] != d0["initial"], d0


def test_sigterm_to_the_process_group_leaves_one_loadable_checkpoint(launch):
    out, text = launch["out"] / "d", launch["output"]
    ckpt_dir = out / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last.pt"], text  # no temporaries
    ckpt = load_checkpoint(str(ckpt_dir / "last.pt"), TRAIN_CKPT_FORMAT)
    k = ckpt["step"]
    assert 3 <= k < 100000 and ckpt["world_size"] == 2
    assert [s for s, _ in _losses(out)] == list(range(1, k + 1)), text  # every rank stopped at k
    assert text.count(f"stopped at step {k}/") == 1 and "--resume" in text, text  # rank 0 reports


def test_sampler_splits_each_global_batch_over_ranks_and_micro_batches():
    one = ResumableBatchSampler(7, 1, seed=3, grad_accum=2)
    ranks = [ResumableBatchSampler(7, 1, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        for s in [one, *ranks]:
            s.set_epoch(epoch)
        a, r0, r1 = list(one), list(ranks[0]), list(ranks[1])
        assert len(a) == 8 and len(r0) == len(r1) == 4  # 4 steps, the last padded
        assert a[0::2] == r0 and a[1::2] == r1  # step k: the same two windows
        assert sorted(sum(a[:7], [])) == list(range(7))
        assert one.epoch_batches(epoch)[-1][1] == one.epoch_order(epoch)[0]  # padded from the start
    # one process without accumulation: unchanged, the last batch smaller
    assert [len(b) for b in ResumableBatchSampler(7, 3, seed=3).epoch_batches(0)] == [3, 3, 1]
    with pytest.raises(ConfigError, match="rank"):
        ResumableBatchSampler(7, 1, seed=3, rank=2, world_size=2)


def test_mixed_precision_off_on_cpu_and_rasterizer_float32_under_autocast():
    assert autocast_dtype("auto", "cpu") is None and autocast_dtype("off", "cpu") is None
    with pytest.raises(ConfigError, match="bf16"):
        autocast_dtype("bf16", "cpu")
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        assert autocast_dtype("auto", "cuda") is torch.bfloat16
    from rsatalker_core.avatar.gaussians import GaussianAvatar
    from rsatalker_core.head.flame import FlameModel
    from rsatalker_core.render.camera import default_camera
    from rsatalker_core.training.losses import renderer_loss

    cfg = load_config(None, {"render.width": 16, "render.height": 16})
    flame = FlameModel(cfg.flame)
    with torch.no_grad():
        v = flame.forward_motion(torch.zeros(1, 56))[0].float()
    avatar = GaussianAvatar.from_mesh(v, flame.faces)
    vm, K = default_camera(cfg.render)
    motion = torch.zeros(1, 56, requires_grad=True)
    ref, _, ref_rgb = renderer_loss(flame, avatar, motion, torch.rand(1, 16, 16, 3), vm, K, backend="torch")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what train.amp=bf16 does on CUDA
        loss, _, rgb = renderer_loss(flame, avatar, motion, torch.rand(1, 16, 16, 3), vm, K, backend="torch")
    assert rgb.dtype == torch.float32 and loss.dtype == torch.float32
    torch.testing.assert_close(rgb, ref_rgb)  # bit-compatible with the float32 path
    loss.backward()
    assert motion.grad is not None and torch.isfinite(motion.grad).all()


if __name__ == "__main__":  # the torchrun worker: python -m torch.distributed.run ... test_ddp.py EXCERPT OUT
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
