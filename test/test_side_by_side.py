"""Side-by-side videos (rsatalker_core.evaluation.side_by_side) and ``rsatalker evaluate
--side-by-side`` with the FD offset/dynamics split in its report."""

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import SMALL_CONFIG
from rsatalker_core.errors import RenderError
from rsatalker_core.evaluation import side_by_side as sbs

FPS = 25
SR = 16000


def _panels(frame, w):
    """(left, right) panels of a composed frame without the label strip."""
    body = frame[sbs.LABEL_HEIGHT :]
    return body[:, :w].astype(np.float64), body[:, w + sbs.GAP : 2 * w + sbs.GAP].astype(np.float64)


def _read_frames(path):
    from rsatalker_core.io.video import read_frames

    return read_frames(str(path))


def _turning_head(T, yaw=0.4):
    m = np.zeros((T, 56), np.float32)
    m[:, 54] = np.linspace(0.0, yaw, T)  # yaw turns away
    m[:, 50] = 0.2  # jaw open
    return m


def test_compose_panels_layout_and_labels():
    a = np.zeros((16, 24, 3), np.uint8)
    b = np.full((16, 24, 3), 200, np.uint8)
    f = sbs.compose_panels(a, b, ("real", "generated"))
    assert f.shape == (16 + sbs.LABEL_HEIGHT, 2 * 24 + sbs.GAP, 3) and f.dtype == np.uint8
    left, right = _panels(f, 24)
    assert (left == 0).all() and (right == 200).all()
    assert (f[sbs.LABEL_HEIGHT:, 24 : 24 + sbs.GAP] == 128).all()
    assert f[: sbs.LABEL_HEIGHT].min() < 128  # text drawn on the label strip
    assert sbs.compose_panels(a, b).shape == (16, 2 * 24 + sbs.GAP, 3)
    with pytest.raises(RenderError):
        sbs.compose_panels(a, b[:, :20])


def test_motion_for_head_keeps_only_matching_expressions():
    m = np.zeros((3, 56), np.float32)
    m[:, :50] = 0.5
    m[:, 50:] = 0.1
    other = sbs.motion_for_head(m, sbs.FLAME_SPACE, sbs.STANDIN_SPACE)
    assert (other[:, :50] == 0).all() and (other[:, 50:] == 0.1).all()
    np.testing.assert_array_equal(sbs.motion_for_head(m, sbs.STANDIN_SPACE, sbs.STANDIN_SPACE), m)
    np.testing.assert_array_equal(sbs.motion_for_head(m, "flame:generic_model.pkl", sbs.FLAME_SPACE), m)
    with pytest.raises(RenderError):
        sbs.motion_for_head(m[:, :50], sbs.FLAME_SPACE, sbs.FLAME_SPACE)


def test_side_by_side_video_has_two_panels_that_differ_only_when_motions_differ(tmp_path, small_cfg):
    from rsatalker_core.io.video import has_audio_stream, read_video_info
    from rsatalker_core.render.renderer import AvatarRenderer

    renderer = AvatarRenderer(small_cfg)
    w = small_cfg.render.width
    T = 8
    moving = _turning_head(T)
    still = np.zeros((T, 56), np.float32)
    audio = 0.1 * np.sin(2 * np.pi * 220 * np.arange(T * SR // FPS + 3000) / SR).astype(np.float32)
    space = sbs.head_space(renderer)
    diff_path = sbs.write_side_by_side(str(tmp_path / "diff.mp4"), renderer, moving, still, "couple", audio, SR,
                                       spaces=(space, space))
    same_path = sbs.write_side_by_side(str(tmp_path / "same.mp4"), renderer, still, still, "couple", None, None,
                                       spaces=(space, space))
    info = read_video_info(diff_path)
    assert info["frames"] == T and info["width"] == 2 * w + sbs.GAP and info["height"] == w + sbs.LABEL_HEIGHT
    assert has_audio_stream(diff_path) and not has_audio_stream(same_path)
    diff, same = _read_frames(diff_path), _read_frames(same_path)
    d_first = np.abs(np.subtract(*_panels(diff[0], w))).mean()
    d_last = np.abs(np.subtract(*_panels(diff[-1], w))).mean()
    s_last = np.abs(np.subtract(*_panels(same[-1], w))).mean()
    assert s_last < 3.5  # identical motions: panels equal up to compression (~2.4 grey levels)
    assert d_last > 3 * max(s_last, 1.0) and d_last > d_first  # the turned head shows on the left only
    left, right = _panels(diff[-1], w)
    assert left.std() > 5 and right.std() > 5  # a head on the background in both panels


def _short_split(root, sample, seconds=0.6):
    """A one-clip test split: the first ``seconds`` of the real sample."""
    d = root / "test"
    d.mkdir(parents=True)
    n, T = int(seconds * SR), int(seconds * FPS)
    stem = sample["speaker2_npz"].name[: -len("_speaker2.npz")]
    for s in (1, 2):
        wav, sr = sf.read(str(sample[f"speaker{s}_wav"]), dtype="float32")
        assert sr == SR
        sf.write(str(d / f"{stem}_speaker{s}.wav"), wav[:n], SR, subtype="FLOAT")
    with np.load(sample["speaker2_npz"]) as z:
        np.savez(d / f"{stem}_speaker2.npz", exp=z["exp"][:T], pose=z["pose"][:T])
    return stem


def test_evaluate_writes_side_by_side_and_fd_split(tmp_path, dualtalk_sample):
    from rsatalker_core.cli import main
    from rsatalker_core.io.video import has_audio_stream, read_video_info

    stem = _short_split(tmp_path / "data", dualtalk_sample)
    out = tmp_path / "out"
    assert main(["evaluate", "--data", str(tmp_path / "data"), "--split", "test", "--config", str(SMALL_CONFIG),
                 "--out", str(out), "--curves", "0", "--side-by-side", "1"]) == 0
    video = out / f"side_by_side_{stem}_speaker2.mp4"
    info = read_video_info(str(video))
    assert info["frames"] == 15 and info["width"] == 2 * 64 + sbs.GAP and has_audio_stream(str(video))
    left, right = _panels(_read_frames(video)[7], 64)
    assert np.abs(left - right).mean() > 1.0  # real head pose vs an untrained model's
    report = (out / "report.md").read_text()
    assert f"side_by_side_{stem}_speaker2.mp4" in report and "FD: constant offset vs dynamics" in report
    terms = json.loads((out / "metrics.json").read_text())["fd_terms"]
    for row in ("model", "no_social", "no_partner", "mean_pose"):
        for g in ("JAW", "POSE"):
            t = terms[row][g]
            assert t["fd"] == pytest.approx(t["offset"] + t["centred"], rel=1e-4, abs=1e-10)
    # the mean pose is constant: its centred term is tr(Sigma_gt), the same for JAW as zero motion's
    with np.load(tmp_path / "data" / "test" / f"{stem}_speaker2.npz") as z:
        jaw = z["pose"][:, 3:].astype(np.float64)
    assert terms["mean_pose"]["JAW"]["centred"] == pytest.approx(np.trace(np.cov(jaw, rowvar=False)), rel=1e-3)


def test_evaluate_rejects_negative_side_by_side(tmp_path, dualtalk_sample, capsys):
    from rsatalker_core.cli import main

    _short_split(tmp_path / "data", dualtalk_sample)
    assert main(["evaluate", "--data", str(tmp_path / "data"), "--config", str(SMALL_CONFIG),
                 "--out", str(tmp_path / "out"), "--side-by-side", "-1"]) == 2
    assert "--side-by-side" in capsys.readouterr().err
