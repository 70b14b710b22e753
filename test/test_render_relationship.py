"""One motion -> pixels path: the relationship's Gaussian offsets (RSATalker §3.3) are the
avatar's, and every renderer applies them the same way.

* the offline path (:meth:`AvatarRenderer.render_iter`, as ``rsatalker generate`` renders)
  and the live path (the ROS render node's callback on a real ``FlameParams`` message, the
  image it publishes) give identical pixels for the same motion, relationship and frame;
* with an avatar whose offsets are non-zero, different relationships give different pixels;
  without offsets (or for an unknown relationship) ``c = 0``;
* the offsets travel in the avatar checkpoint.
"""

import time

import numpy as np
import pytest
import torch

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.avatar.offsets import RelationshipOffsets
from rsatalker_core.config import SocialConfig, load_config, resolve_asset
from rsatalker_core.render.renderer import AvatarRenderer

from conftest import SMALL_CONFIG

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAME = 3  # frame index of the compared frame (t = 0.12 s)


@pytest.fixture(scope="module")
def motion():
    """Five frames: jaw opening, a slight head turn."""
    m = np.zeros((5, 56), np.float32)
    m[:, 50] = np.linspace(0.0, 0.25, 5)
    m[:, 54] = np.linspace(0.0, 0.1, 5)
    return m


@pytest.fixture(scope="module")
def avatar_path(tmp_path_factory):
    """The default avatar with relationship offsets whose last layer is non-zero (as after
    training); max_offset 1 cm so that the offsets move pixels at 64x64."""
    avatar = GaussianAvatar.load(resolve_asset("default_avatar.pt"))
    torch.manual_seed(0)
    offsets = RelationshipOffsets(SocialConfig(embed_dim=16, hidden_dim=32, time_dim=16, max_offset=0.01),
                                  avatar.num_triangles)
    with torch.no_grad():
        torch.nn.init.normal_(offsets.offsetnet[-1].weight, std=1.0)
        torch.nn.init.normal_(offsets.offsetnet[-1].bias, std=1.0)
    avatar.attach_offsets(offsets)
    path = tmp_path_factory.mktemp("avatar") / "avatar_with_offsets.pt"
    avatar.save(str(path))
    return path


@pytest.fixture(scope="module")
def renderer(avatar_path):
    return AvatarRenderer(load_config(str(SMALL_CONFIG), {"avatar.checkpoint": str(avatar_path)}))


@pytest.fixture(scope="module")
def offline(renderer, motion):
    """What ``rsatalker generate --relationship couple`` renders: render_iter from frame 0."""
    return np.stack(list(renderer.render_iter(motion, "couple", batch=2)))


def test_offsets_travel_in_the_avatar_checkpoint(avatar_path, renderer):
    loaded = GaussianAvatar.load(str(avatar_path))
    assert loaded.offsets is not None and not loaded.offsets.is_zero()
    assert renderer.avatar.offsets is not None and renderer.avatar.offsets.cfg.max_offset == 0.01
    # the shipped avatar carries none: it renders with c = 0
    assert GaussianAvatar.load(resolve_asset("default_avatar.pt")).offsets is None


def test_relationship_changes_pixels_only_with_offsets(renderer, motion, offline):
    assert offline.shape == (5, 64, 64, 3) and offline.dtype == np.uint8
    frame = motion[FRAME]
    by_rel = {r: renderer.render(frame, r, frame_index=FRAME) for r in ("couple", "siblings", "parent_child")}
    np.testing.assert_array_equal(by_rel["couple"], offline[FRAME])  # one frame = the same frame of the clip
    for r in ("siblings", "parent_child"):
        diff = np.abs(by_rel[r].astype(int) - by_rel["couple"].astype(int))
        assert (diff > 0).sum() > 20, (r, int((diff > 0).sum()))
    # the offsets depend on time: the same frame at another index renders differently
    assert not np.array_equal(renderer.render(frame, "couple", frame_index=FRAME + 50), by_rel["couple"])
    # per-frame relationships give each frame its own
    mixed = renderer.render(np.stack([frame, frame]), ["siblings", "couple"], frame_index=[FRAME, FRAME])
    np.testing.assert_array_equal(mixed[0], by_rel["siblings"])
    np.testing.assert_array_equal(mixed[1], by_rel["couple"])
    # unknown relationship: c = 0, the pixels of the same avatar without offsets
    plain = AvatarRenderer(load_config(str(SMALL_CONFIG)))
    assert plain.avatar.offsets is None
    np.testing.assert_array_equal(renderer.render(frame, None, frame_index=FRAME), plain.render(frame, "couple"))
    np.testing.assert_array_equal(plain.render(frame, "siblings", FRAME), plain.render(frame, "couple", FRAME))


def test_live_render_node_matches_offline(avatar_path, motion, offline):
    rclpy = pytest.importorskip("rclpy")
    pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from rsatalker_ros import topics
    from rsatalker_ros.conversions import array_to_flame_params, image_to_array
    from rsatalker_ros.nodes.render_node import RenderNode
    from rsatalker_ros.testing import isolated_context

    ctx = isolated_context()
    node = listener = None
    try:
        node = RenderNode(context=ctx, parameter_overrides=[
            Parameter("config_file", value=str(SMALL_CONFIG)),
            Parameter("avatar.checkpoint", value=str(avatar_path)),
        ])
        listener = Node("image_listener", context=ctx)
        got = []
        listener.create_subscription(Image, topics.AVATAR_IMAGE, got.append, topics.IMAGE_QOS)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(listener)
        msg = array_to_flame_params(motion[FRAME], stamp_ns=123_000_000, frame_index=FRAME, relationship="couple")
        node._on_flame(msg)  # the subscription callback, as on a received message
        deadline = time.monotonic() + 60.0
        while not got and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
        assert got, "the render node published no image"
        live = image_to_array(got[0])
        np.testing.assert_array_equal(live, offline[FRAME])
        # the message's relationship is what the node renders with
        np.testing.assert_array_equal(node.render_message(msg), offline[FRAME])
        other = array_to_flame_params(motion[FRAME], frame_index=FRAME, relationship="superior_subordinate")
        assert not np.array_equal(node.render_message(other), live)
    finally:
        for n in (node, listener):
            if n is not None:
                n.destroy_node()
        rclpy.shutdown(context=ctx)
