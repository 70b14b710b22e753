"""The graph under a namespace (issue 11.2): motion_node and render_node started in
``/robot1`` with the project's parameter file (``/**/<node>`` keys) get the file's values,
and every topic they use is under ``/robot1``; nothing is left in the root namespace."""

import yaml
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rsatalker_core.io import session_topics as st  # noqa: E402
from rsatalker_ros.testing import REPO, NodeProcess, RosHarness, free_domain_id, ros_env  # noqa: E402

SMALL_CONFIG = REPO / "config" / "test_small.yaml"
NS = "/robot1"


def _params_file(tmp_path):
    """config/ros.yaml with values that differ from the nodes' defaults (same '/**/' keys)."""
    doc = yaml.safe_load((REPO / "config" / "ros.yaml").read_text())
    assert all(key.startswith("/**/") for key in doc), list(doc)  # namespace-proof keys
    doc["/**/motion_node"]["ros__parameters"].update({"max_queue_frames": 33, "head_frame": "robot1_head"})
    doc["/**/render_node"]["ros__parameters"].update({"jpeg_quality": 61, "max_fps": 7.5})
    path = tmp_path / "ros.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _get_params(h, node, names):
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(h.node, node)
    assert client.wait_for_services(timeout_sec=60.0), f"no parameter services of {node}"
    future = client.get_parameters(names)
    assert h.spin_until(future.done, 20.0), f"get_parameters of {node} timed out"
    from rclpy.parameter import parameter_value_to_python

    return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values)}


def test_nodes_in_a_namespace_take_the_params_file_and_namespace_their_topics(tmp_path):
    domain = free_domain_id()
    env = ros_env(domain)
    params = _params_file(tmp_path)
    common = ["-r", f"__ns:={NS}", "--params-file", str(params), "-p", f"config_file:={SMALL_CONFIG}"]
    procs = [NodeProcess(f"rsatalker_ros.nodes.{m}", common, env, tmp_path / f"{m}.log")
             for m in ("motion_node", "render_node")]
    try:
        with RosHarness(domain) as h:
            want = {st.resolve_topic(t.name, NS) for t in (st.AVATAR_FLAME, st.AVATAR_IMAGE, st.AVATAR_IMAGE_COMPRESSED,
                                                          st.AVATAR_CAMERA_INFO, st.AUDIO_SELF, st.AUDIO_PARTNER,
                                                          st.PARTNER_FLAME, st.RELATIONSHIP)}

            def topics_up():  # (node names travel separately from endpoints: wait for both)
                return (want <= {name for name, _ in h.node.get_topic_names_and_types()}
                        and {("motion_node", NS), ("render_node", NS)} <= set(h.node.get_node_names_and_namespaces()))

            assert h.spin_until(topics_up, 120.0, step=0.2), [p.log()[-2000:] for p in procs]
            names = {name for name, _ in h.node.get_topic_names_and_types()}
            assert not any(n.startswith(("/avatar", "/audio", "/partner", "/relationship")) for n in names), names
            nodes = set(h.node.get_node_names_and_namespaces())
            assert {("motion_node", NS), ("render_node", NS)} <= nodes, nodes
            motion = _get_params(h, f"{NS}/motion_node", ["max_queue_frames", "head_frame", "relationship",
                                                           "tf_parent_frame"])
            assert motion == {"max_queue_frames": 33, "head_frame": "robot1_head", "relationship": "couple",
                              "tf_parent_frame": "avatar_base"}
            render = _get_params(h, f"{NS}/render_node", ["jpeg_quality", "max_fps", "frame_id"])
            assert render == {"jpeg_quality": 61, "max_fps": 7.5, "frame_id": "avatar_camera_optical"}
            # QoS override parameters carry the namespaced topic name
            qos = _get_params(h, f"{NS}/render_node", [f"qos_overrides.{NS}/avatar/image.publisher.reliability"])
            assert list(qos.values()) == ["reliable"]
    finally:
        for p in procs:
            p.stop()
