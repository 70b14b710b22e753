"""Stage 1 (motion generator) on the real DualTalk sample: it overfits one clip, its
statistics, loss masking and final weights are right, and the CLI reports bad input in one line."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from rsatalker_core.cli import main
from rsatalker_core.config import load_config
from rsatalker_core.io.motion_npz import load_motion_npz
from rsatalker_core.model.motion_model import MotionModel
from rsatalker_core.training import Trainer, read_log
from rsatalker_core.training.stage1 import FINAL_WEIGHTS, MotionStage, masked_mse, velocity

from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRESET = REPO / "config" / "train_stage1_test.yaml"
EXCERPT_SECONDS = 8  # 200 frames: the first 8 s of the real clip keep CI fast


def make_excerpt(sample, directory, seconds=EXCERPT_SECONDS):
    """The first ``seconds`` of the real clip (both wavs, speaker 2's npz), same file names."""
    directory.mkdir(parents=True, exist_ok=True)
    for key in ("speaker1_wav", "speaker2_wav"):
        x, sr = sf.read(sample[key], dtype="float32")
        sf.write(directory / sample[key].name, x[: seconds * sr], sr, subtype="FLOAT")
    with np.load(sample["speaker2_npz"]) as m:
        np.savez(directory / sample["speaker2_npz"].name, **{k: m[k][: seconds * 25] for k in m.files})
    return directory


@pytest.fixture(scope="module")
def excerpt(dualtalk_sample, tmp_path_factory):
    return make_excerpt(dualtalk_sample, tmp_path_factory.mktemp("excerpt"))


def test_overfits_real_clip_and_weights_load_via_motion_checkpoint(excerpt, tmp_path):
    cfg = load_config(str(PRESET), {"data.root": str(excerpt), "train.out_dir": str(tmp_path / "run")})
    stage = MotionStage(cfg)
    assert len(stage.train_data) == 1  # one sample: speaker 2 as the avatar, speaker 1 as partner
    item = stage.train_data[0]
    assert item["self_speaker"] == 2 and not bool(item["partner_motion_valid"])
    before = stage.validate()  # statistics set, weights untrained: ~ predicts the mean motion

    result = Trainer(stage, cfg.train, seed=cfg.seed).fit()
    assert not result.interrupted and result.step == cfg.train.max_steps
    losses = [r["loss"] for r in read_log(cfg.train.out_dir) if "loss" in r and "val" not in r]
    assert len(losses) == cfg.train.max_steps
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"stage-1 train loss {first:.4f} -> {last:.5f} ({first / last:.1f}x), {result.steps_per_s:.1f} steps/s")
    assert last < first / 10
    # Validation generates the whole clip through MotionModel.generate (the inference path).
    after = result.val
    print({k: (before[k], after[k]) for k in ("loss", "MSE-EXP", "MSE-JAW", "MSE-POSE")})
    assert after["loss"] < before["loss"] / 10
    for group in ("MSE-EXP", "MSE-JAW", "MSE-POSE"):
        assert after[group] < before[group] / 3, group
    vals = [r for r in read_log(cfg.train.out_dir) if "val" in r]
    assert [r["step"] for r in vals] == [50, 100, 150]

    # The final weights are a MotionModel checkpoint usable through motion.checkpoint.
    assert result.final_weights == str(tmp_path / "run" / FINAL_WEIGHTS)
    loaded = MotionModel(load_config(str(PRESET), {"motion.checkpoint": result.final_weights}))
    feats_s = item["self_features"][None]
    feats_p = item["partner_features"][None]
    want = stage.motion_model.generate(feats_s, feats_p, item["relationship"])
    got = loaded.generate(feats_s, feats_p, item["relationship"])
    np.testing.assert_array_equal(got, want)
    gt = item["self_motion"].numpy()
    assert np.mean((got - gt) ** 2) < before["loss"] / 10


def test_tensorboard_records_train_and_val_scalars(excerpt, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(str(PRESET), {
        "data.root": str(excerpt), "train.out_dir": str(tmp_path / "run"),
        "train.max_steps": 4, "train.val_every": 2, "train.log_every": 2,
    })
    Trainer(MotionStage(cfg), cfg.train, seed=cfg.seed).fit()
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/mse_jaw", "train/lr", "train/grad_norm", "val/MSE-EXP", "val/FD-POSE"} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]
    assert [e.step for e in acc.Scalars("val/MSE-JAW")] == [2, 4]


def test_motion_statistics_come_from_training_data(excerpt, tmp_path):
    cfg = load_config(str(PRESET), {"data.root": str(excerpt), "train.out_dir": str(tmp_path)})
    stage = MotionStage(cfg)
    motion = load_motion_npz(str(next(excerpt.glob("*_speaker2.npz")))).astype(np.float64)
    np.testing.assert_allclose(stage.generator.motion_mean.numpy(), motion.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        stage.generator.motion_std.numpy(), np.maximum(motion.std(0), 1e-3), rtol=1e-4, atol=1e-6
    )
    # Trained: every generator parameter (the Gaussian offsetnet is the avatar's); the encoder is frozen.
    trained = {id(p) for g in stage.param_groups() for p in g["params"]}
    assert trained == {id(p) for p in stage.generator.parameters()}
    assert id(stage.generator.social.blood_embeddings) in trained
    assert stage.speech.frozen and not any(p.requires_grad for p in stage.speech.parameters())


def test_loss_ignores_padded_frames_and_velocity_term(excerpt, tmp_path):
    cfg = load_config(str(PRESET), {
        "data.root": str(excerpt), "train.out_dir": str(tmp_path),
        "data.window_frames": 60, "data.stride_frames": 70, "train.velocity_weight": 0.5,
    })
    stage = MotionStage(cfg)
    ds = stage.train_data
    assert [w[3] for w in ds.windows] == [60, 60, 60]
    # A short window padded up to a long one: the padding must not change its loss.
    short = dict(ds[0])
    for k in ("self_motion", "partner_motion", "self_features", "partner_features"):
        short[k] = short[k][:35]
    short["num_frames"] = 35
    stage.generator.eval()
    padded = stage.collate_fn([short, ds[1]])
    assert padded["frame_mask"].sum().item() == 95
    with torch.no_grad():
        loss, scalars = stage.loss(padded)
        pred = stage.predict(padded)
    gt = padded["self_motion"]
    err = ((pred - gt) ** 2).mean(-1)
    want_mesh = (err[0, :35].sum() + err[1].sum()) / 95
    torch.testing.assert_close(scalars["mesh"], want_mesh)
    vp, vg = pred[:, 1:] - pred[:, :-1], gt[:, 1:] - gt[:, :-1]
    verr = ((vp - vg) ** 2).mean(-1)
    want_vel = (verr[0, :34].sum() + verr[1].sum()) / (34 + 59)
    torch.testing.assert_close(scalars["vel"], want_vel)
    torch.testing.assert_close(loss, want_mesh + 0.5 * want_vel)
    exp = ((pred - gt)[..., :50] ** 2).mean(-1)
    torch.testing.assert_close(scalars["mse_exp"], (exp[0, :35].sum() + exp[1].sum()) / 95)
    # The helpers on their own: no mask is plain MSE; a shape mismatch is refused.
    a, b = torch.randn(2, 5, 56), torch.randn(2, 5, 56)
    torch.testing.assert_close(masked_mse(a, b), torch.nn.functional.mse_loss(a, b))
    v, m = velocity(a, torch.ones(2, 5, dtype=torch.bool))
    assert v.shape == (2, 4, 56) and m.shape == (2, 4)
    with pytest.raises(ValueError, match="differ"):
        masked_mse(a, b[:, :4])


def test_cli_bad_override_and_missing_data_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rsatalker_core.cli", "train", "--stage", "1", "--config", str(PRESET),
         "--set", f"data.root={tmp_path / 'nowhere'}", "--set", f"train.out_dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "nowhere" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert main(["train", "--stage", "1", "--config", str(PRESET), "--set", "train.lr"]) == 2
