"""The response's read-outs (rsatalker_core.tracking.readout): the pose read-out of the
fitted jaw, head rotation and gaze and the expression read-out from aligned landmarks;
features, regressions, files, the fitter applying them, and the pose read-out's calibration
from out-of-fold fits on real renders of the default avatar."""

import numpy as np
import pytest

from rsatalker_core.head.flame import FlameModel
from rsatalker_core.render.camera import default_camera
from rsatalker_core.tracking.embedding import embedding_for
from rsatalker_core.tracking.fit import CAMERA_FACING_FACE, LandmarkFitter
from rsatalker_core.tracking.landmarks import TrackingError
from rsatalker_core.tracking.readout import (
    N_CORRECTED, N_VIEW, STABLE_LANDMARKS, PoseReadout, align_landmarks, fit_expression_readout, fit_readout,
    readout_features,
)
from rsatalker_core.tracking.response import load_response, save_response


def _orbit(yaw_deg):
    """World-to-camera rotation of the default camera orbited by ``yaw_deg``."""
    from rsatalker_core.config import load_config

    cfg = load_config(None, {"device": "cpu"})
    return default_camera(cfg.render, "cpu", yaw_deg=yaw_deg)[0][0][:3, :3].numpy().astype(np.float64)


def _random_motion(rng, n, n_exp=50):
    m = np.zeros((n, 56), np.float32)
    m[:, :n_exp] = 0.5 * rng.standard_normal((n, n_exp))
    m[:, 50] = rng.uniform(0, 0.3, n)
    m[:, 53:56] = np.radians(rng.uniform(-20, 20, (n, 3)))
    g = np.zeros((n, 6), np.float32)
    g[:, [0, 1]] = g[:, [3, 4]] = rng.uniform(-0.3, 0.3, (n, 2))
    return m, g


def test_readout_features_layout_and_view_terms():
    """s(f) (x) b(theta): facing the camera only the constant view block is non-zero and it
    holds [1, psi, jaw, head, gaze]; a head turned by yaw a gives f_x = +-sin(a)."""
    m = np.zeros((2, 56), np.float32)
    m[:, 1], m[:, 50] = 0.7, 0.2
    m[1, 54] = np.radians(30.0)
    g = np.zeros((2, 6), np.float32)
    g[:, 0], g[:, 4] = 0.1, -0.2
    F = readout_features(m, g, CAMERA_FACING_FACE, n_exp=4)
    assert F.shape == (2, N_VIEW * (4 + 9))
    blocks = F.reshape(2, N_VIEW, 13)
    np.testing.assert_allclose(blocks[0, 0], [1, 0, 0.7, 0, 0, 0.2, 0, 0, 0, 0.1, 0, 0, -0.2], atol=1e-7)
    assert not blocks[0, 1:].any()
    np.testing.assert_allclose(abs(blocks[1, 1, 0]), np.sin(np.radians(30.0)), rtol=1e-6)  # f_x
    np.testing.assert_allclose(blocks[1, 3, 0], np.sin(np.radians(30.0)) ** 2, rtol=1e-6)  # f_x^2
    # per-sample camera rotations give the same as one shared
    np.testing.assert_allclose(readout_features(m, g, np.stack([CAMERA_FACING_FACE] * 2), 4), F)


def test_fit_readout_recovers_a_view_dependent_bias():
    """Estimates that read 70 % of the jaw, a yaw bias growing with the view and a gaze
    offset: the regression learns it from one set of samples and removes it on another."""
    rng = np.random.default_rng(0)
    views = np.stack([_orbit(y) for y in (-30.0, -10.0, 0.0, 15.0, 30.0)])

    def biased(n):
        m, g = _random_motion(rng, n)
        Rc = views[rng.integers(0, len(views), n)]
        est, eye_est = m.copy(), g.copy()
        est[:, 50] = 0.7 * m[:, 50]
        f = np.einsum("nij,nj->ni", Rc, np.tile([0.0, 0.0, 1.0], (n, 1)))  # the unturned face's axis, camera frame
        # a yaw bias growing with the camera's orbit: the features see the view through the
        # *fitted* head rotation, so it is learnable up to the head's own turn
        est[:, 54] += 0.05 * f[:, 0]
        eye_est[:, 0] += 0.05
        return est, eye_est, m, g, Rc

    est, eye_est, m, g, Rc = biased(3000)
    est[5] = np.nan  # a frame without a face is left out
    ro, info = fit_readout(est, eye_est, m, g, Rc, n_exp=50, ridge=1e-6)
    assert ro.weights.shape == (N_VIEW * 59, N_CORRECTED) and info["samples"] == 2999
    est, eye_est, m, g, Rc = biased(500)
    got_m, got_g = ro.apply(est, eye_est, Rc)
    assert np.abs(got_m[:, 50] - m[:, 50]).max() < 1e-3 < np.abs(est[:, 50] - m[:, 50]).max()
    assert np.abs(got_m[:, 54] - m[:, 54]).mean() < 0.2 * np.abs(est[:, 54] - m[:, 54]).mean()
    assert np.abs(got_g[:, 0] - g[:, 0]).max() < 1e-3
    np.testing.assert_array_equal(got_m[:, :50], est[:, :50])  # expression kept as fitted
    with pytest.raises(TrackingError, match="usable samples"):
        fit_readout(est[:100], eye_est[:100], m[:100], g[:100], Rc[:100], n_exp=50)


def test_readout_in_the_response_file_and_the_fitter(tmp_path):
    """Saved with the response and loaded back; the fitter applies it to each result (here a
    constant +0.1 rad on the jaw opening) while its warm start stays the fit's own solution;
    a read-out for another n_exp and a malformed one are refused with clear errors."""
    flame = FlameModel()
    emb = embedding_for(flame)
    resp = load_response("avatar").without_readout()
    w = np.zeros((N_VIEW * 59, N_CORRECTED))
    w[0, 0] = 0.1  # constant feature -> jaw opening
    resp.pose_readout = PoseReadout(w, 50)
    p = tmp_path / "r.npz"
    save_response(str(p), resp)
    got = load_response(str(p))
    np.testing.assert_array_equal(got.pose_readout.weights, w)
    assert got.without_readout().pose_readout is None and got.without_noise().pose_readout is None
    K = np.array([[727.0, 0, 128], [0, 727.0, 128], [0, 0, 1]])
    m = np.zeros(56, np.float32)
    m[50], m[54] = 0.1, 0.2
    fit = LandmarkFitter(flame, emb, response=got)
    _, px, z, _ = fit.model_landmarks(m, [0.0, 0.02, 0.75], K)
    pts = np.zeros((478, 3))
    pts[emb.landmark_indices, :2], pts[emb.landmark_indices, 2] = px, z
    a = fit.fit(pts, K)
    b = LandmarkFitter(flame, emb, response=got.without_readout()).fit(pts, K)
    assert a.motion[50] == pytest.approx(b.motion[50] + 0.1, abs=1e-6)
    np.testing.assert_allclose(a.motion[53:56], b.motion[53:56], atol=1e-6)
    np.testing.assert_array_equal(a.params, b.params)
    assert float(fit._prev[6]) == pytest.approx(b.motion[50], abs=1e-6)  # warm start before the read-out
    with pytest.raises(TrackingError, match="n_exp 50"):
        LandmarkFitter(flame, emb, n_exp=13, response=got)
    d = dict(np.load(p))
    np.savez(tmp_path / "bad.npz", **{**d, "pose_readout_weights": w[:10]})
    with pytest.raises(TrackingError, match="bad.npz.*read-out"):
        load_response(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "half.npz", **{k: v for k, v in d.items() if k != "pose_readout_n_exp"})
    with pytest.raises(TrackingError, match="pose_readout_n_exp"):
        load_response(str(tmp_path / "half.npz"))


def test_calibrate_response_learns_a_readout_out_of_fold(small_avatar_renderer):
    """A small calibration on real renders (15 clips of 10 frames, 3 folds): the response
    carries a read-out for its n_exp, learned from out-of-fold fits whose jaw it corrects;
    fold counts the clips can't hold are refused."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.tracking.landmarks import FaceLandmarker
    from rsatalker_core.tracking.response import calibrate_response

    renderer = small_avatar_renderer
    emb = embedding_for(renderer.flame)
    with FaceLandmarker(video=True, min_detection_confidence=0.3) as lm:
        for folds in (-1, 1, 5):
            with pytest.raises(TrackingError, match="readout_folds"):
                calibrate_response(renderer, lm, emb, n_samples=40, sequence_length=10, readout_folds=folds)
        resp, info = calibrate_response(renderer, lm, emb, n_samples=150, n_exp=10, ridge=1.0, sequence_length=10,
                                        gaze_max=0.3, readout_folds=3)
    assert resp.pose_readout is not None and resp.pose_readout.n_exp == 10 and resp.expression_readout is None
    assert info["readout_jaw_rms_after"] < info["readout_jaw_rms_before"]
    # the fitter applies it: the same landmarks read with and without it differ by its correction
    K = renderer.K[0].numpy()
    m = np.zeros(56, np.float32)
    m[50] = 0.15
    with FaceLandmarker(video=False) as still:
        pts = still(renderer.render(m)).points
    a = LandmarkFitter(renderer.flame, emb, n_exp=10, response=resp).fit(pts, K)
    b = LandmarkFitter(renderer.flame, emb, n_exp=10, response=resp.without_readout()).fit(pts, K)
    want, _ = resp.pose_readout.apply(b.motion, b.eye_pose, CAMERA_FACING_FACE)
    np.testing.assert_allclose(a.motion, want, atol=1e-6)
    assert abs(a.motion[50] - b.motion[50]) > 1e-4


def _similar(points, rng):
    """``points [B, 478, 3]`` each turned by a random rotation (up to 40 degrees about y),
    scaled and moved: what MediaPipe's pixel frame does to one face."""
    from scipy.spatial.transform import Rotation

    out = []
    for p in points:
        R = Rotation.from_euler("yxz", [rng.uniform(-40, 40), rng.uniform(-15, 15), rng.uniform(-10, 10)],
                                degrees=True).as_matrix()
        out.append(rng.uniform(60, 120) * p @ R.T + rng.uniform(50, 200, 3))
    return np.stack(out)


def test_align_landmarks_undoes_a_similarity():
    """Landmarks turned, scaled and moved align back onto the template they came from."""
    rng = np.random.default_rng(1)
    template = rng.standard_normal((478, 3))
    template = (template - template[STABLE_LANDMARKS].mean(0))
    template /= np.sqrt((template[STABLE_LANDMARKS] ** 2).sum(1).mean())
    aligned, R = align_landmarks(_similar(template[None].repeat(4, 0), rng), template)
    np.testing.assert_allclose(aligned, template[None].repeat(4, 0), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0)


def test_expression_readout_reads_a_linear_face_under_any_view():
    """A face whose landmarks move linearly with 5 coefficients (plus 0.002 noise), seen under
    random similarities: the read-out learned on 600 samples reads held-out coefficients
    (r > 0.99) whatever the view; one too few samples or a bad shape is refused."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((478, 3))
    basis = 0.05 * rng.standard_normal((5, 478, 3))
    basis[:, STABLE_LANDMARKS] = 0  # the stable landmarks hold still, as on a face

    def faces(n):
        psi = rng.standard_normal((n, 5))
        pts = base + np.einsum("nk,kli->nli", psi, basis) + 0.002 * rng.standard_normal((n, 478, 3))
        return _similar(pts, rng), psi

    pts, psi = faces(600)
    ro, info = fit_expression_readout(pts, psi, ridge=1e-6, chunk=128)
    assert ro.n_exp == 5 and info["samples"] == 600 and info["r_min"] > 0.99
    test_pts, test_psi = faces(100)
    got = ro.predict(test_pts)
    assert min(np.corrcoef(got[:, k], test_psi[:, k])[0, 1] for k in range(5)) > 0.99
    np.testing.assert_allclose(ro.predict(test_pts[0]), got[0])  # one frame
    with pytest.raises(TrackingError, match="N >= 100"):
        fit_expression_readout(pts[:99], psi[:99])
    with pytest.raises(TrackingError, match="478, 3"):
        fit_expression_readout(pts[:, :, :2], psi)


def test_expression_readout_in_the_file_and_the_fitter(tmp_path):
    """Saved with the response and loaded back; the fitter's expression is the read-out's
    reading of the landmarks (with MediaPipe's depth), and the fit's own without depth; a file
    missing one of its arrays is refused."""
    flame = FlameModel()
    emb = embedding_for(flame)
    rng = np.random.default_rng(2)
    resp = load_response("avatar").without_readout()
    K = np.array([[727.0, 0, 128], [0, 727.0, 128], [0, 0, 1]])
    fit = LandmarkFitter(flame, emb)
    frames = []  # mesh landmarks of random smiles and brows (all 478 rows filled)
    for _ in range(120):
        m = np.zeros(56, np.float32)
        m[[1, 3]] = rng.uniform(0, 1.5, 2)
        _, px, z, _ = fit.model_landmarks(m, [0.0, 0.02, 0.75], K)
        p = rng.normal(128, 20, (478, 3))
        p[emb.landmark_indices, :2], p[emb.landmark_indices, 2] = px, z
        frames.append((p, m[:50]))
    resp.expression_readout, _ = fit_expression_readout(np.stack([p for p, _ in frames]),
                                                        np.stack([m for _, m in frames]), ridge=1e-3)
    path = tmp_path / "r.npz"
    save_response(str(path), resp)
    got = load_response(str(path))
    assert got.expression_readout.n_exp == 50 and got.without_readout().expression_readout is None
    p = frames[0][0]
    a = LandmarkFitter(flame, emb, response=got).fit(p, K)
    np.testing.assert_allclose(a.motion[:50], got.expression_readout.predict(p), atol=1e-5)
    b = LandmarkFitter(flame, emb, response=got.without_readout()).fit(p, K)
    np.testing.assert_array_equal(a.params, b.params)  # the fit itself is the same
    flat = LandmarkFitter(flame, emb, response=got).fit(p[:, :2], K)  # no depth: the fit's own expression
    np.testing.assert_allclose(flat.motion[:50], LandmarkFitter(flame, emb, response=got.without_readout())
                               .fit(p[:, :2], K).motion[:50], atol=1e-6)
    d = dict(np.load(path))
    np.savez(tmp_path / "half.npz", **{k: v for k, v in d.items() if k != "expression_readout_offset"})
    with pytest.raises(TrackingError, match="half.npz.*expression_readout_offset"):
        load_response(str(tmp_path / "half.npz"))
