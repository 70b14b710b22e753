"""Topic names live in one module, rsatalker_core.io.session_topics: the nodes (through
rsatalker_ros.topics), the recorder node, the bag writer/reader and the launch file
(test_launch.py::test_record_argument_runs_ros2_bag_record_with_the_session_topics) take
them from there.

* the module itself: session topics, types, roles and QoS classes are consistent;
* no node and no bag module writes a topic name of its own (checked on their source with
  ``ast``): every ``create_publisher`` / ``create_subscription`` takes its name from
  ``rsatalker_ros.topics`` or a variable;
* rsatalker_ros.topics: names are the specs' names, profiles have the specs' reliability;
* the recorder node with a bag subscribes exactly the session topics with the specs' types
  (asked from the ROS graph), and the bag it writes has those topics and types.
"""

import ast
import time
from pathlib import Path

import pytest

from rsatalker_core.errors import RsatalkerError
from rsatalker_core.io import session_topics as st

REPO = Path(__file__).resolve().parents[1]
NODE_FILES = sorted((REPO / "rsatalker_ros" / "nodes").glob("*.py")) + [REPO / "rsatalker_ros" / "bringup.py"]
BAG_FILES = [REPO / "rsatalker_core" / "evaluation" / "bag.py", REPO / "rsatalker_core" / "io" / "bag_types.py",
             REPO / "rsatalker_ros" / "bag_recorder.py"]


def test_session_topics_are_consistent():
    names = [t.name for t in st.ALL_TOPICS]
    assert len(set(names)) == len(names) and len({t.role for t in st.ALL_TOPICS}) == len(names)
    assert st.SESSION_TOPICS == {t.name: t.msgtype for t in st.SESSION}
    assert st.TRAINING_PROGRESS not in st.SESSION
    assert st.session_topic_names(absolute=True) == ["/" + n for n in st.SESSION_TOPICS]
    for t in st.ALL_TOPICS:
        assert t.qos in st.QOS_CLASSES and t.description
        assert t.name.startswith("/") == (t.role in ("tf", "tf_static")) and t.msgtype.count("/msg/") == 1
    # every FLAME frame and relationship change matters; audio and images are streams
    assert [t.role for t in st.SESSION if t.reliable] == ["avatar_flame", "relationship"]
    assert [t.role for t in st.ALL_TOPICS if t.latched] == ["relationship", "training_progress", "tf_static"]
    assert st.session_topic_names(absolute=True, namespace="/robot1/") == ["/robot1/" + n for n in st.SESSION_TOPICS]
    assert st.resolve_topic("/tf", "robot1") == "/tf" and st.TF.absolute == "/tf"
    with pytest.raises(RsatalkerError):
        st.resolve_topic("~/image", "robot1")
    assert st.audio_topic("self") is st.AUDIO_SELF and st.audio_topic("partner") is st.AUDIO_PARTNER
    with pytest.raises(RsatalkerError, match="self"):
        st.audio_topic("listener")


def _topic_literals(path):
    """String constants in ``path`` that are topic names (with or without a leading ``/``)."""
    known = {t.name for t in st.ALL_TOPICS}
    tree = ast.parse(path.read_text(), filename=str(path))
    # "relationship" alone is also a parameter and a field name; topics with a "/" are unambiguous
    return [(path.name, n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and "/" in n.value and n.value.strip("/") in known]


def test_no_node_or_bag_module_writes_a_topic_name():
    assert not [hit for path in NODE_FILES + BAG_FILES for hit in _topic_literals(path)]
    calls = 0
    for path in NODE_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("create_publisher", "create_subscription")):
                calls += 1
                name = node.args[1]  # (msg_type, topic, ...)
                from_topics = (isinstance(name, ast.Attribute) and isinstance(name.value, ast.Name)
                               and name.value.id == "topics")
                # `.name` of a TopicSpec (`spec.name`, `st.AVATAR_FLAME.name`), also as the
                # default of a parameter override (`p("image_topic") or st.PARTNER_CAMERA.name`)
                from_spec = any(isinstance(n, ast.Attribute) and n.attr == "name" for n in ast.walk(name))
                assert from_topics or from_spec or isinstance(name, ast.Name), (path.name, node.lineno, ast.dump(name))
    assert calls >= 8  # motion, render, audio, training and recorder nodes


def test_bag_reader_uses_the_specs():
    from rsatalker_core.evaluation import bag
    from rsatalker_core.io import bag_types

    assert bag.FLAME_TOPIC == st.AVATAR_FLAME.name and bag.IMAGE_TOPIC == st.AVATAR_IMAGE.name
    assert bag_types.REQUIRED_TYPES == sorted({t.msgtype for t in st.SESSION if t.msgtype.startswith("rsatalker/")})


def test_ros_topics_mirror_the_specs():
    pytest.importorskip("rclpy")
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from rsatalker_ros import topics

    for attr in ("AVATAR_FLAME", "AVATAR_IMAGE", "AUDIO_SELF", "AUDIO_PARTNER", "PARTNER_FLAME", "RELATIONSHIP",
                 "TRAINING_PROGRESS"):
        assert getattr(topics, attr) == getattr(st, attr).name
    for profile, spec in ((topics.AUDIO_QOS, st.AUDIO_SELF), (topics.AUDIO_QOS, st.AUDIO_PARTNER),
                          (topics.IMAGE_QOS, st.AVATAR_IMAGE), (topics.FLAME_QOS, st.AVATAR_FLAME),
                          (topics.PARTNER_FLAME_SUB_QOS, st.PARTNER_FLAME), (topics.RELATIONSHIP_SUB_QOS, st.RELATIONSHIP),
                          (topics.TRAINING_PROGRESS_QOS, st.TRAINING_PROGRESS)):  # subscription side
        want = ReliabilityPolicy.RELIABLE if spec.reliable else ReliabilityPolicy.BEST_EFFORT
        assert profile.reliability == want, spec.name
    for spec in st.ALL_TOPICS:  # publishers: always reliable (reliable tools match); latched = transient local
        pub, sub = topics.publisher_qos(spec), topics.subscription_qos(spec)
        assert pub.reliability == ReliabilityPolicy.RELIABLE, spec.name
        assert pub.durability == sub.durability == (DurabilityPolicy.TRANSIENT_LOCAL if spec.latched
                                                    else DurabilityPolicy.VOLATILE), spec.name
        assert pub.depth == sub.depth >= 1, spec.name
    assert topics.publisher_qos(st.AVATAR_IMAGE) is not topics.publisher_qos(st.AVATAR_IMAGE)  # overrides mutate
    assert topics.audio_topic("partner") == "audio/partner"


def test_recorder_subscribes_the_session_topics_and_records_their_types(tmp_path):
    pytest.importorskip("rclpy")
    pytest.importorskip("rosbags")
    try:
        import rsatalker.msg  # noqa: F401  (generated message package: scripts/build_msgs.sh)
    except ImportError:
        pytest.skip("rsatalker messages not built")
    import rclpy
    from rclpy.parameter import Parameter
    from rosbags.rosbag2 import Reader

    from rsatalker_ros.nodes.recorder import TOPIC_SPECS, RecorderNode
    from rsatalker_ros.testing import isolated_context

    assert set(TOPIC_SPECS) == set(st.SESSION_TOPICS)
    for name, (msg_class, _) in TOPIC_SPECS.items():  # rsatalker.msg._flame_params.FlameParams
        assert f"{msg_class.__module__.split('.')[0]}/msg/{msg_class.__name__}" == st.SESSION_TOPICS[name]
    ctx = isolated_context()
    try:
        rec = RecorderNode(context=ctx, parameter_overrides=[Parameter("bag_path", value=str(tmp_path / "b"))])
        assert rec.params.value("bag_topics") == st.session_topic_names()
        want = {t.absolute: [t.msgtype] for t in st.SESSION}
        end = time.monotonic() + 10.0
        while True:
            got = dict(rec.get_subscriber_names_and_types_by_node(rec.get_name(), rec.get_namespace()))
            if got == want or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert got == want
        rec.destroy_node()  # finishes the bag
    finally:
        rclpy.try_shutdown(context=ctx)
    with Reader(tmp_path / "b") as reader:
        recorded = {c.topic: c.msgtype for c in reader.connections}
    assert recorded == {t.absolute: t.msgtype for t in st.SESSION}
