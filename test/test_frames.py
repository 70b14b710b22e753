"""FLAME axes -> REP 103 (rsatalker_core.head.frames; docs/ros.md "Frames")."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rsatalker_core.head import frames as fr

FORWARD_FLAME = np.array([0.0, 0.0, 1.0])  # out of the face


def _rot(q):
    return fr.quaternion_to_matrix(q)


def test_axes_map_flame_to_rep103():
    assert np.allclose(fr.flame_vector_to_rep103([0, 0, 1]), [1, 0, 0])  # out of the face -> x forward
    assert np.allclose(fr.flame_vector_to_rep103([1, 0, 0]), [0, 1, 0])  # avatar's left -> y left
    assert np.allclose(fr.flame_vector_to_rep103([0, 1, 0]), [0, 0, 1])  # up -> z up
    assert np.linalg.det(fr.FLAME_TO_REP103) == pytest.approx(1.0)


def test_nod_is_positive_pitch_about_rep103_y():
    q = fr.head_rotation_rep103([0.3, 0.0, 0.0])  # positive rotation about FLAME x
    rotvec = Rotation.from_quat(q).as_rotvec()
    assert np.allclose(rotvec, [0.0, 0.3, 0.0], atol=1e-9)
    face = _rot(q) @ np.array([1.0, 0.0, 0.0])
    assert face[2] < -0.25  # the face turns down: a nod
    # the same as rotating the face in FLAME axes, then converting
    assert np.allclose(face, fr.flame_vector_to_rep103(fr.axis_angle_to_matrix([0.3, 0, 0]) @ FORWARD_FLAME))


def test_turn_to_the_avatars_left_is_positive_yaw():
    q = fr.head_rotation_rep103([0.0, 0.4, 0.0])  # about FLAME y (up)
    assert np.allclose(Rotation.from_quat(q).as_rotvec(), [0.0, 0.0, 0.4], atol=1e-9)
    face = _rot(q) @ np.array([1.0, 0.0, 0.0])
    assert face[1] > 0.35  # towards +y: the avatar's left


@pytest.mark.parametrize("seed", range(5))
def test_random_pose_matches_scipy_and_conjugation(seed):
    aa = np.random.default_rng(seed).normal(scale=0.8, size=3)
    M = fr.FLAME_TO_REP103
    R_rep = M @ Rotation.from_rotvec(aa).as_matrix() @ M.T
    q = fr.head_rotation_rep103(aa)
    assert np.allclose(_rot(q), R_rep, atol=1e-9)
    assert np.allclose(fr.matrix_to_quaternion(R_rep), q, atol=1e-9)
    assert np.allclose(fr.axis_angle_to_matrix(aa), Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)
    assert q[3] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)


def test_head_transform_pivot():
    t, q = fr.head_transform_rep103([0, 0, 0], pivot_flame=[0.01, -0.02, 0.03])
    assert np.allclose(t, [0.03, 0.01, -0.02]) and np.allclose(q, [0, 0, 0, 1])


def test_default_camera_optical_frame():
    from rsatalker_core.config import RenderConfig
    from rsatalker_core.render.camera import default_camera

    cfg = RenderConfig()
    view, _ = default_camera(cfg)
    t, q = fr.camera_optical_transform_rep103(view[0].numpy())
    R = _rot(q)
    assert np.allclose(t, [cfg.camera_distance, 0, 0], atol=1e-6)  # in front of the face
    assert np.allclose(R[:, 2], [-1, 0, 0], atol=1e-6)  # optical z looks back at the face
    assert np.allclose(R[:, 0], [0, 1, 0], atol=1e-6)  # image right = the avatar's left
    assert np.allclose(R[:, 1], [0, 0, -1], atol=1e-6)  # image down


@pytest.mark.parametrize("bad", [[0.0, 1.0], [np.nan, 0, 0], [[0, 0, 0]]])
def test_bad_input_raises(bad):
    with pytest.raises(fr.FrameError):
        fr.head_rotation_rep103(bad)
    with pytest.raises(fr.FrameError):
        fr.matrix_to_quaternion(np.diag([1.0, 1.0, -1.0]))
