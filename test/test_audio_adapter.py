"""Audio adapter (issue 11 item 6): robot speech as PCM16 bytes or AudioChunk -> audio/self.

* PCM16 bytes -> float samples: known values, channels averaged, malformed byte counts refused;
* the node under rclpy relays std_msgs/UInt8MultiArray PCM16 and rsatalker/AudioChunk to
  audio/self with the samples intact; a malformed message is dropped; the audio_common mode
  without audio_common_msgs (no PyPI wheel) is refused with a ConfigError naming the package.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")


def test_pcm16_bytes_to_float_samples():
    from rsatalker_ros.conversions import ConversionError, pcm16_to_array

    raw = np.array([0, 16384, -32768, 32767], "<i2").tobytes()
    np.testing.assert_allclose(pcm16_to_array(raw), [0.0, 0.5, -1.0, 32767 / 32768])
    np.testing.assert_allclose(pcm16_to_array(raw, channels=2), [0.25, -0.5 + 0.5 * 32767 / 32768 - 0.0])
    for bad, ch in ((b"", 1), (b"\x00\x01\x02", 1), (raw[:6], 2), (raw, 0)):
        with pytest.raises(ConversionError):
            pcm16_to_array(bad, ch)


def test_node_relays_pcm16_and_chunks_to_self_audio():
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from std_msgs.msg import UInt8MultiArray

    import rclpy
    from rsatalker.msg import AudioChunk
    from rsatalker_core.errors import ConfigError
    from rsatalker_core.io import session_topics as st
    from rsatalker_ros.conversions import array_to_audio_chunk, audio_chunk_to_array
    from rsatalker_ros.nodes.audio_adapter import AudioAdapterNode
    from rsatalker_ros.testing import isolated_context

    ctx = isolated_context()
    try:
        pcm = AudioAdapterNode("pcm_adapter", context=ctx, parameter_overrides=[
            Parameter("input_format", value="pcm16"), Parameter("sample_rate", value=22050)])
        chunk = AudioAdapterNode("chunk_adapter", context=ctx)
        with pytest.raises(ConfigError, match="audio_common_msgs"):
            AudioAdapterNode("ac_adapter", context=ctx, parameter_overrides=[Parameter("input_format", value="audio_common")])
        probe = Node("probe", context=ctx)
        got = []
        probe.create_subscription(AudioChunk, st.AUDIO_SELF.name, got.append, 50)
        pcm_pub = probe.create_publisher(UInt8MultiArray, st.AUDIO_PCM16.name, 10)
        chunk_pub = probe.create_publisher(AudioChunk, st.ROBOT_SPEECH.name, 10)
        ex = SingleThreadedExecutor(context=ctx)
        for n in (pcm, chunk, probe):
            ex.add_node(n)

        def spin_until(pred, timeout=10.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end and not pred():
                ex.spin_once(timeout_sec=0.02)
            return pred()

        assert spin_until(lambda: pcm_pub.get_subscription_count() > 0 and chunk_pub.get_subscription_count() > 0
                          and pcm.pub.get_subscription_count() > 0)
        x = (0.25 * np.sin(np.arange(882) / 7.0) * 32768).astype("<i2")
        pcm_pub.publish(UInt8MultiArray(data=x.tobytes()))
        assert spin_until(lambda: len(got) == 1)
        samples, sr = audio_chunk_to_array(got[0])
        assert sr == 22050 and got[0].role == "self"
        np.testing.assert_allclose(samples, x / 32768.0, atol=1e-6)
        pcm_pub.publish(UInt8MultiArray(data=b"\x01\x02\x03"))  # odd byte count: dropped
        assert spin_until(lambda: pcm.dropped == 1)
        y = np.linspace(-0.5, 0.5, 640).astype(np.float32)
        chunk_pub.publish(array_to_audio_chunk(y, 16000, stamp_ns=123_000_000_000, role="partner"))
        assert spin_until(lambda: len(got) == 2)
        samples, sr = audio_chunk_to_array(got[1])
        assert sr == 16000 and got[1].role == "self" and got[1].header.stamp.sec == 123
        np.testing.assert_allclose(samples, y)
        for n in (pcm, chunk, probe):
            n.destroy_node()
        ex.shutdown()
    finally:
        rclpy.try_shutdown(context=ctx)
