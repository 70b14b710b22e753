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


def test_generate_end_to_end(short_clip, tmp_path):
    rc = main(_args(short_clip, tmp_path, **{"--partner-motion": str(short_clip["speaker2_npz"])}))
    assert rc == 0
    with np.load(tmp_path / "out.npz") as m:
        assert m["exp"].shape == (75, 50) and m["pose"].shape == (75, 6)
        assert np.isfinite(m["exp"]).all() and np.isfinite(m["pose"]).all()
    info = read_video_info(str(tmp_path / "out.mp4"))
    assert info["frames"] == 75 and info["width"] == 64
    assert has_audio_stream(str(tmp_path / "out.mp4"))


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_generate_needs_exactly_one_of_out_video_and_no_video(short_clip, tmp_path):
    with pytest.raises(SystemExit) as both:
        main(_args(short_clip, tmp_path) + ["--no-video"])
    with pytest.raises(SystemExit) as neither:
        main(_args(short_clip, tmp_path, **{"--out-video": None}))
    assert both.value.code == neither.value.code == 2


def test_generate_streams_frames_into_the_video(short_clip, tmp_path, monkeypatch):
    # Frames reach the encoder while rendering goes on (none are collected first), and an
    # interruption mid-render leaves the motion npz but no mp4 and no temporary files.
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]
