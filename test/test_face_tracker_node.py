"""The face_tracker node under real rclpy: camera images in (Image, CompressedImage), partner
FLAME out at 25 fps stamped with the capture time; a stretch without a face gives no
messages and a logged state, and tracking resumes after it. Real faces: GRID clip
(CC-BY 4.0, attribution in ../shared/data/grid_sample/README)."""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")
pytest.importorskip("mediapipe")

from conftest import SHARED_DATA  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from rsatalker.msg import FlameParams  # noqa: E402
from rsatalker_core.io import session_topics as st  # noqa: E402
from rsatalker_ros import topics  # noqa: E402
from rsatalker_ros.conversions import (  # noqa: E402
    ConversionError, array_to_image, camera_image_to_array, make_header, time_to_ns,
)
from rsatalker_ros.testing import NodeProcess, RosHarness, free_domain_id, ros_env  # noqa: E402

GRID = sorted((SHARED_DATA / "grid_sample").glob("*.mpg")) if (SHARED_DATA / "grid_sample").is_dir() else []


def test_camera_image_conversions():
    import cv2

    rgb = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(camera_image_to_array(array_to_image(rgb, encoding="bgr8")), rgb)
    mono = Image(height=2, width=3, encoding="mono8", step=4, data=bytes(range(8)))
    out = camera_image_to_array(mono)
    assert out.shape == (2, 3, 3) and out[1, 2, 0] == 6 and (out[..., 0] == out[..., 2]).all()
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    msg = CompressedImage(format="png", data=png.tobytes())
    np.testing.assert_array_equal(camera_image_to_array(msg), rgb)
    with pytest.raises(ConversionError):
        camera_image_to_array(CompressedImage(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(ConversionError):
        camera_image_to_array(Image(height=2, width=3, encoding="yuv422", step=6, data=bytes(12)))


def _frames(n):
    from rsatalker_core.io.video import read_frames

    return read_frames(str(GRID[0]), max_frames=n, rgb=False)


@pytest.mark.skipif(not GRID, reason="GRID sample not found under ../shared/data/grid_sample")
def test_node_tracks_loses_and_resumes(tmp_path):
    import cv2

    faces = _frames(60)
    blank = np.full_like(faces[0], 128)
    # 2 s face (raw bgr8), 1.2 s no face, 1.2 s face (jpeg), at 25 fps
    plan = [("raw", f) for f in faces[:50]] + [("raw", blank)] * 30 + [("jpeg", f) for f in faces[:30]]
    domain = free_domain_id()
    env = ros_env(domain)
    got = []
    node = NodeProcess("rsatalker_ros.nodes.face_tracker", [], env, tmp_path / "tracker.log")
    try:
        with RosHarness(domain) as h:
            h.node.create_subscription(FlameParams, topics.PARTNER_FLAME,
                                       lambda m: got.append((time.monotonic(), m)), topics.FLAME_QOS)
            pub_raw = h.node.create_publisher(Image, st.PARTNER_CAMERA.name, topics.IMAGE_QOS)
            pub_jpg = h.node.create_publisher(CompressedImage, st.PARTNER_CAMERA_COMPRESSED.name, topics.IMAGE_QOS)
            assert h.spin_until(lambda: "face_tracker" in h.node_names() and pub_raw.get_subscription_count() > 0,
                                120.0, step=0.2), node.log()
            t0_ns = time.time_ns()
            stamps = []
            for i, (kind, bgr) in enumerate(plan):
                stamp = t0_ns + i * 40_000_000
                stamps.append(stamp)
                if kind == "raw":
                    msg = Image(header=make_header(stamp, "cam"), height=bgr.shape[0], width=bgr.shape[1],
                                encoding="bgr8", step=3 * bgr.shape[1], data=bgr.tobytes())
                    pub_raw.publish(msg)
                else:
                    ok, jpg = cv2.imencode(".jpg", bgr)
                    pub_jpg.publish(CompressedImage(header=make_header(stamp, "cam"), format="jpeg", data=jpg.tobytes()))
                h.spin_until(lambda: time.time_ns() >= t0_ns + (i + 1) * 40_000_000, 1.0, step=0.005)
            h.spin_for(1.0)
    finally:
        code = node.stop()
    assert code == 0, node.log()
    log = node.log()
    out_stamps = np.array([time_to_ns(m.header.stamp) for _, m in got])
    first = [s for s in out_stamps if s < stamps[50]]
    gap = [s for s in out_stamps if stamps[50] + 120_000_000 <= s < stamps[80]]  # after the lag of a lost face
    last = [s for s in out_stamps if s >= stamps[80]]
    assert len(first) >= 35, f"{len(first)} of 50 face frames published; log:\n{log}"
    assert not gap, f"{len(gap)} messages while no face was seen"
    assert len(last) >= 22, f"tracking did not resume: {len(last)} of 30; log:\n{log}"
    assert set(out_stamps.tolist()) <= set(stamps)  # stamped with the capture time
    assert "face lost" in log and log.count("face found") >= 2
    m = got[0][1]
    assert len(m.expression) == 50 and np.isfinite(np.array(m.head_pose)).all()


def test_landmark_response_parameter(tmp_path):
    """``landmark_response: avatar`` loads the default avatar's response into the fit (the
    camera sees an rsatalker avatar); an unreadable file fails the configure transition,
    naming the file, and the node stays unconfigured."""
    from rclpy.parameter import Parameter

    from rsatalker_ros.nodes.face_tracker import FaceTrackerNode

    with RosHarness(free_domain_id()) as h:
        node = FaceTrackerNode(context=h.context, parameter_overrides=[
            Parameter("autostart", value=False), Parameter("landmark_response", value="avatar")])
        try:
            assert node.trigger_configure().name == "SUCCESS"
            assert node.tracker.fitter.response is not None
        finally:
            node.destroy_node()
        bad = FaceTrackerNode(context=h.context, parameter_overrides=[
            Parameter("autostart", value=False), Parameter("landmark_response", value=str(tmp_path / "none.npz"))])
        try:
            assert bad.trigger_configure().name == "FAILURE"
            assert bad.lifecycle_state == "unconfigured" and "none.npz" in str(bad.lifecycle_error)
        finally:
            bad.destroy_node()
