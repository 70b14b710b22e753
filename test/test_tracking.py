"""Face tracker accuracy (rsatalker_core.tracking): the fit in closed loop on exact mesh
landmarks with noise, MediaPipe + fit in closed loop on renders of the default avatar, real
faces (GRID clips, CC-BY 4.0, attribution in ../shared/data/grid_sample/README), the
One-Euro filter, the no-face state and ``rsatalker track``."""

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA

from rsatalker_core.config import load_config
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.tracking.closed_loop import (
    TEST_MOTION, VALIDATION_MOTION, accuracy, known_motion, render_and_landmark, responses, track,
)
from rsatalker_core.tracking.embedding import LandmarkEmbedding, embedding_for, load_embedding, save_embedding
from rsatalker_core.tracking.fit import CAMERA_FACING_FACE, LandmarkFitter
from rsatalker_core.tracking.landmarks import TrackingError, select_face
from rsatalker_core.tracking.smoothing import OneEuroFilter

GRID = SHARED_DATA / "grid_sample"
FPS = 25


@pytest.fixture(scope="module")
def flame():
    return FlameModel()


def _check_accuracy(est, eye_est, m, eye, head_tol_deg=3.0, jaw_tol=0.05, corr=0.8, eye_tol=None):
    a = accuracy(est, m, eye_est, eye)
    assert a["head_deg"] < head_tol_deg, f"head rotation error {a['head_deg']} degrees"
    assert a["jaw_rad"] < jaw_tol, f"jaw error {a['jaw_rad']} rad"
    assert a["smile_r"] >= corr and a["brows_r"] >= corr, a
    if eye_tol is not None:
        assert a["gaze_rad"] < eye_tol, f"eye_pose error {a['gaze_rad']} rad"
        # the tolerance is near the gaze amplitude: the sign is checked by correlation
        assert a["gaze_pitch_r"] >= corr and a["gaze_yaw_r"] >= corr, a


@pytest.mark.parametrize("view_deg,depth", [(0.0, True), (25.0, True), (25.0, False)])
def test_fit_closed_loop_from_mesh_landmarks_with_noise(flame, view_deg, depth):
    """The fit stage alone: landmarks projected from the posed mesh (known motion and gaze),
    1-pixel Gaussian noise at a 256-px face, two camera views; with a MediaPipe-style
    relative depth (pixels about the mean depth, scaled by 0.9, 1 pixel of noise), or
    image positions only."""
    emb = embedding_for(flame)
    emb.depth_offset[:] = 0.0  # the depth below is the mesh points' own
    m, eye = known_motion()
    with torch.no_grad():
        v = flame(torch.tensor(m[:, :50]), torch.tensor(m[:, 50:53]), global_pose=torch.tensor(m[:, 53:]),
                  eye_pose=torch.tensor(eye)).numpy()
    a = np.radians(view_deg)  # camera orbiting the head about the vertical axis
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rc = CAMERA_FACING_FACE @ Ry.T
    K = np.array([[727.0, 0, 128], [0, 727.0, 128], [0, 0, 1]])
    pc = emb.points(v, flame.faces.numpy()) @ Rc.T + [0.0, 0.0, 0.75]
    px = np.stack([K[0, 0] * pc[..., 0] / pc[..., 2] + K[0, 2], K[1, 1] * pc[..., 1] / pc[..., 2] + K[1, 2]], -1)
    rng = np.random.default_rng(0)
    fit = LandmarkFitter(flame, emb, camera_rotation=Rc)
    est, eye_est = [], []
    for i in range(len(m)):
        full = np.zeros((478, 3))
        full[emb.landmark_indices, :2] = px[i] + rng.standard_normal(px[i].shape)
        if depth:
            z = pc[i, :, 2]
            full[emb.landmark_indices, 2] = 0.9 * K[0, 0] * (z / z.mean() - 1) + rng.standard_normal(len(z))
        r = fit.fit(full, K)
        est.append(r.motion)
        eye_est.append(r.eye_pose)
        assert r.rms_px < 2.0
    # gaze: 1 px of iris noise is ~0.09 rad here (12.5-mm eyeball, 1.03 mm per pixel)
    _check_accuracy(np.array(est), np.array(eye_est), m, eye, eye_tol=0.3)


@pytest.fixture(scope="module")
def avatar_renderer():
    from rsatalker_core.render.renderer import AvatarRenderer

    return AvatarRenderer(load_config(None, {"device": "cpu"}))


def test_depth_makes_head_pitch_observable(avatar_renderer):
    """Pure head rotations of the neutral avatar seen from the front: with MediaPipe's
    relative depth the fit reads +-20 degrees of pitch, yaw and roll within 4 degrees; from
    image positions alone it explains most of a pitch by a vertical shift (the cause of the
    closed loop's head error before the depth term; docs/ros.md "Face tracker")."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.tracking.landmarks import FaceLandmarker

    m = np.zeros((6, 56), np.float32)
    for i, (axis, deg) in enumerate([(0, -20), (0, 20), (1, -20), (1, 20), (2, -20), (2, 20)]):
        m[i, 53 + axis] = np.radians(deg)
    K = avatar_renderer.K[0].numpy()
    with FaceLandmarker(video=False) as lm:
        pts = [lm(img).points for img in avatar_renderer.render(m)]
    emb = embedding_for(avatar_renderer.flame)
    errs = {}
    for name, kw in (("depth", {}), ("image only", {"depth_weight": 0.0})):
        fit = LandmarkFitter(avatar_renderer.flame, emb, **kw)
        est = []
        for p in pts:
            fit.reset()
            est.append(fit.fit(p, K).motion[53:56])
        errs[name] = np.degrees(np.abs(np.array(est) - m[:, 53:56])).max(1)
    print(f"pure rotations: worst error with depth {errs['depth'].round(1)}, image only {errs['image only'].round(1)}")
    assert errs["depth"].max() < 4.0
    assert errs["image only"][:2].min() > 2 * errs["depth"][:2].max()  # pitch: the image alone is ambiguous


def test_tracker_closed_loop_on_rendered_avatar(avatar_renderer):
    """MediaPipe + fit on 256x256 renders of the default avatar with known motion (jaw
    0..0.2 rad, head rotation up to 20 degrees, smile, brows, gaze) seen from camera yaw 0 and
    +-20 degrees, tracked with the avatar's landmark response (how MediaPipe reads its
    painted face, :mod:`rsatalker_core.tracking.response`) and its read-outs of jaw, head,
    gaze and expression (:mod:`rsatalker_core.tracking.readout`), without the read-outs,
    without the noise directions, and without a response. Figures: docs/ros.md "Face
    tracker", benchmarks/results_tracker_accuracy.md."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.tracking.response import load_response

    renderer = avatar_renderer
    m, eye = known_motion(**TEST_MOTION)
    K = renderer.K[0].numpy()
    emb = embedding_for(renderer.flame)
    views = render_and_landmark(renderer, m, (0.0, 20.0, -20.0), eye_pose=eye)
    stats = {}
    for yaw, (Rc, lms) in views.items():
        assert all(x is not None for x in lms), f"view {yaw}: MediaPipe lost the face"
        for name, r in responses(load_response("avatar")).items():
            est, eye_est = track(renderer.flame, emb, Rc, lms, K, response=r)
            stats[yaw, name] = a = accuracy(est, m, eye_est, eye)
            print(f"view {yaw:+.0f} {name}: head error {a['head_deg']:.1f} deg, jaw error {a['jaw_rad']:.3f} rad "
                  f"(r {a['jaw_r']:.2f}), brow r {a['brows_r']:.2f}, smile r {a['smile_r']:.2f}, gaze r yaw "
                  f"{a['gaze_yaw_r']:.2f} pitch {a['gaze_pitch_r']:.2f}")
    for yaw in views:
        # the targets: head within 3 degrees, jaw within 0.05 rad, expression r >= 0.8
        # (measured: benchmarks/results_tracker_accuracy.md, "test" rows)
        a = stats[yaw, "response"]
        assert a["head_deg"] < 3.0 and a["jaw_rad"] < 0.05 and a["jaw_r"] >= 0.95, (yaw, a)
        assert a["brows_r"] >= 0.8 and a["smile_r"] >= 0.8, (yaw, a)
        assert a["gaze_yaw_r"] >= 0.8 and a["gaze_pitch_r"] >= 0.7, (yaw, a)
        assert a["jaw_rad"] < 0.5 * stats[yaw, "plain"]["jaw_rad"]  # the response is what makes the jaw readable
    worst = lambda name, key: max(stats[y, name][key] for y in views)
    least = lambda name, key: min(stats[y, name][key] for y in views)
    # the read-outs (learned on random calibration clips, not on this motion): the jaw keeps
    # its amplitude and about halves its worst error; the smile read from the landmarks is
    # read better from the worst view than the fit reads it
    assert worst("response", "jaw_rad") < 0.8 * worst("no read-out", "jaw_rad")
    assert all(abs(stats[y, "response"]["jaw_slope"] - 1) < abs(stats[y, "no read-out"]["jaw_slope"] - 1)
               for y in views)
    assert least("response", "smile_r") > least("no read-out", "smile_r")
    # the noise directions keep the head nearer and the brows readable from every view
    assert worst("no read-out", "head_deg") < worst("no noise", "head_deg")
    assert least("no read-out", "brows_r") > least("no noise", "brows_r") + 0.2


def test_tracker_closed_loop_validation_motion(avatar_renderer):
    """The same targets as :func:`test_tracker_closed_loop_on_rendered_avatar` on the
    validation motion (4 s, other frequencies and phases, same ranges) from camera yaw 0 and
    +-20 degrees. From +20 degrees its head turns 35-40 degrees from the camera while pitched
    up 8-12 degrees, where the fit alone reads the smile at r 0.41 and the brows at 0.61 and
    the expression read-out is what meets the targets (benchmarks/results_tracker_accuracy.md)."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.tracking.response import load_response

    renderer = avatar_renderer
    m, eye = known_motion(**VALIDATION_MOTION)
    emb, resp = embedding_for(renderer.flame), load_response("avatar")
    for yaw, (Rc, lms) in render_and_landmark(renderer, m, (0.0, 20.0, -20.0), eye_pose=eye).items():
        assert all(x is not None for x in lms), f"view {yaw}: MediaPipe lost the face"
        est, eye_est = track(renderer.flame, emb, Rc, lms, renderer.K[0].numpy(), response=resp)
        a = accuracy(est, m, eye_est, eye)
        print(f"validation, view {yaw:+.0f}: head {a['head_deg']:.1f} deg, jaw {a['jaw_rad']:.3f} rad, brows r "
              f"{a['brows_r']:.2f}, smile r {a['smile_r']:.2f}, gaze r yaw {a['gaze_yaw_r']:.2f}")
        assert a["head_deg"] < 3.0 and a["jaw_rad"] < 0.05 and a["jaw_r"] >= 0.95, (yaw, a)
        assert a["brows_r"] >= 0.8 and a["smile_r"] >= 0.8 and a["gaze_yaw_r"] >= 0.8, (yaw, a)


def test_closed_loop_accuracy_figures():
    """accuracy(): frames without a face are left out, the head error is the worst over the
    three axes in degrees, the slope is the tracked amplitude per true unit."""
    m, _ = known_motion(T=40)
    est = m.copy()
    est[5] = np.nan  # no face
    est[7, 54] += np.radians(2.0)  # a 2-degree yaw error
    est[:, 50] *= 0.5  # half the jaw opening
    a = accuracy(est, m)
    assert a["tracked"] == pytest.approx(39 / 40)
    assert a["head_deg"] == pytest.approx(2.0, abs=1e-3)
    assert a["jaw_slope"] == pytest.approx(0.5, abs=1e-4) and a["jaw_r"] == pytest.approx(1.0)
    assert a["jaw_rad"] == pytest.approx(0.5 * m[:, 50].max(), rel=1e-3)
    assert a["brows_r"] == pytest.approx(1.0) and a["smile_slope"] == pytest.approx(1.0, abs=1e-4)
    v, _ = known_motion(T=40, smile_hz=0.9)
    assert accuracy(v, m)["smile_r"] < 0.9 and accuracy(v, m)["brows_r"] == pytest.approx(1.0)


def test_fit_input_columns_and_bad_depth(flame):
    """Two-column landmarks are fitted on image positions alone, like a constant depth
    column; a NaN depth is a TrackingError, not a silently wrong fit."""
    emb = embedding_for(flame)
    K = np.array([[727.0, 0, 128], [0, 727.0, 128], [0, 0, 1]])
    pc = emb.points(flame.v_template.numpy(), flame.faces.numpy()) @ CAMERA_FACING_FACE.T + [0.0, 0.0, 0.75]
    full = np.zeros((478, 3))
    full[emb.landmark_indices, :2] = np.stack([K[0, 0] * pc[:, 0] / pc[:, 2] + 128, K[1, 1] * pc[:, 1] / pc[:, 2] + 128], -1)
    a = LandmarkFitter(flame, emb).fit(full[:, :2], K)
    b = LandmarkFitter(flame, emb).fit(full, K)
    np.testing.assert_allclose(a.params, b.params)
    full[emb.landmark_indices[0], 2] = np.nan
    with pytest.raises(TrackingError, match="NaN"):
        LandmarkFitter(flame, emb).fit(full, K)


def test_no_face_gives_no_motion(flame):
    pytest.importorskip("mediapipe")
    from rsatalker_core.tracking.tracker import FaceTracker, NO_FACE

    tracker = FaceTracker(flame)
    r = tracker.track(np.full((240, 320, 3), 200, np.uint8), 0.0)
    assert not r.has_face and r.motion is None and r.confidence == 0.0 and tracker.state == NO_FACE
    with pytest.raises(TrackingError):
        tracker.track(np.zeros((10, 10), np.uint8), 0.04)


def _grid_clips():
    return sorted(GRID.glob("*.mpg")) if GRID.is_dir() else []


@pytest.mark.skipif(not _grid_clips(), reason=f"GRID sample not found under {GRID}")
def test_real_faces_grid(flame):
    """Real speakers: the face is tracked in >= 95 % of frames and the tracked mouth opening
    (fitted inner-lip gap) correlates with the speech energy (>= 0.3 on average)."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.io.video import read_audio_track
    from rsatalker_core.tracking.offline import track_video
    from rsatalker_core.tracking.tracker import FaceTracker

    corrs, rates = [], []
    for clip in _grid_clips()[:4]:
        tracker = FaceTracker(flame)
        opening = []
        out = track_video(str(clip), tracker, on_frame=lambda rgb, tf: opening.append(
            tracker.fitter.mouth_opening(tf.fit) if tf.has_face else np.nan))
        rates.append(out["valid"].mean())
        wav = read_audio_track(str(clip), 16000)
        T = min(len(opening), len(wav) // 640)
        energy = np.log(np.array([np.mean(wav[i * 640 : (i + 1) * 640] ** 2) for i in range(T)]) + 1e-8)
        op = np.array(opening[:T])
        ok = np.isfinite(op)
        corrs.append(np.corrcoef(op[ok], energy[ok])[0, 1])
    print(f"GRID: face in {np.round(rates, 3)} of frames, mouth-energy correlation {np.round(corrs, 2)}")
    assert min(rates) >= 0.95
    assert np.mean(corrs) >= 0.3


def test_one_euro_filter_smooths_still_and_follows_motion():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    noisy = 1.0 + 0.05 * rng.standard_normal(100)
    out = np.array([f(np.array([x]), i / FPS)[0] for i, x in enumerate(noisy)])
    assert out[20:].std() < 0.4 * noisy[20:].std()
    f.reset()
    ramp = np.linspace(0, 5, 50)  # fast motion: little lag
    out = np.array([f(np.array([x]), i / FPS)[0] for i, x in enumerate(ramp)])
    assert abs(out[-1] - ramp[-1]) < 0.5
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)


def test_select_face_rules():
    small_centre = np.array([[150, 110], [170, 130.0]])
    big_corner = np.array([[0, 0], [80, 80.0]])
    assert select_face([small_centre, big_corner], 320, 240, "largest") == 1
    assert select_face([small_centre, big_corner], 320, 240, "centre") == 0
    with pytest.raises(TrackingError):
        select_face([small_centre], 320, 240, "leftmost")


def test_embedding_file_roundtrip_and_errors(tmp_path, flame):
    emb = embedding_for(flame)
    assert {468, 473} <= set(emb.landmark_indices.tolist()) and len(emb) > 300
    p = tmp_path / "emb.npz"
    save_embedding(str(p), LandmarkEmbedding(emb.landmark_indices[:10], emb.face_idx[:10], emb.bary[:10]))
    got = embedding_for(flame, str(p))  # iris centres are added when the file lacks them
    assert len(got) == 12 and {468, 473} <= set(got.landmark_indices.tolist())
    np.savez(tmp_path / "bad.npz", lmk_face_idx=np.array([99999]), lmk_b_coords=np.array([[1.0, 0, 0]]),
             landmark_indices=np.array([1]))
    with pytest.raises(TrackingError, match="another head model"):
        embedding_for(flame, str(tmp_path / "bad.npz"))
    with pytest.raises(TrackingError, match="lacks"):
        np.savez(tmp_path / "nokeys.npz", x=np.zeros(2))
        load_embedding(str(tmp_path / "nokeys.npz"))
    official = FlameModel(arrays={k: v for k, v in __import__("rsatalker_core.head.standin", fromlist=["x"])
                                  .build_standin_flame().items()})
    with pytest.raises(TrackingError, match="embedding"):
        embedding_for(official)


@pytest.mark.skipif(not _grid_clips(), reason=f"GRID sample not found under {GRID}")
def test_cli_track_writes_npz_and_wav(tmp_path):
    pytest.importorskip("mediapipe")
    import soundfile as sf

    from rsatalker_core.cli import main
    from rsatalker_core.io.motion_npz import load_motion_npz

    out = tmp_path / "clip.npz"
    assert main(["track", str(_grid_clips()[0]), "--out", str(out)]) == 0
    motion = load_motion_npz(str(out))
    d = np.load(out)
    assert motion.shape[1] == 56 and abs(len(motion) - 75) <= 1
    assert d["cam"].shape == (len(motion), 3) and d["eye_pose"].shape == (len(motion), 6)
    assert str(d["head_model"]) == "rsatalker-standin"
    wav, sr = sf.read(tmp_path / "clip.wav")
    assert sr == 16000 and abs(len(wav) / sr - len(motion) / FPS) < 0.1


def test_cli_track_avatar_video_with_landmark_response(tmp_path, avatar_renderer, capsys):
    """``rsatalker track --landmark-response avatar`` on an mp4 of the avatar opening and
    closing its jaw: the tracked jaw follows the rendered one. A missing response file is
    one ``error:`` line and exit 2, before any output is written."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.cli import main
    from rsatalker_core.io.motion_npz import load_motion_npz
    from rsatalker_core.io.video import VideoWriter

    m, _ = known_motion(T=50, head_deg=(4.0, 8.0, 2.0), jaw=0.2)
    video = tmp_path / "avatar.mp4"
    with VideoWriter(str(video), 25.0, preset="ultrafast", crf=12) as w:
        for img in avatar_renderer.render(m):
            w.write(img)
    out = tmp_path / "avatar.npz"
    vfov = 2 * np.degrees(np.arctan(0.5 / avatar_renderer.K[0, 0, 0].item() * avatar_renderer.cfg.render.width))
    assert main(["track", str(video), "--out", str(out), "--landmark-response", "avatar", "--no-smoothing",
                 "--hfov", f"{vfov:.4f}"]) == 0
    est = load_motion_npz(str(out))
    r = np.corrcoef(est[:, 50], m[:, 50])[0, 1]
    with capsys.disabled():
        print(f"tracked avatar video: jaw correlation {r:.2f}, worst jaw error {np.abs(est[:, 50] - m[:, 50]).max():.3f} rad")
    assert len(est) == 50 and r >= 0.8
    capsys.readouterr()
    bad = tmp_path / "b.npz"
    assert main(["track", str(video), "--out", str(bad), "--landmark-response", str(tmp_path / "none.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "none.npz" in err[0] and not bad.exists()


def test_cli_track_bad_input(tmp_path, capsys):
    from rsatalker_core.cli import main

    assert main(["track", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
