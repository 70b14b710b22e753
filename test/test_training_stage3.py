"""Stage 3 (joint): on real DualTalk speech and tracked motion, with target frames rendered
from the default avatar (the teacher) on the tracked motion, since the real sample has no
video. 32x32 images, a student avatar of a quarter of the teacher's Gaussians.

* the image loss alone (lambda_mesh = 0) sends gradients through FLAME and the rasterizer
  into the motion generator (and its socially-aware module) and into the avatar; the
  speech encoder stays frozen; the total is the paper's weighted sum of the logged terms;
* a short run logs every term (and reports each step to ``on_progress``), and resuming from a mid-run checkpoint is exact;
* ``rsatalker train --stage 3`` on data without video fails with one line naming it.
"""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import Dataset

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.cli import main
from rsatalker_core.config import load_config, resolve_asset
from rsatalker_core.data.dualtalk import DualTalkDataset, collate_windows
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.render.camera import default_camera
from rsatalker_core.training import Trainer, read_log
from rsatalker_core.render.renderer import render_motion
from rsatalker_core.training.stage3 import FINAL_AVATAR, FINAL_MOTION, JointStage, select_frames

from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRESET = REPO / "config" / "train_stage3_test.yaml"
EXCERPT_FRAMES = 40  # the first 1.6 s of the real clip: 4 windows of 10 frames


@pytest.fixture(scope="module")
def excerpt(dualtalk_sample, tmp_path_factory):
    d = tmp_path_factory.mktemp("excerpt3")
    for key in ("speaker1_wav", "speaker2_wav"):
        x, sr = sf.read(dualtalk_sample[key], dtype="float32")
        sf.write(d / dualtalk_sample[key].name, x[: EXCERPT_FRAMES * sr // 25], sr, subtype="FLOAT")
    with np.load(dualtalk_sample["speaker2_npz"]) as m:
        np.savez(d / dualtalk_sample["speaker2_npz"].name, **{k: m[k][:EXCERPT_FRAMES] for k in m.files})
    return d


class TeacherTriplets(Dataset):
    """DualTalk windows (real speech features and tracked motion) whose target frames are the
    teacher avatar rendered on the tracked motion with the default camera."""

    def __init__(self, cfg, encoder):
        self.base = DualTalkDataset(cfg.data, encoder=encoder)
        self.clips, self.directory = self.base.clips, self.base.directory
        teacher = GaussianAvatar.load(resolve_asset(cfg.avatar.checkpoint))
        flame = FlameModel(cfg.flame)
        view, K = default_camera(cfg.render)
        bg = torch.tensor(cfg.render.background)
        self.items = []
        for i in range(len(self.base)):
            item = self.base[i]
            T = int(item["num_frames"])
            with torch.no_grad():
                frames = render_motion(flame, teacher, item["self_motion"].float(), view, K,
                                       cfg.render.width, cfg.render.height, bg, backend="torch")
            item.update(frames=frames.clamp(0, 1), cam=torch.zeros(T, 3), cam_valid=torch.tensor(False))
            self.items.append(item)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return dict(self.items[i])


@pytest.fixture(scope="module")
def student_path(tmp_path_factory):
    """Every 4th Gaussian of the default avatar (5,000), a different avatar than the teacher."""
    teacher = GaussianAvatar.load(resolve_asset("default_avatar.pt"))
    keep = torch.arange(0, teacher.num_gaussians, 4)
    student = GaussianAvatar(teacher.binding[keep], teacher.num_triangles)
    with torch.no_grad():
        for name in ("means_local", "log_scales", "quats_local", "opacity_logits", "colors_logit"):
            getattr(student, name).copy_(getattr(teacher, name)[keep])
    path = tmp_path_factory.mktemp("student") / "student.pt"
    student.save(str(path))
    return path


def _cfg(excerpt, student_path, out_dir, **overrides):
    return load_config(str(PRESET), {"data.root": str(excerpt), "train.out_dir": str(out_dir),
                                     "train.stage3.init_avatar": str(student_path), **overrides})


@pytest.fixture(scope="module")
def data(excerpt, student_path, tmp_path_factory):
    cfg = _cfg(excerpt, student_path, tmp_path_factory.mktemp("unused"))
    from rsatalker_core.speech.factory import build_speech_encoder

    return TeacherTriplets(cfg, build_speech_encoder(cfg.speech, "cpu").freeze())


def test_image_loss_reaches_generator_and_avatar(excerpt, student_path, data, tmp_path):
    assert len(data) == 4 and tuple(data[0]["frames"].shape) == (10, 32, 32, 3)
    cfg = _cfg(excerpt, student_path, tmp_path, **{"train.stage3.lambda_mesh": 0.0})
    stage = JointStage(cfg, train_data=data)
    assert stage.avatar.num_gaussians == 5000
    assert all(not p.requires_grad for p in stage.speech.parameters())
    stage.model.train()
    batch = collate_windows([data[1]])
    loss, terms = stage.loss(batch)
    loss.backward()
    gen, av = stage.generator, stage.avatar
    # image-only gradients arrive in the generator through FLAME and the rasterizer ...
    for name, p in (("head", gen.head.weight), ("decoder", next(gen.decoder.parameters())),
                    ("socialnet", gen.social.motion_socialnet[0].weight),
                    ("blood embeddings", gen.social.blood_embeddings),
                    ("offsetnet", av.offsets.offsetnet[-1].weight)):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the avatar's offsets read the generator's own embeddings (one q for both MLPs)
    assert av.offsets.blood_embeddings is gen.social.blood_embeddings
    assert av.offsets.equal_embeddings is gen.social.equal_embeddings
    # ... and in every attribute of the avatar
    for name in ("means_local", "log_scales", "quats_local", "opacity_logits", "colors_logit"):
        g = getattr(av, name).grad
        assert g is not None and g.abs().sum() > 0, name
    torch.testing.assert_close(loss.detach(), 0.5 * terms["image"] + 0.01 * terms["pos"] + 0.01 * terms["offset"])


def test_loss_is_the_weighted_sum_and_frames_are_sampled(excerpt, student_path, data, tmp_path):
    stage = JointStage(_cfg(excerpt, student_path, tmp_path), train_data=data)
    torch.manual_seed(0)
    loss, terms, rgb, target = stage.compute(collate_windows([data[0], data[2]]))
    assert set(terms) >= {"mesh", "image", "l1", "dssim", "pos", "offset", "psnr"}
    want = terms["mesh"] + 0.5 * terms["image"] + 0.01 * terms["pos"] + 0.01 * terms["offset"]
    torch.testing.assert_close(loss.detach(), want)
    assert terms["mesh"] > 0 and terms["image"] > 0 and math.isfinite(float(terms["psnr"]))
    assert rgb.shape == target.shape == (4, 32, 32, 3)  # 2 frames of each of the 2 windows
    mask = torch.tensor([[True] * 10, [True] * 6 + [False] * 4])
    sel = select_frames(mask, 3)
    assert len(sel) == 6 and bool((sel[3:] >= 10).all() and (sel[3:] < 16).all())
    assert len(select_frames(mask, 0)) == 16


def test_fit_logs_terms_writes_weights_and_resumes_exactly(excerpt, student_path, data, tmp_path):
    val = {"train.val_every": 2, "train.val_max_samples": 2}
    cfg = _cfg(excerpt, student_path, tmp_path / "full", **val)
    progress = []
    full = Trainer(JointStage(cfg, train_data=data, val_data=data), cfg.train, seed=cfg.seed,
                   on_progress=progress.append).fit()
    assert not full.interrupted and full.step == 3
    vals = [r for r in read_log(cfg.train.out_dir) if "val" in r]
    assert [r["step"] for r in vals] == [2, 3]
    assert {"loss", "mesh", "image", "psnr"} <= set(vals[-1]["val"]) and full.val == vals[-1]["val"]
    recs = [r for r in read_log(cfg.train.out_dir) if "val" not in r]
    assert [r["step"] for r in recs] == [1, 2, 3]
    # the Trainer's progress callback: every step, its loss (log_every = 1), an ETA
    assert [(p.stage, p.step, p.max_steps) for p in progress] == [("joint", s, 3) for s in (1, 2, 3)]
    assert [p.loss for p in progress] == [r["loss"] for r in recs]
    assert all(p.eta_s >= 0 and p.steps_per_s > 0 for p in progress) and progress[-1].eta_s == 0.0
    for r in recs:
        assert {"loss", "mesh", "image", "l1", "dssim", "pos", "offset", "psnr"} <= set(r)
        assert all(math.isfinite(r[k]) for k in ("loss", "mesh", "image"))
    assert full.final_weights == str(tmp_path / "full" / FINAL_MOTION)
    trained = GaussianAvatar.load(str(tmp_path / "full" / FINAL_AVATAR))
    assert trained.num_gaussians == 5000
    start = GaussianAvatar.load(str(student_path))
    assert not torch.equal(trained.colors_logit, start.colors_logit)  # the avatar was trained
    # ... and exported with the relationship offsets it trained (start: none, c = 0)
    assert start.offsets is None and trained.offsets is not None and not trained.offsets.is_zero()

    cfg2 = _cfg(excerpt, student_path, tmp_path / "split", **val)
    part = Trainer(JointStage(cfg2, train_data=data, val_data=data), cfg2.train, seed=cfg2.seed).fit(stop_at=1)
    assert part.interrupted and part.step == 1
    stage = JointStage(cfg2, train_data=data, val_data=data)
    resumed = Trainer(stage, cfg2.train, seed=cfg2.seed).fit(resume="auto")
    assert resumed.step == 3
    got = [r["loss"] for r in read_log(cfg2.train.out_dir) if "val" not in r]
    assert got == [r["loss"] for r in recs]  # bit for bit, frames drawn included
    assert [r for r in read_log(cfg2.train.out_dir) if "val" in r] == vals
    ref = torch.load(full.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    for k, v in stage.model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_cli_stage3_without_video_names_it(excerpt, tmp_path, capsys):
    rc = main(["train", "--stage", "3", "--config", str(PRESET), "--set", f"data.root={excerpt}",
               "--set", f"train.out_dir={tmp_path / 'run'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error:" in err and "video" in err and str(excerpt) in err
