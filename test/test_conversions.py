"""Message <-> array conversions (rsatalker_ros.conversions), without spinning any node.

Needs the generated messages (scripts/build_msgs.sh); skips when they are not built.
"""

import array
import math

import numpy as np
import pytest

pytest.importorskip("rclpy")
msgs = pytest.importorskip("rsatalker.msg", reason="rsatalker messages not built (scripts/build_msgs.sh)")

from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, JAW_SLICE, MOTION_DIM  # noqa: E402
from rsatalker_core.relationship import Relationship  # noqa: E402
from rsatalker_ros import conversions as cv  # noqa: E402


def _motion(seed=0):
    return np.random.default_rng(seed).normal(0, 0.3, MOTION_DIM).astype(np.float32)


# --------------------------------------------------------------------------- FLAME


def test_flame_round_trip_keeps_layout_and_metadata():
    m = _motion()
    msg = cv.array_to_flame_params(
        m, stamp_ns=1_700_000_000_123_456_789, frame_id="avatar", frame_index=42,
        relationship="parent_child", source_stamp_ns=1_700_000_000_200_000_000,
    )
    # The slices land in the named fields: [exp 50 | jaw 3 | head 3].
    assert len(msg.expression) == 50
    np.testing.assert_array_equal(np.asarray(msg.expression, np.float32), m[EXP_SLICE])
    np.testing.assert_array_equal(msg.jaw_pose, m[JAW_SLICE])
    np.testing.assert_array_equal(msg.head_pose, m[HEAD_SLICE])
    np.testing.assert_array_equal(msg.eye_pose, np.zeros(6, np.float32))
    assert msg.frame_index == 42 and msg.relationship == "parent_child"
    assert msg.header.frame_id == "avatar"
    assert cv.time_to_ns(msg.header.stamp) == 1_700_000_000_123_456_789
    assert cv.time_to_ns(msg.source_stamp) == 1_700_000_000_200_000_000
    back = cv.flame_params_to_array(msg)
    assert back.dtype == np.float32 and back.shape == (MOTION_DIM,)
    np.testing.assert_array_equal(back, m)


def test_flame_field_types_as_rclpy_delivers_them():
    msg = cv.array_to_flame_params(_motion(1))
    # unbounded float32[] is array.array('f'); fixed float32[3] is numpy
    assert isinstance(msg.expression, array.array) and msg.expression.typecode == "f"
    assert isinstance(msg.jaw_pose, np.ndarray)
    # a message built by hand with lists converts too
    hand = msgs.FlameParams(expression=[0.5] * 50, jaw_pose=[0.1, 0.0, 0.0], head_pose=[0.0, 0.2, 0.0])
    out = cv.flame_params_to_array(hand)
    assert out[0] == 0.5 and out[50] == pytest.approx(0.1) and out[54] == pytest.approx(0.2)


@pytest.mark.parametrize("n_exp", [0, 49, 51, 100])
def test_flame_wrong_expression_length_rejected(n_exp):
    msg = msgs.FlameParams(expression=[0.0] * n_exp)
    with pytest.raises(cv.ConversionError, match="expression.*50"):
        cv.flame_params_to_array(msg)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_flame_non_finite_rejected_both_ways(bad):
    msg = cv.array_to_flame_params(_motion(2))
    msg.jaw_pose = np.array([0.0, bad, 0.0], np.float32)
    with pytest.raises(cv.ConversionError, match="jaw_pose.*NaN/Inf"):
        cv.flame_params_to_array(msg)
    m = _motion(3)
    m[7] = bad
    with pytest.raises(cv.ConversionError, match="NaN/Inf"):
        cv.array_to_flame_params(m)


@pytest.mark.parametrize("shape", [(55,), (57,), (1, 56), (2, 28)])
def test_flame_wrong_motion_shape_rejected(shape):
    with pytest.raises(cv.ConversionError):
        cv.array_to_flame_params(np.zeros(shape, np.float32))


def test_flame_bad_index_and_stamp_rejected():
    with pytest.raises(cv.ConversionError, match="frame_index"):
        cv.array_to_flame_params(_motion(), frame_index=-1)
    with pytest.raises(cv.ConversionError, match="stamp"):
        cv.array_to_flame_params(_motion(), stamp_ns=-5)


def test_conversion_error_is_a_value_error_and_rsatalker_error():
    from rsatalker_core.errors import RsatalkerError

    assert issubclass(cv.ConversionError, ValueError)
    assert issubclass(cv.ConversionError, RsatalkerError)


# --------------------------------------------------------------------------- audio


def test_audio_round_trip():
    x = (0.5 * np.sin(np.linspace(0, 40, 640))).astype(np.float32)
    msg = cv.array_to_audio_chunk(x, 16000, stamp_ns=123_000_000_000, role="partner", frame_id="mic0")
    assert msg.role == msgs.AudioChunk.ROLE_PARTNER and msg.sample_rate == 16000
    assert isinstance(msg.samples, array.array) and len(msg.samples) == 640
    back, sr = cv.audio_chunk_to_array(msg)
    assert sr == 16000 and back.dtype == np.float32
    np.testing.assert_array_equal(back, x)
    assert cv.time_to_ns(msg.header.stamp) == 123_000_000_000 and msg.header.frame_id == "mic0"


@pytest.mark.parametrize("rate", [0, 100, 3999, 192001])
def test_audio_bad_sample_rate_rejected(rate):
    msg = msgs.AudioChunk(sample_rate=rate, samples=[0.0] * 10)
    with pytest.raises(cv.ConversionError, match="sample_rate"):
        cv.audio_chunk_to_array(msg)
    with pytest.raises(cv.ConversionError, match="sample_rate"):
        cv.array_to_audio_chunk(np.zeros(10, np.float32), rate)


def test_audio_nan_empty_and_role_rejected():
    with pytest.raises(cv.ConversionError, match="NaN/Inf"):
        cv.audio_chunk_to_array(msgs.AudioChunk(sample_rate=16000, samples=[0.0, math.nan]))
    with pytest.raises(cv.ConversionError, match="empty"):
        cv.audio_chunk_to_array(msgs.AudioChunk(sample_rate=16000, samples=[]))
    with pytest.raises(cv.ConversionError, match="role"):
        cv.array_to_audio_chunk(np.zeros(4, np.float32), 16000, role="listener")
    with pytest.raises(cv.ConversionError, match="1-D"):
        cv.array_to_audio_chunk(np.zeros((4, 2), np.float32), 16000)


# --------------------------------------------------------------------------- images


def test_image_round_trip_rgb8_and_bgr8():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = cv.array_to_image(img, stamp_ns=5_000_000_001, frame_id="cam")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 7, 21, "rgb8")
    assert cv.time_to_ns(msg.header.stamp) == 5_000_000_001
    np.testing.assert_array_equal(cv.image_to_array(msg), img)
    bgr = cv.array_to_image(img, encoding="bgr8")
    np.testing.assert_array_equal(np.frombuffer(bgr.data, np.uint8).reshape(5, 7, 3), img[..., ::-1])
    np.testing.assert_array_equal(cv.image_to_array(bgr), img)


def test_image_with_row_padding():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = img.reshape(2, 9)
    from sensor_msgs.msg import Image

    m = Image(height=2, width=3, encoding="rgb8", step=12, data=padded.tobytes())
    np.testing.assert_array_equal(cv.image_to_array(m), img)


def test_image_bad_input_rejected():
    from sensor_msgs.msg import Image

    with pytest.raises(cv.ConversionError, match="encoding"):
        cv.image_to_array(Image(height=1, width=1, encoding="mono16", step=2, data=b"\x00\x00"))
    with pytest.raises(cv.ConversionError, match="bytes"):
        cv.image_to_array(Image(height=2, width=2, encoding="rgb8", step=6, data=b"\x00" * 11))
    with pytest.raises(cv.ConversionError, match="step"):
        cv.image_to_array(Image(height=1, width=4, encoding="rgb8", step=6, data=b"\x00" * 6))
    with pytest.raises(cv.ConversionError, match="uint8"):
        cv.array_to_image(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(cv.ConversionError, match=r"\[H, W, 3\]"):
        cv.array_to_image(np.zeros((2, 2), np.uint8))
    with pytest.raises(cv.ConversionError, match="encoding"):
        cv.array_to_image(np.zeros((2, 2, 3), np.uint8), encoding="rgba8")


# --------------------------------------------------------------------------- relationship


@pytest.mark.parametrize("name", Relationship.names())
def test_relationship_round_trip(name):
    msg = cv.relationship_to_msg(name)
    rel = Relationship.parse(name)
    assert (msg.name, msg.blood, msg.equal) == (name, rel.blood, rel.equal)
    assert cv.relationship_msg_to_relationship(msg) == rel


def test_relationship_message_constants_match_core_names():
    R = msgs.Relationship
    assert [R.SIBLINGS, R.PARENT_CHILD, R.COUPLE, R.SUPERIOR_SUBORDINATE] == Relationship.names()


def test_relationship_name_decides_else_flags():
    # name wins over (default False) flags: {name: couple} from the command line is a couple
    assert cv.relationship_msg_to_relationship(msgs.Relationship(name="couple")).name == "couple"
    assert cv.relationship_msg_to_relationship(msgs.Relationship(name="blood,non-equal")).name == "parent_child"
    # empty name: the flags decide
    assert cv.relationship_msg_to_relationship(msgs.Relationship(blood=True, equal=True)).name == "siblings"
    assert cv.relationship_msg_to_relationship(msgs.Relationship()).name == "superior_subordinate"


def test_relationship_unknown_rejected():
    with pytest.raises(cv.ConversionError, match="frenemies"):
        cv.relationship_msg_to_relationship(msgs.Relationship(name="frenemies"))
    with pytest.raises(cv.ConversionError, match="frenemies"):
        cv.relationship_to_msg("frenemies")


def test_time_conversion():
    t = cv.ns_to_time(3_000_000_007)
    assert (t.sec, t.nanosec) == (3, 7)
    assert cv.time_to_ns(t) == 3_000_000_007
    with pytest.raises(cv.ConversionError):
        cv.ns_to_time(2**31 * 1_000_000_000)
