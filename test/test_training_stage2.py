"""Stage 2 (renderer) training: teacher-student fit, exact resume with densification,
the triplet loader on a rendered mp4, and the CLI.

Teacher-student scene: a "teacher" Gaussian avatar (one anchor per triangle of the
stand-in FLAME head, colours varying over the head, more opaque, smaller) renders target
frames at 128x128 for three FLAME poses (neutral, jaw open, head turned). A student that
starts from the default anchors (uniform grey, other scales and opacities) is trained by
the real RendererStage through the real Trainer. Asserted: mean PSNR over the three poses
rises by more than 8 dB and above 24 dB after 16 steps (it starts at 14.0 dB; measured
26.7 dB on the CPU rasterizer).
"""

import os

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.cli import main
from rsatalker_core.config import load_config
from rsatalker_core.data.triplets import TripletDataset, weak_perspective_camera
from rsatalker_core.errors import DatasetError
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.metrics.image import psnr
from rsatalker_core.render.camera import default_camera
from rsatalker_core.render.renderer import render_motion
from rsatalker_core.training.stage2 import RendererStage
from rsatalker_core.training.trainer import Trainer, read_log

PSNR_GAIN_DB = 8.0
PSNR_MIN_DB = 24.0
PRESET = os.path.join(os.path.dirname(__file__), "..", "config", "train_stage2_test.yaml")


def _poses():
    m = torch.zeros(3, 56)
    m[1, 50] = 0.3  # jaw open
    m[2, 54] = 0.35  # head turned (yaw)
    return m


def _cfg(tmp_path, size, overrides=None):
    o = {
        "device": "cpu", "render.width": size, "render.height": size, "render.backend": "torch",
        "social.embed_dim": 8, "social.hidden_dim": 8, "social.time_dim": 4, "motion.d_model": 8, "motion.checkpoint": "",
        "train.out_dir": str(tmp_path / "run"), "train.batch_size": 1, "train.log_every": 1,
        "train.val_every": 0, "train.checkpoint_every": 0, "train.grad_clip": 0.0, "train.progress": False,
        "train.stage2.init_avatar": "anchors", "train.stage2.densify.enabled": False,
    }
    o.update(overrides or {})
    return load_config(None, o)


def _teacher(flame):
    with torch.no_grad():
        v = flame.forward_motion(torch.zeros(1, 56))[0].float()
        t = GaussianAvatar.from_mesh(v, flame.faces, scale=0.35, opacity=0.97)
        p = t(v[None], flame.faces)["means"][0]
        p = (p - p.mean(0)) / p.std(0)
        t.colors_logit.copy_(torch.stack([2 * torch.sin(2 * p[:, 0]), 2 * torch.cos(2 * p[:, 1]), 1.5 * p[:, 2]], -1))
    return t


class _Frames(torch.utils.data.Dataset):
    """In-memory triplet items (the keys TripletDataset gives), one frame each."""

    def __init__(self, motion, frames):
        self.motion, self.frames = motion, frames

    def __len__(self):
        return len(self.motion)

    def __getitem__(self, i):
        return {
            "self_motion": self.motion[i : i + 1], "frames": self.frames[i : i + 1],
            "cam": torch.zeros(1, 3), "cam_valid": torch.tensor(False), "blood": torch.tensor(0),
            "equal": torch.tensor(1), "start": i, "num_frames": 1,
        }


def _scene(cfg):
    flame = FlameModel(cfg.flame)
    motion = _poses()
    vm, K = default_camera(cfg.render)
    S = cfg.render.width
    with torch.no_grad():
        target = render_motion(flame, _teacher(flame), motion, vm, K, S, S, torch.ones(3), backend="torch").clamp(0, 1)
    return _Frames(motion, target), flame, motion, vm, K


def _mean_psnr(stage, flame, motion, vm, K, target):
    """PSNR of the stage's avatar as it trains: with its relationship offsets for the items'
    relationship (non-blood, equal) at each item's time (frame ``i`` at ``i / 25`` s)."""
    S = target.shape[1]
    with torch.no_grad():
        offsets = None
        if stage.avatar.offsets is not None:
            offsets = stage.avatar.offsets.for_frames("couple", 0, len(motion))
        rgb = render_motion(flame, stage.avatar, motion, vm, K, S, S, torch.ones(3), offsets, backend="torch")
    return float(psnr(rgb.clamp(0, 1).permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)))


def test_teacher_student_fit_raises_psnr(tmp_path):
    cfg = _cfg(tmp_path, 128, {"train.max_steps": 16, "train.lr": 0.001, "train.stage2.lr_colors": 0.08,
                               "train.stage2.lr_opacity": 0.1, "train.stage2.lr_scales": 0.03})
    data, flame, motion, vm, K = _scene(cfg)
    stage = RendererStage(cfg, train_data=data)
    try:
        before = _mean_psnr(stage, flame, motion, vm, K, data.frames)
        result = Trainer(stage, cfg.train, seed=cfg.seed).fit()
        after = _mean_psnr(stage, flame, motion, vm, K, data.frames)
    finally:
        stage.close()
    print(f"teacher-student PSNR {before:.2f} -> {after:.2f} dB")
    assert result.step == 16 and not result.interrupted
    assert after > before + PSNR_GAIN_DB, (before, after)
    assert after > PSNR_MIN_DB, (before, after)
    # finalize wrote a loadable avatar that renders what the stage renders
    saved = GaussianAvatar.load(result.final_weights)
    assert torch.equal(saved.colors_logit, stage.avatar.colors_logit.detach().cpu())
    # ... with the relationship offsets it trained (train.stage2.train_offsetnet)
    assert saved.offsets is not None
    for k, v in stage.avatar.offsets.state_dict().items():
        assert torch.equal(saved.offsets.state_dict()[k], v.cpu()), k


def _init_avatar(path):
    """Anchors plus a second, nearly transparent Gaussian on the first 50 triangles (prunable)."""
    flame = FlameModel(load_config(None).flame)
    with torch.no_grad():
        v = flame.forward_motion(torch.zeros(1, 56))[0].float()
        counts = torch.ones(flame.faces.shape[0], dtype=torch.long)
        counts[:50] = 2
        av = GaussianAvatar.from_mesh(v, flame.faces, per_triangle=counts)
        second = torch.cat([torch.tensor([False]), av.binding[1:] == av.binding[:-1]])
        av.opacity_logits[second] = -8.0
    av.save(str(path))
    return str(path)


def _resume_cfg(tmp_path, name, max_steps):
    return _cfg(tmp_path / name, 48, {
        "train.stage2.init_avatar": _init_avatar(tmp_path / f"init_{name}.pt"),
        "train.max_steps": max_steps, "train.checkpoint_every": 3, "train.val_every": 3, "train.val_max_samples": 1,
        "train.stage2.densify.enabled": True, "train.stage2.densify.refine_start_iter": 0,
        "train.stage2.densify.refine_every": 2, "train.stage2.densify.grow_grad": 1e-9,
        "train.stage2.densify.max_gaussians": 10100, "train.stage2.densify.reset_every": 5,
        "train.stage2.densify.prune_opa": 0.005,
    })


def test_resume_is_exact_with_densification(tmp_path):
    cfg = _resume_cfg(tmp_path, "a", 6)
    data, *_ = _scene(cfg)
    full = RendererStage(cfg, train_data=data, val_data=data)
    try:
        Trainer(full, cfg.train, seed=0).fit()
    finally:
        full.close()
    totals = full.densify_totals
    assert totals["cloned"] + totals["split"] > 0 and totals["pruned"] > 0, totals
    assert full.avatar.num_gaussians not in (9976, 10026)

    cfg_b = _resume_cfg(tmp_path, "b", 6)
    first = RendererStage(cfg_b, train_data=data, val_data=data)
    try:
        r = Trainer(first, cfg_b.train, seed=0).fit(stop_at=3)
    finally:
        first.close()
    assert r.interrupted and r.step == 3
    second = RendererStage(cfg_b, train_data=data, val_data=data)  # fresh process state: 9976 anchors
    try:
        Trainer(second, cfg_b.train, seed=0).fit(resume="auto")
    finally:
        second.close()
    la = [x["loss"] for x in read_log(cfg.train.out_dir) if "loss" in x]
    lb = [x["loss"] for x in read_log(cfg_b.train.out_dir) if "loss" in x]
    assert len(la) == len(lb) == 6
    assert la == lb  # bit-exact on the CPU, including step 4 right after the resume
    assert second.avatar.num_gaussians == full.avatar.num_gaussians
    assert torch.equal(second.avatar.binding, full.avatar.binding)
    for name in ("means_local", "log_scales", "colors_logit", "opacity_logits"):
        assert torch.equal(getattr(second.avatar, name), getattr(full.avatar, name)), name
    # every triangle kept a Gaussian
    assert torch.bincount(second.avatar.binding, minlength=9976).min() >= 1


# --------------------------------------------------------------------------- triplet loader
def _write_clip(root, clip, n_frames, n_video, size=24, cam=True):
    os.makedirs(root, exist_ok=True)
    for spk in (1, 2):
        sf.write(os.path.join(root, f"{clip}_speaker{spk}.wav"), np.zeros(n_frames * 640, np.float32), 16000)
    arrays = {"exp": np.zeros((n_frames, 50), np.float32), "pose": np.zeros((n_frames, 6), np.float32)}
    if cam:
        arrays["cam"] = np.tile(np.array([[8.0, 0.01, -0.02]], np.float32), (n_frames, 1))
    np.savez(os.path.join(root, f"{clip}_speaker2.npz"), **arrays)
    path = os.path.join(root, f"{clip}_speaker2.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (size, size))
    for i in range(n_video):
        img = np.zeros((size, size, 3), np.uint8)
        img[..., 2] = 20 * i  # red ramp over time (BGR order)
        w.write(img)
    w.release()
    return path


def test_triplet_dataset_reads_frames_and_cameras(tmp_path):
    root = tmp_path / "data"
    _write_clip(str(root), "c0", 6, 6)
    cfg = load_config(None, {"data.root": str(root), "data.split": "", "data.window_frames": 2,
                             "data.stride_frames": 2})
    ds = TripletDataset(cfg.data, 16, 16)
    assert len(ds) == 3
    item = ds[1]
    assert item["frames"].shape == (2, 16, 16, 3) and item["frames"].dtype == torch.float32
    red = item["frames"][..., 0].mean(dim=(1, 2))
    assert abs(float(red[0]) - 40 / 255) < 0.05 and abs(float(red[1]) - 60 / 255) < 0.05  # frames 2, 3; RGB order
    assert float(item["frames"][..., 2].max()) < 0.05
    assert bool(item["cam_valid"]) and torch.allclose(item["cam"][0], torch.tensor([8.0, 0.01, -0.02]))
    single = TripletDataset(load_config(None, {"data.root": str(root), "data.split": "", "data.window_frames": 1,
                                               "data.stride_frames": 1}).data, 16, 16)
    assert len(single) == 6  # one item per frame, read by seeking
    for i in (4, 1):
        assert abs(float(single[i]["frames"][0, ..., 0].mean()) - 20 * i / 255) < 0.05


def test_triplet_dataset_errors_name_the_file(tmp_path):
    root = str(tmp_path / "short")
    path = _write_clip(root, "c0", 12, 4)  # video 8 frames short of the motion
    cfg = load_config(None, {"data.root": root, "data.split": ""})
    with pytest.raises(DatasetError, match="c0_speaker2.mp4"):
        TripletDataset(cfg.data, 16, 16)
    root2 = str(tmp_path / "nocam")
    _write_clip(root2, "c1", 4, 4, cam=False)
    ds = TripletDataset(load_config(None, {"data.root": root2, "data.split": "", "data.window_frames": 0}).data, 24, 24)
    assert not bool(ds[0]["cam_valid"])
    with pytest.raises(DatasetError, match="aspect"):
        TripletDataset(load_config(None, {"data.root": root2, "data.split": ""}).data, 24, 12)[0]
    os.remove(path)
    with pytest.raises(DatasetError, match="no sample .* has a video"):
        TripletDataset(cfg.data, 16, 16)


def test_cli_trains_stage_2_on_videos(tmp_path, capsys):
    """Also: with motion.checkpoint (stage 1 weights) the avatar's offsets read the motion
    model's relationship embeddings (frozen) and their trained offsetnet lands in
    avatar_stage2.pt, which AvatarRenderer applies; the motion model is not rewritten."""
    from rsatalker_core.model.motion_model import MotionModel

    root = str(tmp_path / "clips")
    _write_clip(root, "c0", 4, 4, size=64)
    out = str(tmp_path / "run")
    motion_cfg = load_config(PRESET, {"speech.encoder": "logmel", "speech.n_mels": 40})
    stage1 = MotionModel(motion_cfg)
    stage1.save(str(tmp_path / "stage1.pt"))
    rc = main(["train", "--stage", "2", "--config", PRESET, "--set", f"data.root={root}",
               "--set", f"train.out_dir={out}", "--set", "train.max_steps=3", "--set", "train.val_every=3",
               "--set", f"motion.checkpoint={tmp_path / 'stage1.pt'}"])
    assert rc == 0
    assert sorted(f for f in os.listdir(out) if f.endswith("_stage2.pt")) == ["avatar_stage2.pt"]
    text = capsys.readouterr().out
    assert "avatar.checkpoint" in text
    avatar = GaussianAvatar.load(os.path.join(out, "avatar_stage2.pt"))
    assert avatar.meta["trained"]["stage"] == 2 and avatar.meta["trained"]["step"] == 3
    social = stage1.generator.social
    assert torch.equal(avatar.offsets.blood_embeddings, social.blood_embeddings.detach())
    assert torch.equal(avatar.offsets.equal_embeddings, social.equal_embeddings.detach())
    assert not avatar.offsets.is_zero()  # the offsetnet was trained
    val = [r["val"] for r in read_log(out) if "val" in r]
    assert val and 0 < val[-1]["PSNR"] < 100 and "SSIM" in val[-1]


def test_weak_perspective_camera_matches_the_dualtalk_projection():
    """u = (s (X + tx) + 1) W / 2, v = (-s (Y + ty) + 1) H / 2 (DECA), to within depth / distance."""
    cam = torch.tensor([[9.0, 0.01, -0.03], [7.5, -0.02, 0.0]])
    view, K = weak_perspective_camera(cam, 64, 48)
    assert view.shape == (2, 4, 4) and K.shape == (2, 3, 3)
    assert torch.allclose(torch.linalg.det(view[:, :3, :3]), torch.ones(2))
    X = torch.tensor([[0.05, 0.08, 0.02], [-0.07, -0.04, -0.05], [0.0, 0.0, 0.0]])
    for i in range(2):
        pc = X @ view[i, :3, :3].T + view[i, :3, 3]
        uv = (pc @ K[i].T)[:, :2] / pc[:, 2:3]
        s, tx, ty = cam[i]
        expect = torch.stack([(s * (X[:, 0] + tx) + 1) * 32, (-s * (X[:, 1] + ty) + 1) * 24], -1)
        assert torch.allclose(uv, expect, atol=0.15), (uv, expect)  # < 0.15 px: 0.05 m depth at 20 m
