"""The ROS graph for real: node mains in separate processes, real rclpy, real DualTalk speech.

Each test runs in its own ROS_DOMAIN_ID with localhost-only discovery. The small config
(config/test_small.yaml: log-mel speech features, a small motion transformer, 64x64
images) keeps CPU time low; the code paths are the production ones.

* test_live_graph: audio players (speaker 2 = self, speaker 1 = partner) -> motion_node ->
  render_node. FLAME parameters arrive at 25 fps +- 10 % with consecutive frame indices,
  the right sizes and finite values; images arrive with the FLAME stamps carried through;
  a live relationship change is applied; an invalid one is refused while frames keep coming.
* test_relationship_change_alters_motion: with self audio and partner FLAME motion as
  input, the published motion equals, frame by frame, the core StreamingMotionGenerator's
  output under the relationship each frame reports; changes by parameter and by the
  relationship topic both apply, and the frames after a change differ from what the old
  relationship gives; stamps are exact; bad audio messages (NaN, sample rate 0) are logged
  and dropped without disturbing anything.
"""

import math
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from rsatalker.msg import AudioChunk, FlameParams  # noqa: E402
from rsatalker.msg import Relationship as RelationshipMsg  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import array_to_audio_chunk, flame_params_to_array, time_to_ns  # noqa: E402
from rsatalker_ros.testing import REPO, NodeProcess, RosHarness, free_domain_id, ros_env  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"

FPS = 25
STARTUP_TIMEOUT = 90.0


def _set_param(h: RosHarness, client: AsyncParameterClient, name: str, value):
    future = client.set_parameters([Parameter(name, value=value)])
    assert h.spin_until(future.done, 10.0), f"no answer to setting {name}"
    return future.result().results[0]


def _wait_for_publishers(h: RosHarness, topic_names, procs):
    def ready():
        for p in procs:
            assert p.alive(), f"{p.module} exited early:\n{p.log()[-3000:]}"
        return all(h.node.count_publishers(t) > 0 for t in topic_names)

    assert h.spin_until(ready, STARTUP_TIMEOUT, step=0.2), "nodes did not come up in time"


def test_live_graph(dualtalk_sample, tmp_path):
    domain = free_domain_id()
    env = ros_env(domain)
    small = ["-p", f"config_file:={SMALL_CONFIG}"]
    motion = NodeProcess("rsatalker_ros.nodes.motion_node", small, env, tmp_path / "motion.log")
    render = NodeProcess("rsatalker_ros.nodes.render_node", small, env, tmp_path / "render.log")
    procs = [motion, render]
    flames, images = [], []
    try:
        with RosHarness(domain) as h:
            h.node.create_subscription(
                FlameParams, topics.AVATAR_FLAME, lambda m: flames.append((time.monotonic(), m)), topics.FLAME_QOS
            )
            h.node.create_subscription(
                Image, topics.AVATAR_IMAGE, lambda m: images.append((time.monotonic(), m)), topics.IMAGE_QOS
            )
            _wait_for_publishers(h, [topics.AVATAR_FLAME, topics.AVATAR_IMAGE], procs)
            client = AsyncParameterClient(h.node, "motion_node")
            assert client.wait_for_services(timeout_sec=10.0)

            players = [
                NodeProcess(
                    "rsatalker_ros.nodes.audio_player",
                    ["-p", f"file:={dualtalk_sample[key]}", "-p", f"role:={role}", "-p", "duration_seconds:=7.0",
                     "-p", "wait_for_subscribers:=1", "-p", f"config_file:={SMALL_CONFIG}",
                     "-r", f"__node:=player_{role}"],
                    env, tmp_path / f"player_{role}.log",
                )
                for role, key in (("self", "speaker2_wav"), ("partner", "speaker1_wav"))
            ]
            procs += players
            assert h.spin_until(lambda: len(flames) > 0, 60.0, step=0.05), (
                "no FLAME parameters arrived:\n" + motion.log()[-3000:] + players[0].log()[-2000:]
            )
            h.spin_until(lambda: False, 2.0)
            t_change = time.monotonic()
            res = _set_param(h, client, "relationship", "siblings")
            assert res.successful, res.reason
            h.spin_until(lambda: False, 1.5)
            t_invalid = time.monotonic()
            res = _set_param(h, client, "relationship", "frenemies")
            assert not res.successful and "frenemies" in res.reason
            n_at_invalid = len(flames)
            # frames keep coming after the refusal, from the same, still running node
            h.spin_until(lambda: all(not p.alive() for p in players), 30.0, step=0.05)
            assert motion.alive() and render.alive()
            h.spin_until(lambda: False, 1.5)
            for p in players:
                assert p.wait(10.0) == 0, p.log()[-2000:]
    finally:
        codes = {p.module: p.stop() for p in procs if p.proc.returncode is None}
    assert all(c == 0 for c in codes.values()), codes
    assert "refused relationship='frenemies'" in motion.log()

    # ---- FLAME parameters: rate, continuity, sizes, values
    t = np.array([x[0] for x in flames])
    msgs = [x[1] for x in flames]
    assert len(msgs) >= 100, f"only {len(msgs)} FLAME messages"
    fps = (len(t) - 1) / (t[-1] - t[0])
    assert abs(fps - FPS) <= 0.1 * FPS, f"FLAME rate {fps:.2f} fps"
    idx = [m.frame_index for m in msgs]
    assert idx == list(range(idx[0], idx[0] + len(idx))), "frame indices are not consecutive"
    for m in msgs:
        assert len(m.expression) == 50 and m.jaw_pose.shape == (3,) and m.head_pose.shape == (3,)
        assert np.isfinite(flame_params_to_array(m)).all()
        assert time_to_ns(m.source_stamp) >= time_to_ns(m.header.stamp) > 0
    motion_arr = np.stack([flame_params_to_array(m) for m in msgs])
    assert motion_arr.std(axis=0).max() > 0, "the motion never changes"

    # ---- relationship: couple before the change, siblings after, 'frenemies' never
    rels = [m.relationship for m in msgs]
    assert set(rels) == {"couple", "siblings"}
    switch = rels.index("siblings")
    assert all(r == "couple" for r in rels[:switch]) and all(r == "siblings" for r in rels[switch:])
    assert t[switch] >= t_change
    assert len(msgs) - n_at_invalid >= 25, "frames stopped after the invalid relationship"
    assert t[-1] - t_invalid >= 1.0

    # ---- images: rgb8 at the configured size, stamps carried through from FLAME
    assert len(images) >= 2, f"only {len(images)} images"
    flame_stamps = {time_to_ns(m.header.stamp) for m in msgs}
    for _, img in images:
        assert (img.encoding, img.height, img.width, img.step) == ("rgb8", 64, 64, 192)
        assert len(img.data) == 64 * 64 * 3
        assert time_to_ns(img.header.stamp) in flame_stamps
    stamps = [time_to_ns(img.header.stamp) for _, img in images]
    assert stamps == sorted(stamps)


def test_relationship_change_alters_motion(dualtalk_sample, small_cfg, tmp_path):
    """Self audio (speaker 2's speech) and partner FLAME motion (speaker 2's tracked motion
    from the sample npz, the only motion it ships, standing in for the partner's) are
    published by the test with synthetic stamps; no partner audio, so the node's output is
    a deterministic function of the messages and can be compared with the core exactly."""
    from rsatalker_core.speech.audio import load_audio
    from rsatalker_core.io.motion_npz import load_motion_npz
    from rsatalker_ros.conversions import array_to_flame_params, relationship_to_msg

    domain = free_domain_id()
    env = ros_env(domain)
    motion = NodeProcess(
        "rsatalker_ros.nodes.motion_node",
        # catch_up_frames: one step per chunk even when the machine stalls the node a moment,
        # so the output is the reference's exactly
        ["-p", f"config_file:={SMALL_CONFIG}", "-p", "max_queue_frames:=1000", "-p", "catch_up_frames:=1000"],
        env, tmp_path / "motion.log",
    )
    wav, sr = load_audio(dualtalk_sample["speaker2_wav"], target_sr=16000)
    partner_motion = load_motion_npz(str(dualtalk_sample["speaker2_npz"]))
    spf = sr // FPS
    n_chunks, ahead = 100, 5
    t0 = 1_000_000_000_000
    stamp = [t0 + k * 40_000_000 for k in range(n_chunks + ahead)]
    chunks = [wav[k * spf:(k + 1) * spf] for k in range(n_chunks)]
    # relationship changes: by parameter, then by message on the relationship topic
    by_param, by_topic = 35, 70
    flames = []
    try:
        with RosHarness(domain) as h:
            pub = h.node.create_publisher(AudioChunk, topics.AUDIO_SELF, topics.AUDIO_QOS)
            pub_partner = h.node.create_publisher(FlameParams, topics.PARTNER_FLAME, topics.FLAME_QOS)
            pub_rel = h.node.create_publisher(RelationshipMsg, topics.RELATIONSHIP, topics.RELATIONSHIP_PUB_QOS)
            h.node.create_subscription(FlameParams, topics.AVATAR_FLAME, flames.append, topics.FLAME_QOS)
            client = AsyncParameterClient(h.node, "motion_node")

            def ready():
                assert motion.alive(), motion.log()[-3000:]
                return all(h.node.count_subscribers(t) > 0 for t in (topics.AUDIO_SELF, topics.PARTNER_FLAME,
                                                                      topics.RELATIONSHIP)) \
                    and h.node.count_publishers(topics.AVATAR_FLAME) > 0

            assert h.spin_until(ready, STARTUP_TIMEOUT, step=0.2)
            assert client.wait_for_services(timeout_sec=10.0)
            h.spin_for(0.5)  # let discovery settle both ways
            for k in range(ahead):
                pub_partner.publish(array_to_flame_params(partner_motion[k], stamp_ns=stamp[k], frame_index=k))
            start = time.monotonic()
            for k in range(n_chunks):
                if k == by_param:
                    res = _set_param(h, client, "relationship", "superior_subordinate")
                    assert res.successful, res.reason
                if k == by_topic:
                    pub_rel.publish(relationship_to_msg("blood,equal"))  # siblings
                if k == 20:  # bad messages: logged and dropped; a NaN chunk of a usable rate
                    # and length becomes silence of its span (the frame clock keeps going), so
                    # it stands in for chunk 20 (the reference pushes zeros there)
                    bad = array_to_audio_chunk(chunks[k], sr, stamp[k], "self")
                    bad.samples[3] = math.nan
                    pub.publish(bad)
                if k == 80:
                    bad = array_to_audio_chunk(chunks[k], sr, stamp[k], "self")
                    bad.sample_rate = 0
                    pub.publish(bad)
                # partner motion runs `ahead` frames ahead of the self audio
                j = k + ahead
                pub_partner.publish(array_to_flame_params(partner_motion[j], stamp_ns=stamp[j], frame_index=j))
                if k != 20:
                    pub.publish(array_to_audio_chunk(chunks[k], sr, stamp[k], "self"))
                h.spin_until(lambda: time.monotonic() - start >= (k + 1) / FPS, 1.0, step=0.005)
            hop = small_cfg.streaming.hop_frames
            look = small_cfg.streaming.lookahead_frames
            expected = (n_chunks - look) // hop * hop
            assert h.spin_until(lambda: len(flames) >= expected, 20.0), (
                f"{len(flames)}/{expected} frames:\n{motion.log()[-3000:]}"
            )
            assert motion.alive()
    finally:
        code = motion.stop()
    assert code == 0
    log = motion.log()
    assert "dropped self audio chunk" in log and "NaN/Inf" in log and "sample_rate 0 Hz" in log

    # Reference: the core generator on the same messages (stepped after each self chunk,
    # as the node does), once per relationship.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest on a loaded 2-core machine
    try:
        _compare_with_core(flames, small_cfg, chunks, partner_motion, stamp, sr, n_chunks, ahead, expected)
    finally:
        torch.set_num_threads(threads)


def _compare_with_core(flames, small_cfg, chunks, partner_motion, stamp, sr, n_chunks, ahead, expected):
    from rsatalker_core.model.streaming import StreamingMotionGenerator

    hop = small_cfg.streaming.hop_frames
    look = small_cfg.streaming.lookahead_frames
    refs = {}
    gen = StreamingMotionGenerator(small_cfg)
    for rel in ("couple", "superior_subordinate", "siblings"):
        gen.reset()
        gen.set_relationship(rel)
        for k in range(ahead):
            gen.push_partner_motion(partner_motion[k], stamp[k])
        out = {}
        for k in range(n_chunks):
            gen.push_partner_motion(partner_motion[k + ahead], stamp[k + ahead])
            gen.push_audio("self", chunks[k] if k != 20 else np.zeros_like(chunks[k]), sr, stamp[k])
            out.update({f.index: f.motion for f in gen.step()})
        refs[rel] = out
    got = {m.frame_index: m for m in flames}
    assert sorted(got) == list(range(expected))
    rels = [got[k].relationship for k in sorted(got)]
    # couple, then superior_subordinate (parameter), then siblings (topic), in that order
    assert [r for i, r in enumerate(rels) if i == 0 or rels[i - 1] != r] == \
        ["couple", "superior_subordinate", "siblings"]
    for k, m in got.items():
        np.testing.assert_allclose(flame_params_to_array(m), refs[m.relationship][k], atol=1e-4, rtol=1e-3,
                                   err_msg=f"frame {k} ({m.relationship})")
        # stamps: media time of the frame, and the self chunk that completed it
        assert time_to_ns(m.header.stamp) == stamp[k]
        assert time_to_ns(m.source_stamp) == stamp[(k // hop + 1) * hop - 1 + look]
    # the changes altered the motion: the same input under the old relationship differs
    for rel in ("superior_subordinate", "siblings"):
        changed = [k for k in sorted(got) if got[k].relationship == rel]
        assert len(changed) >= 15, (rel, len(changed))
        old = np.stack([refs["couple"][k] for k in changed])
        new = np.stack([flame_params_to_array(got[k]) for k in changed])
        assert np.abs(new - old).mean() > 1e-3, rel
    # and the partner's motion matters: without it the output differs
    gen.reset()
    gen.set_relationship("couple")
    no_partner = {}
    for k in range(n_chunks):
        gen.push_audio("self", chunks[k], sr, stamp[k])
        no_partner.update({f.index: f.motion for f in gen.step()})
    first = [k for k in sorted(got) if got[k].relationship == "couple"]
    diff = np.abs(np.stack([no_partner[k] for k in first]) - np.stack([refs["couple"][k] for k in first]))
    assert diff.mean() > 1e-4
