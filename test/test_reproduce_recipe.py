"""The reproduction recipe of docs/training.md §4, run as documented (issue 13).

``rsatalker train --stage 1/2/3 --config config/train_reproduce_stage{1,2,3}.yaml --set
data.root=...`` and then ``rsatalker evaluate --split test --config
config/train_reproduce_stage3.yaml --checkpoint runs/reproduce/stage3/motion_stage3.pt``,
through the CLI entry point, in a working directory laid out as the recipe expects: the
wav2vec 2.0 directory at ``models/wav2vec2-base-960h`` (here a tiny randomly initialised
one, the ``tiny_wav2vec2_dir`` fixture), the presets' relative ``runs/reproduce/...``,
``cache/features_wav2vec2`` and stage-to-stage checkpoint paths left as they are. The only
overrides are the ones a user shrinking the run would pass (``--device cpu``,
``train.max_steps``, the render size, ``train.num_workers``, ``train.log_every``,
``train.val_max_samples``, no progress bar; stage 1 also ``train.warmup_steps=0``, so its
3 steps move the weights measurably, stage 3 ``train.stage3.render_frames=1`` (one frame
rendered per window instead of 4: the CPU rasterizer's backward pass is most of its time).

Data: a DualTalk-layout directory (docs/data.md) from the real sample clip: 1 s of both
speakers' speech and speaker 2's tracked FLAME motion (with its weak-perspective ``cam``)
in ``train/`` (frames 0-24) and ``test/`` (frames 25-49). The real sample has no video, so
``<clip>_speaker2.mp4`` is the default avatar rendered on that tracked motion through that
camera (as test_training_stage3.py's teacher frames), written with the project's
:class:`~rsatalker_core.io.video.VideoWriter`.

Checked: every stage writes its weights; stage 1 resumed with ``--resume`` continues its
log and step count (and a second fresh start into its ``out_dir`` is refused); stage 2's
avatar offsets read stage 1's relationship embeddings (equal tensors); stage 3 starts from
stage 1's generator and stage 2's avatar; the paper's choices are in effect (wav2vec 2.0,
``L_mesh`` alone in stage 1, ``L_image + 0.01 L_pos + 0.01 L_offset`` in stage 2,
``L_mesh + 0.5 L_image + 0.01 L_pos + 0.01 L_offset`` in stage 3, in the recorded config
and in the logged loss terms); ``rsatalker evaluate`` (with the wav2vec 2.0 directory moved and
given by ``--set speech.model_path=...``) writes the Table 1-style tables and ``report.md`` for
the test split.
"""

import csv
import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO
from rsatalker_core.cli import main
from rsatalker_core.config import load_config, resolve_asset
from rsatalker_core.evaluation.runner import ROWS
from rsatalker_core.evaluation.table import column_labels
from rsatalker_core.io.checkpoint import load_checkpoint
from rsatalker_core.training import TRAIN_CKPT_FORMAT, read_log

PRESETS = {s: str(REPO / "config" / f"train_reproduce_stage{s}.yaml") for s in (1, 2, 3)}
FRAMES = 25  # frames per split: train = the clip's frames 0-24, test = frames 25-49
LABELS = column_labels()
SIZE = 32  # render size (pixels) and video size
SMALL = ["--device", "cpu", "--set", f"render.width={SIZE}", "--set", f"render.height={SIZE}",
         "--set", "train.num_workers=0", "--set", "train.progress=false", "--set", "train.log_every=1",
         "--set", "train.val_max_samples=2"]


def _write_split(directory, sample, start, cfg):
    """Frames ``[start, start + FRAMES)`` of the real clip, DualTalk layout, with speaker 2's
    video: the default avatar rendered on its tracked motion through its ``cam``."""
    from rsatalker_core.avatar.gaussians import GaussianAvatar
    from rsatalker_core.data.triplets import weak_perspective_camera
    from rsatalker_core.head.flame import FlameModel
    from rsatalker_core.io.motion_npz import load_motion_npz
    from rsatalker_core.io.video import VideoWriter
    from rsatalker_core.render.renderer import render_motion

    directory.mkdir(parents=True)
    for key in ("speaker1_wav", "speaker2_wav"):
        x, sr = sf.read(sample[key], dtype="float32")
        sf.write(directory / sample[key].name, x[start * sr // 25: (start + FRAMES) * sr // 25], sr, subtype="FLOAT")
    npz = directory / sample["speaker2_npz"].name
    with np.load(sample["speaker2_npz"]) as m:
        np.savez(npz, **{k: m[k][start: start + FRAMES] for k in m.files})
    motion = torch.from_numpy(load_motion_npz(str(npz)))
    with np.load(npz) as m:
        view, K = weak_perspective_camera(torch.from_numpy(m["cam"]).float(), SIZE, SIZE)
    flame = FlameModel(cfg.flame)
    teacher = GaussianAvatar.load(resolve_asset(cfg.avatar.checkpoint), num_triangles=flame.faces.shape[0])
    with torch.no_grad():
        frames = render_motion(flame, teacher, motion, view, K, SIZE, SIZE,
                               torch.tensor(cfg.render.background), backend=cfg.render.backend)
    rgb = (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    with VideoWriter(str(npz).replace(".npz", ".mp4"), 25.0, preset="ultrafast", crf=10) as video:
        for frame in rgb:
            video.write(frame)


def _train(stage, *extra):
    return main(["train", "--stage", str(stage), "--config", PRESETS[stage], "--set", "data.root=data", *SMALL,
                 *extra])


def _steps(out_dir):
    return [r for r in read_log(str(out_dir)) if "val" not in r]


@pytest.fixture(scope="module")
def recipe(dualtalk_sample, tiny_wav2vec2_dir, tmp_path_factory):
    """Run the whole recipe once in a fresh working directory; returns it with the outputs
    of the first, 2-step stage-1 run (before the resume)."""
    work = tmp_path_factory.mktemp("recipe")
    cfg = load_config(PRESETS[2], {"render.width": SIZE, "render.height": SIZE, "device": "cpu"})
    _write_split(work / "data" / "train", dualtalk_sample, 0, cfg)
    _write_split(work / "data" / "test", dualtalk_sample, FRAMES, cfg)
    (work / "models").mkdir()
    os.symlink(tiny_wav2vec2_dir, work / "models" / "wav2vec2-base-960h")  # step 0 of the recipe
    cwd = os.getcwd()
    os.chdir(work)
    try:
        one = ["--set", "train.warmup_steps=0"]
        assert _train(1, "--set", "train.max_steps=2", *one) == 0
        first = {"log": _steps(work / "runs/reproduce/stage1"),
                 "weights": load_checkpoint("runs/reproduce/stage1/motion_stage1.pt", "rsatalker-motion", "cpu")}
        # a second fresh start into the same out_dir is refused (exit 2), not silently restarted
        refused = _train(1, "--set", "train.max_steps=3", *one)
        # interrupted / extended: the same command with --resume continues
        assert _train(1, "--set", "train.max_steps=3", *one, "--resume") == 0
        assert _train(2, "--set", "train.max_steps=2") == 0
        assert _train(3, "--set", "train.max_steps=2", "--set", "train.stage3.render_frames=1") == 0
        # the model kept elsewhere: evaluate takes --set like train (docs/training.md §4)
        os.rename("models/wav2vec2-base-960h", "models/elsewhere")
        assert main(["evaluate", "--data", "data", "--split", "test", "--config", PRESETS[3], "--device", "cpu",
                     "--checkpoint", "runs/reproduce/stage3/motion_stage3.pt", "--out", "out/reproduce_test",
                     "--set", "speech.model_path=models/elsewhere"]) == 0
    finally:
        os.chdir(cwd)
    return {"work": work, "first": first, "refused": refused}


def _motion_state(path):
    return load_checkpoint(str(path), "rsatalker-motion", "cpu")["state_dict"]


def _run_config(out_dir):
    return load_checkpoint(str(out_dir / "checkpoints" / "last.pt"), TRAIN_CKPT_FORMAT, "cpu")["config"]


def test_each_stage_writes_its_weights_and_feature_cache(recipe):
    runs = recipe["work"] / "runs" / "reproduce"
    for rel in ("stage1/motion_stage1.pt", "stage2/avatar_stage2.pt", "stage3/motion_stage3.pt",
                "stage3/avatar_stage3.pt"):
        assert (runs / rel).is_file(), rel
    for stage, steps in ((1, 3), (2, 2), (3, 2)):
        assert [r["step"] for r in _steps(runs / f"stage{stage}")] == list(range(1, steps + 1)), stage
    # wav2vec 2.0 features cached where the presets say, relative to the working directory
    assert list((recipe["work"] / "cache" / "features_wav2vec2").rglob("*.npy"))


def test_stage1_resume_continues(recipe):
    runs = recipe["work"] / "runs" / "reproduce" / "stage1"
    assert recipe["refused"] == 2
    log = _steps(runs)
    assert log[:2] == recipe["first"]["log"]  # the first run's records are kept, not redone
    data = load_checkpoint(str(runs / "motion_stage1.pt"), "rsatalker-motion", "cpu")
    assert recipe["first"]["weights"]["trained"]["step"] == 2 and data["trained"]["step"] == 3
    # the third step changed the weights of step 2
    assert any(not torch.equal(v, data["state_dict"][k]) for k, v in recipe["first"]["weights"]["state_dict"].items()
               if v.is_floating_point())


def test_paper_choices_are_in_effect(recipe):
    runs = recipe["work"] / "runs" / "reproduce"
    c1, c2, c3 = (_run_config(runs / f"stage{s}") for s in (1, 2, 3))
    for c in (c1, c2, c3):
        assert c["speech"]["encoder"] == "wav2vec2" and c["speech"]["model_path"] == "models/wav2vec2-base-960h"
        assert c["render"]["width"] == SIZE  # the overrides reached the run
    assert load_checkpoint(str(runs / "stage3/motion_stage3.pt"), "rsatalker-motion", "cpu")["speech_encoder"] == "wav2vec2"
    assert c1["train"]["velocity_weight"] == 0.0
    s2 = c2["train"]["stage2"]
    assert (s2["lambda_pos"], s2["lambda_offset"], s2["pos_eps"], s2["offset_eps"]) == (0.01, 0.01, 1.0, 1.0)
    assert s2["densify"]["enabled"]
    s3 = c3["train"]["stage3"]
    assert (s3["lambda_mesh"], s3["lambda_image"], s3["lambda_pos"], s3["lambda_offset"]) == (1.0, 0.5, 0.01, 0.01)
    assert (s3["pos_eps"], s3["offset_eps"]) == (1.0, 1.0)
    # ... and the logged terms add up to the logged loss with those weights
    for r in _steps(runs / "stage1"):
        assert r["loss"] == pytest.approx(r["mesh"], rel=1e-5) and "vel" not in r
    for r in _steps(runs / "stage2"):
        assert r["image"] == pytest.approx(0.8 * r["l1"] + 0.2 * r["dssim"], rel=1e-5)
        assert r["loss"] == pytest.approx(r["image"] + 0.01 * r["pos"] + 0.01 * r["offset"], rel=1e-5)
    for r in _steps(runs / "stage3"):
        want = r["mesh"] + 0.5 * r["image"] + 0.01 * r["pos"] + 0.01 * r["offset"]
        assert r["loss"] == pytest.approx(want, rel=1e-5)
        assert r["mesh"] > 0 and r["image"] > 0 and math.isfinite(r["psnr"])


def test_stage2_reads_stage1_relationship_embeddings(recipe):
    from rsatalker_core.avatar.gaussians import GaussianAvatar

    runs = recipe["work"] / "runs" / "reproduce"
    state = _motion_state(runs / "stage1" / "motion_stage1.pt")
    avatar = GaussianAvatar.load(str(runs / "stage2" / "avatar_stage2.pt"))
    assert avatar.meta["trained"]["stage"] == 2 and avatar.meta["trained"]["step"] == 2
    step2 = recipe["first"]["weights"]["state_dict"]
    for name in ("blood_embeddings", "equal_embeddings"):
        assert torch.equal(getattr(avatar.offsets, name), state[f"social.{name}"]), name
        # stage 1's last step moved them: the equality above is the resumed step-3 weights'
        assert not torch.equal(step2[f"social.{name}"], state[f"social.{name}"]), name
    assert not avatar.offsets.is_zero()  # its offsetnet was trained


def test_stage3_starts_from_stage1_and_stage2(recipe):
    from rsatalker_core.avatar.gaussians import GaussianAvatar

    runs = recipe["work"] / "runs" / "reproduce"
    s1, s3 = _motion_state(runs / "stage1" / "motion_stage1.pt"), _motion_state(runs / "stage3" / "motion_stage3.pt")
    init = recipe["first"]["weights"]["state_dict"]  # step 2 of stage 1, for scale
    assert s1.keys() == s3.keys()
    # stage 3's 2 steps (lr 2e-5, warm-up 500) move the generator by far less than stage 1's
    # third step (lr 1e-4) did: it continued from stage 1's weights, not from a new init
    moved3 = max(float((s3[k] - s1[k]).abs().max()) for k in s1 if s1[k].is_floating_point())
    moved1 = max(float((s1[k] - init[k]).abs().max()) for k in s1 if s1[k].is_floating_point())
    assert moved3 < moved1 / 10, (moved3, moved1)
    a2 = GaussianAvatar.load(str(runs / "stage2" / "avatar_stage2.pt"))
    a3 = GaussianAvatar.load(str(runs / "stage3" / "avatar_stage3.pt"))
    default = GaussianAvatar.load(resolve_asset("default_avatar.pt"))
    # stage 2's avatar (its own Gaussians, not the default avatar's), fine-tuned
    assert a3.num_gaussians == a2.num_gaussians != default.num_gaussians
    assert torch.equal(a3.binding, a2.binding)
    diff = float((a3.means_local - a2.means_local).detach().abs().max())
    assert 0 < diff < 1e-3, diff


def test_evaluate_writes_table1_for_the_test_split(recipe):
    out = recipe["work"] / "out" / "reproduce_test"
    for name in ("table.md", "table.csv", "metrics.json", "report.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["info"]["checkpoint"].endswith("runs/reproduce/stage3/motion_stage3.pt")
    clip = next((recipe["work"] / "data" / "test").glob("*_speaker2.npz")).name[: -len("_speaker2.npz")]
    assert [(m["clip"], m["self_speaker"]) for m in metrics["samples"]] == [(clip, 2)]
    with open(out / "table.csv", encoding="utf-8", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert list(rows) == list(ROWS.values())  # the model, its ablations and the baselines
    model = rows[ROWS["model"]]
    assert model["samples"] == "1"
    for key in ("FD-EXP", "MSE-EXP", "FD-JAW", "MSE-JAW", "FD-POSE", "MSE-POSE", "SID-EXP", "STS-EXP"):
        assert math.isfinite(float(model[LABELS[key]])), key
    assert ROWS["model"] in (out / "table.md").read_text() and (out / "report.md").stat().st_size > 0
