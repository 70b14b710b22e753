"""Recordings that survive a kill, and a recorder whose memory stays flat (issue 11 item 8).

* The recorder node runs in its own process recording an MCAP bag; the test publishes
  FLAME frames (25 fps) and rendered images, SIGKILLs the recorder right after the last
  message (no shutdown, no ``metadata.yaml``, no MCAP footer) and ``rsatalker evaluate-bag``
  reads at least 95% of the frames published, in order, values intact.
* In-process, 750 frames of 256x256 images go through the recorder's callbacks: the memory
  Python allocates does not grow with them (held images would be ~147 MB), and ``save()``
  still writes one video frame per motion frame with the audio muxed in.
"""

from __future__ import annotations

import json
import signal
import time
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rsatalker_core.io import session_topics as st  # noqa: E402

FRAME_NS = 40_000_000


def _motion(k: int) -> np.ndarray:
    m = np.zeros(56, np.float32)
    m[0] = 0.01 * k
    m[50] = 0.1 * np.sin(k / 5.0)  # jaw
    return m


def test_sigkilled_recorder_leaves_a_bag_evaluate_bag_reads(tmp_path, capsys):
    from rsatalker_core.cli import main as cli_main
    from rsatalker_ros import topics
    from rsatalker_ros.conversions import array_to_flame_params, array_to_image
    from rsatalker_ros.testing import NodeProcess, RosHarness, free_domain_id, ros_env
    from sensor_msgs.msg import Image

    from rsatalker.msg import FlameParams

    domain = free_domain_id()
    bag = tmp_path / "session"
    proc = NodeProcess("rsatalker_ros.nodes.recorder", ["-p", f"bag_path:={bag}"], ros_env(domain),
                       tmp_path / "recorder.log")
    n = 250  # 10 s at 25 fps
    try:
        with RosHarness(domain) as h:
            flame_pub = h.node.create_publisher(FlameParams, topics.AVATAR_FLAME, topics.FLAME_QOS)
            image_pub = h.node.create_publisher(Image, topics.AVATAR_IMAGE, topics.IMAGE_QOS)
            assert h.spin_until(lambda: flame_pub.get_subscription_count() > 0
                                and image_pub.get_subscription_count() > 0, 60.0), proc.log()[-3000:]
            h.spin_for(0.5)
            t0 = time.monotonic()
            img = np.zeros((64, 64, 3), np.uint8)
            for k in range(n):
                stamp = 10**18 + k * FRAME_NS
                flame_pub.publish(array_to_flame_params(_motion(k), stamp_ns=stamp, frame_index=k,
                                                        relationship="couple", source_stamp_ns=stamp))
                img[:] = k % 256
                image_pub.publish(array_to_image(img, stamp_ns=stamp))
                # real time: the next frame 40 ms after this one
                h.spin_until(lambda: time.monotonic() >= t0 + (k + 1) * 0.04, 1.0, step=0.005)
            assert proc.alive(), proc.log()[-3000:]
            proc.proc.send_signal(signal.SIGKILL)  # right after the last frame: the worst moment
            assert proc.wait(10.0) == -signal.SIGKILL
    finally:
        if proc.alive():
            proc.proc.kill()
            proc.wait(10.0)

    assert bag.is_dir() and not (bag / "metadata.yaml").exists()  # killed: never finished
    mcap = list(bag.glob("*.mcap"))
    assert len(mcap) == 1 and mcap[0].stat().st_size > 0
    out = tmp_path / "eval"
    rc = cli_main(["evaluate-bag", str(bag), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads((out / "report.json").read_text())
    frames = report["flame"]["messages"]
    print(f"recovered {frames}/{n} FLAME frames ({100.0 * frames / n:.1f}%) after SIGKILL")
    assert frames >= 0.95 * n, report["flame"]
    # the recovered frames are the first ones, in order and intact
    from rsatalker_core.evaluation.bag import read_session

    s = read_session(str(bag / mcap[0].name), load_images=False)
    assert list(s.flame_index) == list(range(len(s.flame_index)))
    np.testing.assert_allclose(s.flame_motion, np.stack([_motion(k) for k in range(len(s.flame_index))]))
    assert s.flame_relationship[0] == "couple"
    assert report["images"]["count"] >= 0.9 * n  # best effort, but on one machine nearly all


def test_recorder_memory_is_flat_and_the_video_streams(tmp_path):
    from rclpy.parameter import Parameter

    from rsatalker_core.io.video import has_audio_stream, read_video_info
    from rsatalker_ros.conversions import array_to_flame_params, array_to_image
    from rsatalker_ros.nodes.recorder import RecorderNode
    from rsatalker_ros.testing import isolated_context

    import rclpy

    ctx = isolated_context()
    try:
        rec = RecorderNode(context=ctx, parameter_overrides=[Parameter("output_dir", value=str(tmp_path / "out"))])
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
        n, warm = 750, 150
        tracemalloc.start()
        try:
            for k in range(n):
                stamp = 10**18 + k * FRAME_NS
                if k == warm:
                    tracemalloc.reset_peak()
                    before, _ = tracemalloc.get_traced_memory()
                img = array_to_image(np.roll(base, k, axis=1), stamp_ns=stamp)
                flame = array_to_flame_params(_motion(k), stamp_ns=stamp, frame_index=k, source_stamp_ns=stamp)
                if k % 7 == 3:  # now and then the image overtakes its FLAME frame
                    rec._on_image(img)
                    rec._on_flame(flame)
                elif k % 11 != 5:  # and some frames are never rendered
                    rec._on_flame(flame)
                    rec._on_image(img)
                else:
                    rec._on_flame(flame)
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        growth_mb = (peak - before) / 2**20
        print(f"traced memory over {n - warm} frames of 256x256: +{(after - before) / 2**20:.1f} MB "
              f"(peak +{growth_mb:.1f} MB; held images would be {(n - warm) * base.nbytes / 2**20:.0f} MB)")
        assert growth_mb < 12.0
        assert rec.summary()["images"] == n - len([k for k in range(n) if k % 11 == 5 and k % 7 != 3])
        sr = 16000
        audio = (0.1 * np.sin(np.arange(n * sr // 25) / 10.0)).astype(np.float32)
        written = rec.save(audio=audio, sample_rate=sr)
        info = read_video_info(written["video"])
        assert info["frames"] == n and (info["width"], info["height"]) == (256, 256)
        assert has_audio_stream(written["video"])
        assert rec.summary()["late_images"] == 0
        rec.destroy_node()
        leftovers = [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
        assert leftovers == []  # no temporary stream left behind
    finally:
        rclpy.try_shutdown(context=ctx)


def test_recorder_summary_reports_image_rate_and_latency(tmp_path):
    """Image latency (receipt minus the frame's media time) and image rate are in the summary."""
    from rsatalker_ros.conversions import array_to_flame_params, array_to_image
    from rsatalker_ros.nodes.recorder import RecorderNode
    from rsatalker_ros.testing import isolated_context

    import rclpy

    ctx = isolated_context()
    try:
        rec = RecorderNode(context=ctx)
        img = np.zeros((8, 8, 3), np.uint8)
        base = 10**18
        for k in range(10):
            stamp = base + k * FRAME_NS
            rec._on_flame(array_to_flame_params(_motion(k), stamp_ns=stamp, frame_index=k), now_ns=stamp + 100_000_000)
            if k % 2 == 0:  # every other frame rendered, 200 ms after its media time
                rec._on_image(array_to_image(img, stamp_ns=stamp), now_ns=stamp + 200_000_000 + k * 1_000_000)
                time.sleep(0.02)
        s = rec.summary()
        assert s["images"] == 5
        assert s["image_latency_after_media_time_ms"]["p50"] == pytest.approx(204.0)
        assert s["latency_after_media_time_ms"]["p50"] == pytest.approx(100.0)
        assert 0.0 < s["image_fps"] < 60.0  # 5 images about 20 ms apart
        rec.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
