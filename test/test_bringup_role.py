"""``rsatalker_bringup --role screen|robot`` (issue 11.6; docs/ros.md "Robot role").

* :func:`rsatalker_ros.bringup.audio_sources`: on a screen the avatar's speech is the file or
  the microphone; on a robot it is the robot's TTS topic (through the audio_adapter) and the
  microphone, or the partner file, is the partner; contradictions are refused.
* The composed graph as a robot, for real: the test publishes TTS chunks on ``robot/speech``;
  they come out on ``audio/self`` (role self, same samples) from the audio_adapter, the
  partner file plays on ``audio/partner``, no microphone node runs, and the motion node,
  brought up through its lifecycle by the bringup, publishes FLAME frames driven by it.
"""

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rsatalker_core.errors import ConfigError  # noqa: E402
from rsatalker_ros.bringup import audio_sources, build_parser  # noqa: E402
from rsatalker_ros.testing import REPO, NodeProcess, RosHarness, free_domain_id, ros_env  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"


def _sources(*argv):
    return audio_sources(build_parser().parse_args(list(argv)))


def test_audio_sources_per_role():
    # screen (default): unchanged behaviour
    assert _sources("--self-audio", "b.wav") == [("player", "self", "b.wav")]
    assert _sources("--self-audio", "b.wav", "--partner-audio", "a.wav") == [
        ("player", "self", "b.wav"), ("player", "partner", "a.wav")]
    assert _sources() == [("capture", "self", "")]
    assert _sources("--input-source", "mic", "--partner-audio", "a.wav") == [
        ("capture", "self", ""), ("player", "partner", "a.wav")]
    # robot: the TTS topic is self; the microphone, or the partner file, is the partner
    assert _sources("--role", "robot") == [("adapter", "self", "robot/speech"), ("capture", "partner", "")]
    assert _sources("--role", "robot", "--robot-speech-topic", "/tts/audio", "--partner-audio", "a.wav") == [
        ("adapter", "self", "/tts/audio"), ("player", "partner", "a.wav")]
    assert _sources("--role", "robot", "--partner-video", "v.mp4") == [("adapter", "self", "robot/speech")]
    with pytest.raises(ConfigError, match="--self-audio"):
        _sources("--role", "robot", "--self-audio", "b.wav")
    with pytest.raises(ConfigError, match="--partner-audio"):
        _sources("--role", "robot", "--input-source", "file")
    with pytest.raises(ConfigError, match="needs --self-audio"):
        _sources("--input-source", "file")
    with pytest.raises(SystemExit):  # argparse refuses an unknown role
        _sources("--role", "kiosk")


def test_bringup_as_robot_relays_tts_as_self_and_plays_the_partner(dualtalk_sample, tmp_path):
    from rsatalker.msg import AudioChunk, FlameParams
    from rsatalker_core.speech.audio import load_audio
    from rsatalker_ros import topics
    from rsatalker_ros.conversions import array_to_audio_chunk, audio_chunk_to_array

    domain = free_domain_id()
    partner_wav = str(dualtalk_sample["speaker1_wav"])
    proc = NodeProcess("rsatalker_ros.bringup", [], ros_env(domain), tmp_path / "bringup.log", args=[
        "--role", "robot", "--partner-audio", partner_wav, "--duration", "12", "--no-render",
        "--config", str(SMALL_CONFIG), "--executor", "multi"])
    try:
        with RosHarness(domain) as h:
            got = {"self": [], "partner": [], "flame": []}
            h.node.create_subscription(AudioChunk, "audio/self", got["self"].append, topics.AUDIO_SUB_QOS)
            h.node.create_subscription(AudioChunk, "audio/partner", got["partner"].append, topics.AUDIO_SUB_QOS)
            h.node.create_subscription(FlameParams, "avatar/flame_params", got["flame"].append, topics.FLAME_SUB_QOS)
            tts = h.node.create_publisher(AudioChunk, "robot/speech", topics.AUDIO_PUB_QOS)

            def adapter_listens():
                return any(i.node_name == "audio_adapter" for i in h.node.get_subscriptions_info_by_topic("/robot/speech"))

            assert h.spin_until(adapter_listens, 90.0, step=0.2), proc.log()[-3000:]
            assert h.spin_until(lambda: bool(got["partner"]), 30.0), proc.log()[-3000:]
            # 3 s of "TTS" in real time, each 40-ms chunk recognisable by its values
            sr, n = 16000, 640
            sent = []
            t0 = time.monotonic()
            for k in range(75):
                x = (0.2 * np.sin(2 * np.pi * 220 * (np.arange(n) + k * n) / sr) + 0.001 * k).astype(np.float32)
                tts.publish(array_to_audio_chunk(x, sr, stamp_ns=h.node.get_clock().now().nanoseconds,
                                                 frame_id="tts"))
                sent.append(x)
                h.spin_until(lambda: False, max(0.0, t0 + (k + 1) * 0.04 - time.monotonic()))
            assert h.spin_until(lambda: len(got["self"]) >= 70 and len(got["flame"]) >= 25, 30.0), \
                (len(got["self"]), len(got["flame"]), proc.log()[-3000:])

            # audio/self: the robot's speech, from the adapter, role self, samples intact
            (pub_info,) = h.node.get_publishers_info_by_topic("/audio/self")
            assert pub_info.node_name == "audio_adapter"
            assert all(m.role == "self" for m in got["self"])
            relayed = [audio_chunk_to_array(m)[0] for m in got["self"]]
            matched = sum(any(np.allclose(r, s, atol=1e-6) for s in sent[max(0, i - 5):i + 6])
                          for i, r in enumerate(relayed))
            assert matched >= 0.95 * len(relayed), (matched, len(relayed))
            # audio/partner: the partner file, from its player
            partner_pubs = {i.node_name for i in h.node.get_publishers_info_by_topic("/audio/partner")}
            assert partner_pubs == {"audio_player_partner"}
            assert all(m.role == "partner" for m in got["partner"])
            wav, wsr = load_audio(partner_wav, 16000)
            first = audio_chunk_to_array(got["partner"][0])[0]
            hits = np.flatnonzero(np.isclose(wav[: 40 * sr], first[0], atol=1e-6))
            assert any(np.allclose(wav[j:j + len(first)], first, atol=1e-4) for j in hits)
            # no microphone node on a robot given a partner file; the motion node is active
            names = {n for n, _ in h.node.get_node_names_and_namespaces()}
            assert "audio_capture" not in names and {"motion_node", "audio_adapter"} <= names
            assert np.isfinite([np.asarray(f.head_pose) for f in got["flame"]]).all()
        assert proc.wait(60.0) == 0, proc.log()[-3000:]
    finally:
        if proc.alive():
            proc.stop()
