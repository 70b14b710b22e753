"""The composed graph (rsatalker_ros.bringup) as a user runs it: one process, real speech,
real rclpy with a MultiThreadedExecutor; it writes motion.npz, avatar.mp4 and summary.json.
"""

import json

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rsatalker_core.config import load_config  # noqa: E402
from rsatalker_core.io.motion_npz import load_motion_npz  # noqa: E402
from rsatalker_core.io.video import has_audio_stream, read_video_info  # noqa: E402
from rsatalker_ros.testing import REPO, NodeProcess, free_domain_id, ros_env  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"


def test_bringup_file_input_writes_recordings(dualtalk_sample, tmp_path):
    out = tmp_path / "out"
    seconds = 4.0
    proc = NodeProcess(
        "rsatalker_ros.bringup",
        [],
        ros_env(free_domain_id()),
        tmp_path / "bringup.log",
        args=[
            "--self-audio", str(dualtalk_sample["speaker2_wav"]),
            "--partner-audio", str(dualtalk_sample["speaker1_wav"]),
            "--relationship", "parent_child",
            "--duration", str(seconds),
            "--config", str(SMALL_CONFIG),
            "--output-dir", str(out),
        ],
    )
    assert proc.wait(150.0) == 0, proc.log()[-4000:]

    cfg = load_config(str(SMALL_CONFIG))
    s = cfg.streaming
    expected = (int(seconds * 25) - s.lookahead_frames) // s.hop_frames * s.hop_frames
    summary = json.loads((out / "summary.json").read_text())
    assert summary["flame_messages"] == expected and summary["missing_frames"] == 0, summary
    assert summary["first_frame"] == 0 and summary["last_frame"] == expected - 1
    assert summary["relationships"] == ["parent_child"]
    # (the 25 fps rate is asserted on the separate-process graph in test_ros_integration; in
    # one process CPU rendering competes with inference for the GIL, and file input
    # favours complete recordings over pace)
    assert summary["flame_fps"] > 0
    assert summary["images"] >= 2
    # Stamps are carried through: latency is positive and bounded by the clip length (a wrong
    # or missing stamp gives a negative value or decades). Its size on a given machine is a
    # benchmark figure (benchmarks/), not a test threshold.
    lat = summary["latency_after_source_stamp_ms"]
    assert 0.0 < lat["p50"] <= lat["p95"] < seconds * 1000.0 + 5000.0, lat

    motion = load_motion_npz(str(out / "motion.npz"))
    assert motion.shape == (expected, 56) and np.isfinite(motion).all()
    assert motion.std(axis=0).max() > 0

    info = read_video_info(str(out / "avatar.mp4"))
    assert (info["width"], info["height"]) == (64, 64)
    assert abs(info["frames"] - expected) <= 1 and abs(info["fps"] - 25.0) < 0.5
    assert has_audio_stream(str(out / "avatar.mp4"))
