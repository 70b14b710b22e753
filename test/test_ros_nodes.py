"""Single nodes as real processes: failure modes a user meets first.

* audio_capture on a machine without an audio input device logs ONE clear error, stays
  alive and discoverable, and exits cleanly on Ctrl-C;
* audio_player plays a real file at real-time pace (chunk count, sizes, stamps) and exits
  by itself; with a missing file it exits 1 naming the file;
* motion_node with an unknown relationship at start-up exits 1 with a message listing the
  valid ones.
The three processes of a test run side by side to keep the wall time down.
"""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rsatalker.msg import AudioChunk  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import audio_chunk_to_array, time_to_ns  # noqa: E402
from rsatalker_ros.testing import REPO, NodeProcess, RosHarness, free_domain_id, ros_env  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"


def _has_input_device() -> bool:
    try:
        import sounddevice as sd

        sd.query_devices(kind="input")
        return True
    except Exception:
        return False


def test_capture_without_device_and_bad_startup_values(tmp_path):
    if _has_input_device():
        pytest.skip("this machine has an audio input device")
    domain = free_domain_id()
    env = ros_env(domain)
    capture = NodeProcess(
        "rsatalker_ros.nodes.audio_capture", ["-p", "retry_seconds:=0.5"], env, tmp_path / "capture.log"
    )
    missing = tmp_path / "no_such.wav"
    player = NodeProcess("rsatalker_ros.nodes.audio_player", ["-p", f"file:={missing}"], env, tmp_path / "player.log")
    motion = NodeProcess(
        "rsatalker_ros.nodes.motion_node",
        ["-p", f"config_file:={SMALL_CONFIG}", "-p", "relationship:=frenemies"],
        env, tmp_path / "motion.log",
    )
    try:
        with RosHarness(domain) as h:
            assert h.spin_until(lambda: "audio_capture" in h.node_names(), 90.0, step=0.2), capture.log()
            t_seen = time.monotonic()
            # several retries happen meanwhile (every 0.5 s); the error is still logged once
            h.spin_until(lambda: time.monotonic() - t_seen > 3.0, 5.0)
            assert capture.alive()
            assert "audio_capture" in h.node_names()
            assert h.node.count_publishers(topics.AUDIO_SELF) == 1
        assert player.wait(60.0) == 1
        assert motion.wait(90.0) == 1
    finally:
        code = capture.stop()
    assert code == 0
    log = capture.log()
    assert log.count("no usable audio input device") == 1, log
    assert "PortAudioError" in log or "OSError" in log
    assert "keeps running" in log
    plog = player.log()
    assert "AudioError" in plog and str(missing) in plog and "Traceback" not in plog
    mlog = motion.log()
    assert "frenemies" in mlog and "couple" in mlog and "Traceback" not in mlog


def test_player_publishes_real_time_chunks(dualtalk_sample, tmp_path):
    domain = free_domain_id()
    env = ros_env(domain)
    got = []
    with RosHarness(domain) as h:
        h.node.create_subscription(
            AudioChunk, topics.AUDIO_PARTNER, lambda m: got.append((time.monotonic(), m)), topics.AUDIO_QOS
        )
        player = NodeProcess(
            "rsatalker_ros.nodes.audio_player",
            ["-p", f"file:={dualtalk_sample['speaker1_wav']}", "-p", "role:=partner",
             "-p", "start_seconds:=1.0", "-p", "duration_seconds:=2.0", "-p", "wait_for_subscribers:=1"],
            env, tmp_path / "player.log",
        )
        try:
            assert h.spin_until(lambda: not player.alive(), 90.0, step=0.05), player.log()
            h.spin_for(0.3)
        finally:
            code = player.stop()
    assert code == 0, player.log()
    assert "finished playing" in player.log()
    assert len(got) == 50, f"{len(got)} chunks for 2 s of 40 ms chunks"
    t = np.array([x[0] for x in got])
    assert 1.6 < t[-1] - t[0] < 2.4, "not real-time pace"
    stamps = np.array([time_to_ns(m.header.stamp) for _, m in got])
    np.testing.assert_allclose(np.diff(stamps), 40_000_000, atol=2)
    samples = []
    for _, m in got:
        x, sr = audio_chunk_to_array(m)
        assert sr == 16000 and m.role == "partner" and x.size == 640
        samples.append(x)
    # the published audio is the file's [1 s, 3 s) segment
    from rsatalker_core.speech.audio import load_audio

    wav, _ = load_audio(dualtalk_sample["speaker1_wav"])
    np.testing.assert_array_equal(np.concatenate(samples), wav[16000:48000])
