"""The avatar's landmark response (rsatalker_core.tracking.response) and the embedding's
depth offsets: files, errors, and calibration on real renders of the default avatar."""

import numpy as np
import pytest
import torch

from rsatalker_core.head.flame import FlameModel
from rsatalker_core.tracking.embedding import (
    LandmarkEmbedding, embedding_for, load_embedding, save_embedding,
)
from rsatalker_core.tracking.fit import LandmarkFitter
from rsatalker_core.tracking.landmarks import TrackingError
from rsatalker_core.tracking.response import (
    N_STATIC, LandmarkResponse, calibrate_response, load_response, save_response, static_features,
)


@pytest.fixture(scope="module")
def flame():
    return FlameModel()


def _random_response(ids, E=50, seed=0, K=0):
    rng = np.random.default_rng(seed)
    L = len(ids)
    return LandmarkResponse(ids, 1e-3 * rng.standard_normal((N_STATIC, L, 3)), 1e-3 * rng.standard_normal((L, 3, E)),
                            1e-3 * rng.standard_normal((L, 3, E)), noise=1e-3 * rng.standard_normal((L, 3, K)),
                            noise_floor=2e-4 if K else 0.0)


def test_response_file_roundtrip_and_errors(tmp_path):
    resp = _random_response(np.array([1, 13, 14, 468]), K=5)
    p = tmp_path / "r.npz"
    save_response(str(p), resp)
    got = load_response(str(p))
    for k in ("landmark_indices", "static", "exp", "jaw_exp", "noise"):
        np.testing.assert_array_equal(getattr(got, k), getattr(resp, k))
    assert got.noise_floor == pytest.approx(2e-4)
    # aligned to another landmark set: rows it lacks are zero, fewer expression columns cut
    static, exp, jexp, noise = got.aligned(np.array([14, 2, 1]), 10)
    np.testing.assert_allclose(static[:, 0], resp.static[:, 2], rtol=1e-6)
    np.testing.assert_allclose(noise[0], resp.noise[2], rtol=1e-6)
    assert not static[:, 1].any() and not exp[1].any() and exp.shape == (3, 3, 10) and jexp.shape == (3, 3, 10)
    assert noise.shape == (3, 3, 5) and not noise[1].any()
    # a file written before the noise directions: none (K = 0)
    np.savez(tmp_path / "old.npz", landmark_indices=resp.landmark_indices, static=resp.static, exp=resp.exp,
             jaw_exp=resp.jaw_exp)
    assert load_response(str(tmp_path / "old.npz")).noise.shape == (4, 3, 0)
    with pytest.raises(TrackingError, match="noise"):  # directions without a floor
        LandmarkResponse(resp.landmark_indices, resp.static, resp.exp, resp.jaw_exp, noise=resp.noise)
    with pytest.raises(TrackingError, match="noise"):
        LandmarkResponse(resp.landmark_indices, resp.static, resp.exp, resp.jaw_exp, noise=resp.noise[:2],
                         noise_floor=1e-4)
    with pytest.raises(TrackingError, match="no such"):
        load_response(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "nokeys.npz", static=resp.static)
    with pytest.raises(TrackingError, match="lacks"):
        load_response(str(tmp_path / "nokeys.npz"))
    bad = dict(landmark_indices=resp.landmark_indices, static=resp.static[:, :2], exp=resp.exp, jaw_exp=resp.jaw_exp)
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(TrackingError, match="static"):
        load_response(str(tmp_path / "bad.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TrackingError, match="readable"):
        load_response(str(tmp_path / "junk.npz"))
    assert len(load_response("avatar").landmark_indices) > 300  # the packaged one


def test_static_features_numpy_and_torch_agree():
    j = np.array([0.0, 0.2])
    f = np.array([[0.0, 0.0, -1.0], [0.3, -0.1, -0.95]])
    a = static_features(j, f)
    b = static_features(torch.tensor(j), torch.tensor(f)).numpy()
    assert a.shape == (2, N_STATIC)
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a[1, :3], [1.0, 0.2, 0.04])


def test_fitter_with_response_recovers_motion_of_its_own_model(flame):
    """Landmarks made by the response-shifted model itself (with depth) are fitted back:
    the response enters the model and its Jacobian consistently."""
    emb = embedding_for(flame)
    resp = _random_response(emb.landmark_indices, seed=1)
    K = np.array([[727.0, 0, 128], [0, 727.0, 128], [0, 0, 1]])
    fit = LandmarkFitter(flame, emb, response=resp, exp_prior=0.02)
    m = np.zeros(56, np.float32)
    m[53:56], m[50], m[1], m[3] = [0.15, -0.3, 0.05], 0.18, 1.2, -0.8
    _, px, z, _ = fit.model_landmarks(m, [0.0, 0.02, 0.75], K)
    full = np.zeros((478, 3))
    full[emb.landmark_indices, :2] = px
    full[emb.landmark_indices, 2] = z
    r = fit.fit(full, K, iterations=60)
    assert r.rms_px < 0.05
    np.testing.assert_allclose(r.motion[53:56], [0.15, -0.3, 0.05], atol=np.radians(0.3))
    assert abs(r.motion[50] - 0.18) < 0.01 and abs(r.motion[1] - 1.2) < 0.1 and abs(r.motion[3] + 0.8) < 0.1


def test_model_landmarks_with_gaze_move_only_the_eyes(flame):
    """model_landmarks(eye_pose=): the iris landmarks follow the eyeballs (to the side of a
    yaw) and the rest of the face stays where it was."""
    emb = embedding_for(flame)
    K = np.array([[727.0, 0, 128], [0, 727.0, 128], [0, 0, 1]])
    fit = LandmarkFitter(flame, emb)
    m = np.zeros(56, np.float32)
    _, rest, _, _ = fit.model_landmarks(m, [0.0, 0.0, 0.75], K)
    _, turned, _, _ = fit.model_landmarks(m, [0.0, 0.0, 0.75], K, eye_pose=[0.0, 0.3, 0.0, 0.0, 0.3, 0.0])
    moved = np.linalg.norm(turned - rest, axis=1) > 1e-6
    iris = np.isin(emb.landmark_indices, np.arange(468, 478))
    assert moved[iris].all() and not moved[~iris].any()
    assert np.abs(turned[iris, 0] - rest[iris, 0]).min() > 1.0  # pixels (measured 1.4 .. 3.9), all to one side
    assert len(set(np.sign(turned[iris, 0] - rest[iris, 0]))) == 1


def test_fitter_jacobian_matches_finite_differences(flame):
    """The analytic Jacobian columns (translation, expression, depth scale, the response's
    noise directions) and the batched forward differences (rotations) agree with central
    differences of the residuals, image and depth rows."""
    emb = embedding_for(flame)
    resp = load_response("avatar")
    K = np.array([[727.0, 0, 128], [0, 727.0, 128], [0, 0, 1]])
    fit = LandmarkFitter(flame, emb, response=resp)
    assert fit.n_noise == resp.noise.shape[2] > 0
    rng = np.random.default_rng(3)
    th = torch.zeros(fit.P, dtype=torch.float64)
    th[:3], th[3:6], th[6] = torch.tensor([0.1, -0.2, 0.05]), torch.tensor([0.0, 0.01, 0.7]), 0.15
    th[9:] = torch.as_tensor(0.3 * rng.standard_normal(fit.P - 9))
    th[fit._zs] = 0.05
    obs = torch.as_tensor(np.c_[rng.uniform(60, 200, (len(emb), 2)), rng.normal(0, 10, len(emb))])
    Kt, scale = torch.as_tensor(K), torch.tensor(1.5)
    _, J = fit._jacobian(th, Kt, obs, scale, 1.0)
    Jn = torch.zeros_like(J)
    for k in range(fit.P):
        e = torch.zeros(fit.P, dtype=torch.float64)
        e[k] = 1e-6
        Jn[:, k] = (fit._residual_fn(th + e, Kt, obs, scale, 1.0) - fit._residual_fn(th - e, Kt, obs, scale, 1.0)) / 2e-6
    rel = ((J - Jn).abs().max(0).values / Jn.abs().max(0).values.clamp_min(1e-9)).numpy()
    assert rel[fit._nz].max() < 1e-4 and rel[3:6].max() < 1e-4 and rel[fit._zs] < 1e-4
    # rotations: one-sided differences; expression: its small pull on the joints is left out
    assert rel[:3].max() < 1e-3 and rel[fit._exp].max() < 0.05


def test_noise_directions_keep_a_correlated_slide_out_of_the_expression(flame):
    """Landmarks displaced along the avatar response's noise directions (a correlated slide
    like MediaPipe's, 2 sd) are read as expression by a fit without the noise model, and far
    less with it (docs/ros.md "Face tracker"). Without the read-outs: this is the fit's own
    noise model (the expression read-out reads all 478 landmarks, here only the embedding's)."""
    emb = embedding_for(flame)
    resp = load_response("avatar").without_readout()
    K = np.array([[727.0, 0, 128], [0, 727.0, 128], [0, 0, 1]])
    plain = resp.without_noise()
    rng = np.random.default_rng(0)
    m = np.zeros(56, np.float32)
    m[53:56], m[50], m[1], m[3] = [0.1, -0.25, 0.05], 0.12, 1.0, 0.8
    errs = {"plain": [], "noise": []}
    for _ in range(4):
        slide = resp.noise @ (2.0 * rng.standard_normal(resp.noise.shape[2]))  # [L, 3] metres, rest frame
        static = resp.static.copy()
        static[0] += slide  # the constant term: a rest-frame offset like the noise's
        shifted = LandmarkResponse(resp.landmark_indices, static, resp.exp, resp.jaw_exp)
        _, px, z, _ = LandmarkFitter(flame, emb, response=shifted).model_landmarks(m, [0.0, 0.02, 0.75], K)
        full = np.zeros((478, 3))
        full[emb.landmark_indices, :2], full[emb.landmark_indices, 2] = px, z
        for name, r in (("plain", plain), ("noise", resp)):
            est = LandmarkFitter(flame, emb, response=r).fit(full, K, iterations=40).motion
            errs[name].append(np.abs(est[:50] - m[:50]).mean() + np.abs(est[50] - m[50]))
    assert np.mean(errs["noise"]) < 0.5 * np.mean(errs["plain"]), errs
def test_calibrate_response_explains_mediapipe_on_avatar_renders(small_avatar_renderer):
    """A small calibration on real renders: the response explains part of MediaPipe's
    landmark offsets (in-sample), and the viewmat is restored."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.tracking.landmarks import FaceLandmarker

    renderer = small_avatar_renderer
    view = renderer.viewmat.clone()
    with FaceLandmarker(video=False, min_detection_confidence=0.3) as lm:
        resp, info = calibrate_response(renderer, lm, embedding_for(renderer.flame), n_samples=40, n_exp=10, ridge=1.0)
    assert torch.equal(renderer.viewmat, view)
    assert info["samples"] >= 36 and info["rms_after_mm"] < 0.9 * info["rms_before_mm"]
    assert resp.exp.shape[2] == 10 and np.isfinite(resp.static).all()
    # the noise directions: principal components of what is left, largest first
    sd = np.sqrt((resp.noise**2).sum((0, 1)))
    assert resp.noise.shape[:2] == resp.static.shape[1:] and 0 < resp.noise.shape[2] <= 39
    assert (np.diff(sd) <= 1e-9).all() and 0 < 1000 * resp.noise_floor < info["rms_after_mm"]
    assert info["noise_floor_mm"] == pytest.approx(1000 * resp.noise_floor)


def test_calibrate_response_from_clips_tracked_in_video_mode(small_avatar_renderer):
    """Clips of smooth known motion and gaze, tracked frame to frame by a video-mode MediaPipe
    that is reset between clips (what the tracker node sees): the face is found throughout and the
    response explains part of the offsets; a clip length below 1 is refused."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.tracking.landmarks import FaceLandmarker

    renderer = small_avatar_renderer
    emb = embedding_for(renderer.flame)
    with FaceLandmarker(video=True, min_detection_confidence=0.3) as lm:
        resets = []
        reset = lm.reset
        lm.reset = lambda: (resets.append(1), reset())  # count the real resets
        resp, info = calibrate_response(renderer, lm, emb, n_samples=40, n_exp=10, ridge=1.0, sequence_length=10,
                                        gaze_max=0.3)
        assert len(resets) == 4
        with pytest.raises(TrackingError, match="sequence_length"):
            calibrate_response(renderer, lm, emb, n_samples=10, sequence_length=0)
    with FaceLandmarker(video=False) as still, pytest.raises(TrackingError, match="video-mode"):
        calibrate_response(renderer, still, emb, n_samples=10, sequence_length=5)
    assert info["samples"] >= 36 and info["rms_after_mm"] < 0.9 * info["rms_before_mm"]


def test_embedding_depth_offsets_file_and_errors(tmp_path, flame):
    emb = embedding_for(flame)
    assert np.abs(emb.depth_offset).max() > 0  # the packaged embedding carries them
    p = tmp_path / "e.npz"
    save_embedding(str(p), emb)
    np.testing.assert_array_equal(load_embedding(str(p)).depth_offset, emb.depth_offset)
    # a FLAME-layout file without the key (FLAME's own): zeros
    np.savez(tmp_path / "flame_layout.npz", landmark_indices=emb.landmark_indices[:5], lmk_face_idx=emb.face_idx[:5],
             lmk_b_coords=emb.bary[:5])
    assert not load_embedding(str(tmp_path / "flame_layout.npz")).depth_offset.any()
    with pytest.raises(TrackingError, match="depth offsets"):
        LandmarkEmbedding(emb.landmark_indices[:5], emb.face_idx[:5], emb.bary[:5], depth_offset=np.zeros(4))
    with pytest.raises(TrackingError, match="depth offsets"):
        LandmarkEmbedding(emb.landmark_indices[:2], emb.face_idx[:2], emb.bary[:2], depth_offset=[0.0, np.nan])
