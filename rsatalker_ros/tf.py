"""TF broadcasting for rsatalker's nodes (docs/ros.md "Frames").

:class:`TfBroadcaster` sends ``geometry_msgs/TransformStamped`` on ``/tf`` (dynamic) or
``/tf_static`` (static, latched). It uses tf2_ros' ``TransformBroadcaster`` /
``StaticTransformBroadcaster`` where tf2_ros is installed (a ROS 2 installation); where
only the message package ``tf2_msgs`` is (tf2_ros has no PyPI wheel; in a venv without ROS,
scripts/build_msgs.sh builds ``tf2_msgs/TFMessage`` from ``third_party_msgs/tf2_msgs``, type
hash identical to Jazzy's), it publishes
``tf2_msgs/TFMessage`` itself with the same QoS as tf2_ros (:data:`rsatalker_ros.topics.TF_QOS`,
:data:`~rsatalker_ros.topics.TF_STATIC_QOS`; static transforms accumulate, as tf2_ros
does). Without either, :func:`make_broadcaster` returns ``None`` and the node logs once that
it publishes no TF.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from rclpy.node import Node

from rsatalker_ros import topics


class TfBroadcaster:
    """``send(transforms)`` on ``/tf`` or, with ``static=True``, ``/tf_static``.

    Raises:
        ImportError: neither tf2_ros nor tf2_msgs can be imported.
    """

    def __init__(self, node: Node, static: bool = False):
        self.static = static
        self._static_transforms: Dict[str, object] = {}
        try:
            import tf2_ros

            cls = tf2_ros.StaticTransformBroadcaster if static else tf2_ros.TransformBroadcaster
            self._impl = cls(node)
            self._pub = None
            self.backend = "tf2_ros"
        except ImportError:
            from tf2_msgs.msg import TFMessage  # raises ImportError when absent too

            self._impl = None
            self._msg = TFMessage
            self._pub = node.create_publisher(
                TFMessage, topics.TF_STATIC if static else topics.TF,
                topics.TF_STATIC_QOS if static else topics.TF_QOS)
            self.backend = "tf2_msgs"

    def send(self, transforms: List[object]) -> None:
        """Broadcast ``geometry_msgs/TransformStamped`` messages (static ones are kept and
        re-sent together, keyed by child frame)."""
        if self._impl is not None:
            self._impl.sendTransform(transforms)
            return
        if self.static:
            for t in transforms:
                self._static_transforms[t.child_frame_id] = t
            transforms = list(self._static_transforms.values())
        self._pub.publish(self._msg(transforms=list(transforms)))


def make_broadcaster(node: Node, static: bool = False) -> Optional[TfBroadcaster]:
    """A :class:`TfBroadcaster`, or ``None`` (logged once) when no TF package is installed."""
    try:
        return TfBroadcaster(node, static=static)
    except ImportError:
        node.get_logger().warning("no TF published: neither tf2_ros nor tf2_msgs is installed")
        return None
