"""Recording sessions as rosbag2 bags and evaluating them (``rsatalker evaluate-bag``).

* test_bringup_bag_round_trip: the composed graph (separate process, real speech, small
  config) records an MCAP bag through the recorder node; evaluate-bag finds every FLAME frame
  the recorder counted, positive and bounded latency, the mp4 has one frame per FLAME frame
  and the self audio; the bag carries the message definitions (read back with the ``mcap``
  library, and decoded independently of rosbags with ``mcap_ros2``).
* synthetic bags written here with rosbags (MCAP and sqlite3) with known receive times,
  stamps, gaps, relationship switch, images and audio: every reported figure is checked
  against the values the bag was built with.
* the recorder node in-process: sqlite3 storage, relationship messages recorded; a bag path
  that exists is logged and the node keeps recording in memory.
* bad input: missing file, not a bag, bag without FLAME topic, --video without images.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from rsatalker_core.cli import main as cli_main
from rsatalker_core.evaluation.bag import (
    evaluate_session,
    export_video,
    read_session,
    session_audio,
    session_video_frames,
)
from rsatalker_core.io.bag_types import session_typestore
from rsatalker_core.io.video import has_audio_stream, read_video_info

REPO = Path(__file__).resolve().parents[1]
SMALL_CONFIG = REPO / "config" / "test_small.yaml"
SR = 16000
SPF = SR // 25  # samples per 25 fps frame
T0 = 1_700_000_000_000_000_000  # ns
FRAME_NS = 40_000_000
MISSING = (7, 8)
N = 20


def _motion(k: int) -> np.ndarray:
    m = np.zeros(56, np.float32)
    m[:50] = np.sin(np.arange(50) * 0.1 + k * 0.3)
    m[50:53] = [0.01 * k, 0.0, 0.0]
    m[53:56] = [0.0, 0.02 * np.cos(k), 0.0]
    return m


def _write_synthetic_bag(path, storage, images=True, flame=True):
    """FLAME frames 0..19 without 7 and 8, received at k*40 ms with source_stamp 100 ms
    earlier; couple until frame 9, siblings from 10; an image for every even frame 50 ms
    after its frame; self audio chunks of one frame (value k/100) stamped at frame k."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = session_typestore()
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]

    def time(ns):
        return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {}
        for topic, msgtype in [("/avatar/flame_params", "rsatalker/msg/FlameParams"),
                               ("/avatar/image", "sensor_msgs/msg/Image"),
                               ("/audio/self", "rsatalker/msg/AudioChunk"),
                               ("/relationship", "rsatalker/msg/Relationship")]:
            if flame or topic == "/audio/self":
                conns[topic] = w.add_connection(topic, msgtype, typestore=ts)
        for k in range(N):
            stamp = T0 + k * FRAME_NS
            chunk = T["rsatalker/msg/AudioChunk"](header=Header(stamp=time(stamp), frame_id="b.wav"), role="self",
                                                  sample_rate=SR, samples=np.full(SPF, k / 100, np.float32))
            w.write(conns["/audio/self"], stamp + 1_000_000, ts.serialize_cdr(chunk, chunk.__msgtype__))
            if k in MISSING or not flame:
                continue
            recv = stamp + 200_000_000
            m = _motion(k)
            msg = T["rsatalker/msg/FlameParams"](
                header=Header(stamp=time(stamp), frame_id="avatar"), expression=m[:50], jaw_pose=m[50:53],
                head_pose=m[53:56], eye_pose=np.zeros(6, np.float32), frame_index=k,
                relationship="couple" if k < 10 else "siblings", source_stamp=time(recv - 100_000_000))
            w.write(conns["/avatar/flame_params"], recv, ts.serialize_cdr(msg, msg.__msgtype__))
            if images and k % 2 == 0:
                img = T["sensor_msgs/msg/Image"](header=Header(stamp=time(stamp), frame_id="avatar"), height=8,
                                                 width=8, encoding="rgb8", is_bigendian=0, step=24,
                                                 data=np.full(8 * 8 * 3, 10 * k, np.uint8))
                w.write(conns["/avatar/image"], recv + 50_000_000, ts.serialize_cdr(img, img.__msgtype__))
            if k == 10:
                rel = T["rsatalker/msg/Relationship"](header=Header(stamp=time(recv), frame_id=""), name="siblings",
                                                      blood=True, equal=True)
                w.write(conns["/relationship"], recv - 20_000_000, ts.serialize_cdr(rel, rel.__msgtype__))
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_evaluate_synthetic_bag(tmp_path, storage):
    bag = _write_synthetic_bag(tmp_path / "session", storage)
    s = read_session(str(bag))
    present = [k for k in range(N) if k not in MISSING]
    gt = np.stack([_motion(k) for k in range(N)])
    r = evaluate_session(s, gt=gt)

    assert r["flame"]["frames"] == len(present) and (r["flame"]["first_index"], r["flame"]["last_index"]) == (0, N - 1)
    assert r["dropped"] == {"count": 2, "gaps": [[7, 8]], "duplicates": 0}
    # received at k * 40 ms: 18 frames over 0.76 s; inter-arrival 16 x 40 ms and 1 x 120 ms
    assert r["flame"]["fps_mean"] == pytest.approx(17 / 0.76)
    assert r["flame"]["jitter_ms"] == pytest.approx(np.std([40.0] * 16 + [120.0]))
    assert r["flame"]["interarrival_ms"]["max"] == pytest.approx(120.0)
    lat = r["latency_ms"]
    assert lat["flame"]["n"] == len(present)
    for key in ("mean", "p50", "p95"):
        assert lat["flame"][key] == pytest.approx(100.0)
        assert lat["image"][key] == pytest.approx(150.0)
    assert lat["image"]["n"] == len([k for k in present if k % 2 == 0])
    rel = r["relationship"]
    assert rel["initial"] == "couple"
    assert rel["switches"] == [{"time_s": pytest.approx(10 * 0.04), "frame_index": 10, "from": "couple",
                                "to": "siblings"}]
    assert [m["name"] for m in rel["messages"]] == ["siblings"]
    assert r["audio"]["self"] == {"chunks": N, "seconds": pytest.approx(N / 25)}
    # the dropped frames hold the previous one, so the metrics see frame 6 three times
    assert r["motion_metrics"]["MSE-EXP"] == pytest.approx(
        np.mean((gt[[6, 6]] - gt[[7, 8]])[:, :50] ** 2) * 2 / N, rel=1e-5)
    json.dumps(r)  # serialisable

    frames = session_video_frames(s)
    assert len(frames) == N
    # each frame shows its own render, else the last earlier one (images: even frames that arrived)
    rendered = [j for j in present if j % 2 == 0]
    assert [int(f[0, 0, 0]) for f in frames] == [10 * max(j for j in rendered if j <= k) for k in range(N)]
    audio, sr = session_audio(s, "self")
    assert sr == SR and audio.size == N * SPF
    assert np.allclose(audio[::SPF], np.arange(N) / 100)


def test_export_video_and_rerender(tmp_path, small_cfg):
    s = read_session(str(_write_synthetic_bag(tmp_path / "with_images", "mcap")))
    info = export_video(s, str(tmp_path / "a.mp4"))
    assert info == {"path": str(tmp_path / "a.mp4"), "frames": N, "audio": True, "source": "bag images"}
    v = read_video_info(str(tmp_path / "a.mp4"))
    assert v["frames"] == N and (v["width"], v["height"]) == (8, 8) and has_audio_stream(str(tmp_path / "a.mp4"))

    bare = read_session(str(_write_synthetic_bag(tmp_path / "no_images", "mcap", images=False)))
    from rsatalker_core.evaluation.bag import BagError

    with pytest.raises(BagError, match="--rerender"):
        export_video(bare, str(tmp_path / "b.mp4"))
    info = export_video(bare, str(tmp_path / "b.mp4"), rerender=True, config=str(SMALL_CONFIG), device="cpu")
    assert info["frames"] == N and info["source"] == "re-rendered" and info["audio"]
    v = read_video_info(str(tmp_path / "b.mp4"))
    assert v["frames"] == N and (v["width"], v["height"]) == (small_cfg.render.width, small_cfg.render.height)


def _run_cli(argv, capsys):
    rc = cli_main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_evaluate_bag_cli_errors(tmp_path, capsys):
    rc, _, err = _run_cli(["evaluate-bag", str(tmp_path / "missing.mcap")], capsys)
    assert rc == 2 and err.count("error:") == 1 and "missing.mcap" in err

    junk = tmp_path / "junk.mcap"
    junk.write_text("not a bag at all\n")
    rc, _, err = _run_cli(["evaluate-bag", str(junk)], capsys)
    assert rc == 2 and err.startswith("error:") and "not a readable rosbag2" in err and len(err.splitlines()) == 1

    no_flame = _write_synthetic_bag(tmp_path / "audio_only", "mcap", flame=False)
    rc, _, err = _run_cli(["evaluate-bag", str(no_flame)], capsys)
    assert rc == 2 and "no avatar/flame_params topic" in err and "/audio/self" in err

    no_images = _write_synthetic_bag(tmp_path / "no_images", "sqlite3", images=False)
    rc, _, err = _run_cli(["evaluate-bag", str(no_images), "--video", str(tmp_path / "v.mp4")], capsys)
    assert rc == 2 and "--rerender" in err and not (tmp_path / "v.mp4").exists()


def test_evaluate_bag_cli_report(tmp_path, capsys):
    bag = _write_synthetic_bag(tmp_path / "session", "mcap")
    gt = tmp_path / "gt.npz"
    from rsatalker_core.io.motion_npz import save_motion_npz

    save_motion_npz(str(gt), np.stack([_motion(k) for k in range(N)]))
    out = tmp_path / "eval"
    rc, table, err = _run_cli(["evaluate-bag", str(bag / "session.mcap"), "--out", str(out), "--gt-npz", str(gt)],
                              capsys)
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["dropped"]["count"] == 2 and "MSE-EXP" in report["motion_metrics"]
    assert report["video"]["frames"] == N and read_video_info(str(out / "session.mp4"))["frames"] == N
    assert "couple -> siblings" in table and "dropped frames" in table


# --------------------------------------------------------------------------- with ROS 2


def _ros():
    pytest.importorskip("rclpy")
    pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")


def test_bringup_bag_round_trip(dualtalk_sample, tmp_path, capsys):
    _ros()
    from mcap.reader import make_reader
    from mcap_ros2.reader import read_ros2_messages

    from rsatalker_core.config import load_config
    from rsatalker_ros.testing import NodeProcess, free_domain_id, ros_env

    out, bag = tmp_path / "out", tmp_path / "session"
    seconds = 4.0
    proc = NodeProcess(
        "rsatalker_ros.bringup", [], ros_env(free_domain_id()), tmp_path / "bringup.log",
        args=["--self-audio", str(dualtalk_sample["speaker2_wav"]),
              "--partner-audio", str(dualtalk_sample["speaker1_wav"]),
              "--relationship", "parent_child", "--duration", str(seconds),
              "--config", str(SMALL_CONFIG), "--output-dir", str(out), "--bag", str(bag)],
    )
    assert proc.wait(150.0) == 0, proc.log()[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    s = load_config(str(SMALL_CONFIG)).streaming
    expected = (int(seconds * 25) - s.lookahead_frames) // s.hop_frames * s.hop_frames
    assert summary["flame_messages"] == expected, summary

    ev = tmp_path / "eval"
    rc, table, err = _run_cli(["evaluate-bag", str(bag), "--out", str(ev),
                               "--gt-npz", str(dualtalk_sample["speaker2_npz"])], capsys)
    assert rc == 0, err
    r = json.loads((ev / "report.json").read_text())
    # every FLAME frame the recorder counted is in the bag, none dropped
    assert r["flame"]["frames"] == r["flame"]["messages"] == summary["flame_messages"]
    assert (r["flame"]["first_index"], r["flame"]["last_index"]) == (summary["first_frame"], summary["last_frame"])
    assert r["dropped"]["count"] == 0
    # latency: positive and bounded (generous: CI has 2 slow cores); the bag's figures are
    # the recorder's own (same receive times)
    lat = r["latency_ms"]["flame"]
    assert 0.0 < lat["p50"] <= lat["p95"] < 10_000.0, lat
    assert lat["p50"] == pytest.approx(summary["latency_after_source_stamp_ms"]["p50"], abs=1e-3)
    if r["latency_ms"]["image"]:
        assert 0.0 < r["latency_ms"]["image"]["p50"] < 10_000.0
    # (the recorder's summary counts distinct image stamps; the bag keeps every message)
    assert r["flame"]["fps_mean"] > 0 and r["images"]["count"] >= summary["images"] >= 2
    # audio is best effort: most of it must be there, never more than was played
    for role in ("self", "partner"):
        assert 0.5 * seconds <= r["audio"][role]["seconds"] <= seconds + 0.05, r["audio"]
    assert r["relationship"]["initial"] == "parent_child" and r["relationship"]["switches"] == []
    assert set(r["motion_metrics"]) >= {"FD-EXP", "MSE-JAW", "STS-POSE"}
    assert "parent_child" in table
    # the mp4: one frame per FLAME frame, the self speech muxed
    info = read_video_info(str(ev / "session.mp4"))
    assert info["frames"] == expected and (info["width"], info["height"]) == (64, 64)
    assert has_audio_stream(str(ev / "session.mp4"))

    # the definitions are in the bag, as any MCAP / rosbag2 tool reads them
    mcap_files = list(bag.glob("*.mcap"))
    assert len(mcap_files) == 1 and (bag / "metadata.yaml").is_file()
    with open(mcap_files[0], "rb") as fh:
        summary_rec = make_reader(fh).get_summary()
    schemas = {sc.name: sc for sc in summary_rec.schemas.values()}
    flame_schema = schemas["rsatalker/msg/FlameParams"]
    assert flame_schema.encoding == "ros2msg"
    text = flame_schema.data.decode()
    for line in ("float32[] expression", "float32[3] jaw_pose", "uint32 frame_index",
                 "builtin_interfaces/Time source_stamp", "MSG: std_msgs/Header"):
        assert line in text, text
    assert {"sensor_msgs/msg/Image", "rsatalker/msg/AudioChunk"} <= set(schemas)
    # decoded from those definitions alone (mcap_ros2, not rosbags): indices and stamps intact
    frames = [m for m in read_ros2_messages(str(mcap_files[0]), topics=["/avatar/flame_params"])]
    idx = [m.ros_msg.frame_index for m in frames]
    assert idx == list(range(summary["first_frame"], summary["last_frame"] + 1))
    stamps = [m.ros_msg.header.stamp.sec * 10**9 + m.ros_msg.header.stamp.nanosec for m in frames]
    assert np.allclose(np.diff(stamps), FRAME_NS, atol=1e3)  # media time: exactly 40 ms apart
    assert all(m.log_time_ns > m.ros_msg.source_stamp.sec * 10**9 + m.ros_msg.source_stamp.nanosec for m in frames)


def test_recorder_node_bag_sqlite3_and_bad_path(tmp_path):
    _ros()
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from rsatalker.msg import FlameParams
    from rsatalker.msg import Relationship as RelationshipMsg
    from rsatalker_ros import topics
    from rsatalker_ros.conversions import array_to_flame_params, relationship_to_msg
    from rsatalker_ros.nodes.recorder import RecorderNode
    from rsatalker_ros.testing import isolated_context

    taken = tmp_path / "taken"
    taken.mkdir()
    ctx = isolated_context()
    try:
        rec = RecorderNode(context=ctx, parameter_overrides=[Parameter("bag_path", value=str(tmp_path / "b")),
                                                             Parameter("bag_storage", value="sqlite3")])
        bad = RecorderNode("recorder_bad", context=ctx, parameter_overrides=[Parameter("bag_path", value=str(taken))])
        assert rec.bag is not None and bad.bag is None  # logged, and it keeps recording in memory
        pub = Node("pub", context=ctx)
        pf = pub.create_publisher(FlameParams, topics.AVATAR_FLAME, topics.FLAME_QOS)
        pr = pub.create_publisher(RelationshipMsg, topics.RELATIONSHIP, topics.RELATIONSHIP_PUB_QOS)
        ex = SingleThreadedExecutor(context=ctx)
        for n in (rec, bad, pub):
            ex.add_node(n)

        def spin_until(pred, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end and not pred():
                ex.spin_once(timeout_sec=0.02)
            return pred()

        assert spin_until(lambda: pf.get_subscription_count() == 2 and pr.get_subscription_count() == 1, 20.0)
        now = rec.get_clock().now().nanoseconds
        pr.publish(relationship_to_msg("superior_subordinate", now))
        for k in range(5):
            pf.publish(array_to_flame_params(_motion(k), stamp_ns=now + k * FRAME_NS, frame_index=k,
                                             relationship="superior_subordinate", source_stamp_ns=now))
        assert spin_until(lambda: len(rec.motion) == 5 and len(bad.motion) == 5
                          and rec.bag.counts.get("/relationship") == 1, 20.0)
        ex.shutdown()
        for n in (rec, bad, pub):
            n.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
    assert not any(taken.iterdir())  # never written into
    assert list((tmp_path / "b").glob("*.db3"))
    s = read_session(str(tmp_path / "b"))
    assert s.flame_index.tolist() == list(range(5))
    assert np.allclose(s.flame_motion, np.stack([_motion(k) for k in range(5)]))
    assert [n for _, n in s.relationship_msgs] == ["superior_subordinate"]
    assert (s.flame_receive_ns >= s.flame_source_ns).all()
    # the topics' QoS is in the bag for ros2 bag play: reliable FLAME, best-effort audio
    from rosbags.interfaces import QosReliability
    from rosbags.rosbag2 import Reader

    with Reader(tmp_path / "b") as reader:
        qos = {c.topic: c.ext.offered_qos_profiles[0].reliability for c in reader.connections}
    assert qos["/avatar/flame_params"] == QosReliability.RELIABLE
    assert qos["/audio/self"] == qos["/avatar/image"] == QosReliability.BEST_EFFORT


def test_typestore_matches_rosidl_and_reports_missing_definitions(tmp_path, monkeypatch):
    import sys

    from rsatalker_core.errors import RsatalkerError
    from rsatalker_core.io import bag_types

    ts = session_typestore()
    built = Path(sys.prefix) / "share" / "rsatalker" / "msg"  # scripts/build_msgs.sh (rosidl) output
    checked = 0
    for name in bag_types.REQUIRED_TYPES:
        desc = built / f"{name.split('/')[-1]}.json"
        if desc.is_file():  # rosidl's type description: the RIHS01 hash rclpy and rosbag2 use
            hashes = {h["type_name"]: h["hash_string"] for h in json.loads(desc.read_text())["type_hashes"]}
            assert ts.hash_rihs01(name) == hashes[name]
            checked += 1
    if not checked:
        pytest.skip("rosidl type descriptions not built (scripts/build_msgs.sh)")

    (tmp_path / "FlameParams.msg").write_text("float32[] expression\n")
    with pytest.raises(RsatalkerError, match="lacks the definitions of rsatalker/msg/AudioChunk"):
        bag_types.custom_msg_types(tmp_path)
    bag = _write_synthetic_bag(tmp_path / "session", "mcap")
    monkeypatch.setattr(bag_types, "_candidates", lambda: [tmp_path / "nowhere"])
    with pytest.raises(RsatalkerError, match="nowhere"):
        bag_types.find_msg_dir()
    # without msg/ files (plain pip install), a bag's own definitions suffice
    assert read_session(str(bag), load_images=False).flame_index.size == N - len(MISSING)
