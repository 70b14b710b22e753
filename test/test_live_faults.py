"""Fault test of the live graph (issue 12): the motion node, run for real as its own process
under rclpy, is fed speech in real time (40-ms chunks at 16 kHz) plus the partner's FLAME
at 25 Hz, and hit with faults: a huge self-audio chunk (1e20), a huge partner FLAME
message (1e30), a NaN partner audio chunk, one second at an odd sample rate (44099 Hz), a
half-second dropout, and relationship flips. After each fault the FLAME rate measured from
1 s to 2 s after it must be 25 fps (the node logs and drops the bad input, nothing
non-finite is published, and the node stays alive).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rsatalker.msg import AudioChunk, FlameParams  # noqa: E402
from rsatalker_core.config import FPS  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import (  # noqa: E402
    array_to_flame_params,
    flame_params_to_array,
    make_header,
    relationship_to_msg,
)
from rsatalker_ros.testing import REPO, NodeProcess, RosHarness, free_domain_id, ros_env  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

# QoS that match whatever the node uses: reliable (+ transient-local) publishers match
# reliable and best-effort, volatile and latched subscriptions; a best-effort subscription
# matches any publisher.
PUB_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
SUB_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)

SMALL_CONFIG = REPO / "config" / "test_small.yaml"
SR = 16000
CHUNK = SR // FPS  # 640 samples = 40 ms


def _speech(dualtalk_sample_dir, seconds: float) -> np.ndarray:
    """Real speech when the DualTalk sample is present, else a syllable-rate AM noise."""
    wav_path = dualtalk_sample_dir / "UbjUDM1MiGE_sub_video_72_speaker2.wav" if dualtalk_sample_dir else None
    n = int(seconds * SR)
    if wav_path is not None and wav_path.is_file():
        from rsatalker_core.speech.audio import load_audio

        wav, _ = load_audio(str(wav_path), SR)
        return np.resize(wav, n).astype(np.float32)
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    return (0.2 * rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _chunk(samples: np.ndarray, sr: int, stamp_ns: int, role: str) -> AudioChunk:
    """AudioChunk built field by field, so out-of-range values reach the node unchecked."""
    msg = AudioChunk()
    msg.header = make_header(stamp_ns, "test")
    msg.role, msg.sample_rate = role, int(sr)
    msg.samples = samples.astype(np.float32).tolist()
    return msg


def _huge_flame(stamp_ns: int) -> FlameParams:
    msg = array_to_flame_params(np.zeros(56, np.float32), stamp_ns=stamp_ns)
    msg.expression = [1e30] * 50
    msg.head_pose = np.full(3, 1e30, np.float32)
    return msg


def test_flame_rate_recovers_within_a_second_of_each_fault(tmp_path):
    from pathlib import Path

    domain = free_domain_id()
    env = ros_env(domain)
    motion = NodeProcess("rsatalker_ros.nodes.motion_node", ["-p", f"config_file:={SMALL_CONFIG}"], env,
                         tmp_path / "motion.log")
    sample_dir = Path(REPO).parent / "shared" / "data" / "dualtalk_sample"
    speech = _speech(sample_dir if sample_dir.is_dir() else None, 40.0)
    flames = []  # (receive time, FlameParams)
    # Fault schedule, seconds after the first FLAME frame arrived.
    faults = {3.0: "huge self audio", 5.0: "huge partner FLAME", 7.0: "NaN partner audio",
              9.0: "44099 Hz for 1 s", 12.0: "0.5-s dropout", 14.0: "relationship flips"}
    total = 17.0
    try:
        with RosHarness(domain) as h:
            node = h.node
            node.create_subscription(FlameParams, topics.AVATAR_FLAME,
                                     lambda m: flames.append((time.monotonic(), m)), SUB_QOS)
            pub_self = node.create_publisher(AudioChunk, topics.AUDIO_SELF, PUB_QOS)
            pub_partner = node.create_publisher(AudioChunk, topics.AUDIO_PARTNER, PUB_QOS)
            pub_pflame = node.create_publisher(FlameParams, topics.PARTNER_FLAME, PUB_QOS)
            pub_rel = node.create_publisher(type(relationship_to_msg("couple")), topics.RELATIONSHIP, LATCHED_QOS)
            assert h.spin_until(lambda: pub_self.get_subscription_count() > 0, 60.0, 0.05), motion.log()[-3000:]

            t0 = time.monotonic()
            stamp0 = time.time_ns()
            k = 0  # chunks sent (one per 40 ms of media time)
            t_first = None
            fault_times = {}
            done = set()
            odd_pos = 0
            while True:
                now = time.monotonic()
                if t_first is None and flames:
                    t_first = flames[0][0]
                rel_t = None if t_first is None else now - t_first
                if rel_t is not None and rel_t > total:
                    break
                if now - t0 > 120:
                    pytest.fail("no FLAME output:\n" + motion.log()[-3000:])
                while t0 + k / FPS <= now:  # real-time pacing of the inputs
                    stamp = stamp0 + k * 1_000_000_000 // FPS
                    r = None if t_first is None else (t0 + k / FPS) - t_first
                    seg = speech[(k * CHUNK) % (len(speech) - CHUNK):][:CHUNK]
                    fault = next((f for f in faults if r is not None and r >= f and f not in done), None)
                    if fault is not None:
                        done.add(fault)
                        fault_times[faults[fault]] = t0 + k / FPS
                    name = faults.get(fault)
                    dropout = r is not None and 12.0 <= r < 12.5
                    odd = r is not None and 9.0 <= r < 10.0
                    if name == "huge self audio":
                        pub_self.publish(_chunk(np.full(CHUNK, 1e20), SR, stamp, "self"))
                    elif odd:  # the same 40 ms at 44099 Hz (1764 samples)
                        n = 44099 * (k + 1) // FPS - 44099 * k // FPS
                        odd_seg = np.interp(np.linspace(0, CHUNK - 1, n), np.arange(CHUNK), seg)
                        pub_self.publish(_chunk(odd_seg, 44099, stamp, "self"))
                        odd_pos += 1
                    elif not dropout:
                        pub_self.publish(_chunk(seg, SR, stamp, "self"))
                    if name == "NaN partner audio":
                        pub_partner.publish(_chunk(np.full(CHUNK, np.nan), SR, stamp, "partner"))
                    else:
                        pub_partner.publish(_chunk(0.1 * seg[::-1].copy(), SR, stamp, "partner"))
                    if name == "huge partner FLAME":
                        pub_pflame.publish(_huge_flame(stamp))
                    else:
                        pub_pflame.publish(array_to_flame_params(np.full(56, 0.01, np.float32), stamp_ns=stamp))
                    if name == "relationship flips":
                        for i in range(10):
                            pub_rel.publish(relationship_to_msg(("siblings", "couple")[i % 2]))
                    k += 1
                h.executor.spin_once(timeout_sec=0.005)
            assert motion.alive(), motion.log()[-3000:]
            assert odd_pos >= 20
    finally:
        code = motion.stop()
    assert code == 0, motion.log()[-3000:]

    log = motion.log()
    assert "dropped self audio chunk" in log and "dropped partner FLAME" in log, log[-3000:]
    t = np.array([x[0] for x in flames])
    for m in (x[1] for x in flames):
        assert np.isfinite(flame_params_to_array(m)).all()
    rates = {}
    for name, tf in fault_times.items():
        start = tf + (0.5 if name == "0.5-s dropout" else 0.0) + 1.0  # a second after the fault ends
        n = int(((t >= start) & (t < start + 1.0)).sum())
        rates[name] = n
    assert set(rates) == set(faults.values()), rates
    bad = {k: v for k, v in rates.items() if not 22 <= v <= 28}
    assert not bad, f"FLAME frames in the second after each fault (want 25): {rates}"
