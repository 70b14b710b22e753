"""Face tracker accuracy (rsatalker_core.tracking): the fit in closed loop on exact mesh
landmarks with noise, MediaPipe + fit in closed loop on renders of the default avatar, real
faces (GRID clips, CC-BY 4.0, attribution in ../shared/data/grid_sample/README), the
One-Euro filter, the no-face state and ``rsatalker track``."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA

from rsatalker_core.config import load_config
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.tracking.embedding import LandmarkEmbedding, embedding_for, load_embedding, save_embedding
from rsatalker_core.tracking.fit import CAMERA_FACING_FACE, LandmarkFitter
from rsatalker_core.tracking.landmarks import TrackingError, select_face
from rsatalker_core.tracking.smoothing import OneEuroFilter

GRID = SHARED_DATA / "grid_sample"
FPS = 25


@pytest.fixture(scope="module")
def flame():
    return FlameModel()


def _known_motion(T=50, head_deg=(12.0, 20.0, 6.0), jaw=0.2, seed=0):
    """Smooth known motion: jaw 0..jaw rad, head rotation up to head_deg, smile, brows, gaze."""
    t = np.arange(T) / FPS
    m = np.zeros((T, 56), np.float32)
    m[:, 50] = 0.5 * jaw * (1 - np.cos(2 * np.pi * 0.8 * t))
    for k, (deg, f, ph) in enumerate(zip(head_deg, (0.35, 0.25, 0.3), (0.0, 1.0, 2.0))):
        m[:, 53 + k] = np.radians(deg) * np.sin(2 * np.pi * f * t + ph)
    m[:, 1] = 1.5 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.4 * t + 0.5))  # smile
    m[:, 3] = 1.5 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.55 * t + 2.0))  # brows
    eye = np.zeros((T, 6), np.float32)
    eye[:, 0] = 0.2 * np.sin(2 * np.pi * 0.3 * t)  # pitch
    eye[:, 1] = 0.3 * np.cos(2 * np.pi * 0.2 * t)  # yaw
    eye[:, 3:] = eye[:, :3]
    return m, eye


def _check_accuracy(est, eye_est, m, eye, head_tol_deg=3.0, jaw_tol=0.05, corr=0.8, eye_tol=None):
    head_err = np.degrees(np.abs(est[:, 53:56] - m[:, 53:56])).max(0)
    assert (head_err < head_tol_deg).all(), f"head rotation error {head_err} degrees"
    jaw_err = np.abs(est[:, 50] - m[:, 50]).max()
    assert jaw_err < jaw_tol, f"jaw error {jaw_err} rad"
    for c in (1, 3):  # smile, brows
        r = np.corrcoef(est[:, c], m[:, c])[0, 1]
        assert r >= corr, f"expression {c}: correlation {r:.3f}"
    if eye_tol is not None:
        for c in (0, 1, 3, 4):
            err = np.abs(eye_est[:, c] - eye[:, c]).max()
            assert err < eye_tol, f"eye_pose[{c}] error {err} rad"
            # the tolerance is near the gaze amplitude: the sign is checked by correlation
            r = np.corrcoef(eye_est[:, c], eye[:, c])[0, 1]
            assert r >= corr, f"eye_pose[{c}]: correlation {r:.3f}"


@pytest.mark.parametrize("view_deg", [0.0, 25.0])
def test_fit_closed_loop_from_mesh_landmarks_with_noise(flame, view_deg):
    """The fit stage alone: landmarks projected from the posed mesh (known motion and gaze),
    1-pixel Gaussian noise at a 256-px face, two camera views."""
    emb = embedding_for(flame)
    m, eye = _known_motion()
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
        r = fit.fit(full, K)
        est.append(r.motion)
        eye_est.append(r.eye_pose)
        assert r.rms_px < 2.0
    # gaze: 1 px of iris noise is ~0.09 rad here (12.5-mm eyeball, 1.03 mm per pixel)
    _check_accuracy(np.array(est), np.array(eye_est), m, eye, eye_tol=0.3)


def test_tracker_closed_loop_on_rendered_avatar(flame):
    """MediaPipe + fit on 256x256 renders of the default avatar with known motion (the
    stand-in head's painted face; see docs/ros.md "Face tracker" for the measured accuracy)."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.render.renderer import AvatarRenderer
    from rsatalker_core.tracking.tracker import FaceTracker

    cfg = load_config(None, {"device": "cpu"})
    renderer = AvatarRenderer(cfg)
    m, _ = _known_motion(T=25, head_deg=(10.0, 20.0, 5.0), jaw=0.15)
    imgs = renderer.render(m)
    tracker = FaceTracker(renderer.flame, smoothing=False)
    K = renderer.K[0].numpy()
    res = [tracker.track(img, i / FPS, K) for i, img in enumerate(imgs)]
    assert all(r.has_face for r in res)
    est = np.array([r.motion for r in res])
    head_err = np.degrees(np.abs(est[:, 53:56] - m[:, 53:56])).max(0)
    jaw_err = np.abs(est[:, 50] - m[:, 50]).max()
    r_jaw = np.corrcoef(est[:, 50], m[:, 50])[0, 1]
    r_brow = np.corrcoef(est[:, 3], m[:, 3])[0, 1]
    print(f"rendered closed loop: head error {head_err} deg, jaw error {jaw_err:.3f} rad, "
          f"jaw corr {r_jaw:.2f}, brow corr {r_brow:.2f}")
    # Measured (docs/ros.md "Face tracker"): head rotation within ~4.5 degrees, but MediaPipe
    # does not read the stand-in avatar's painted mouth as a jaw opening (jaw correlation is
    # negative), so only the head pose is asserted on renders; the fit stage's jaw and
    # expression accuracy is asserted on mesh landmarks above.
    assert (head_err < 5.0).all()


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


def test_cli_track_bad_input(tmp_path, capsys):
    from rsatalker_core.cli import main

    assert main(["track", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
