import numpy as np
import pytest

from rsatalker_core.errors import MotionFileError
from rsatalker_core.io.motion_npz import load_motion_npz, motion_to_dualtalk, save_motion_npz


def test_real_dualtalk_npz(dualtalk_sample):
    m = load_motion_npz(str(dualtalk_sample["speaker2_npz"]))
    raw = np.load(dualtalk_sample["speaker2_npz"])
    assert m.shape == (587, 56) and m.dtype == np.float32
    np.testing.assert_array_equal(m[:, :50], raw["exp"])
    np.testing.assert_array_equal(m[:, 50:53], raw["pose"][:, 3:])  # jaw
    np.testing.assert_array_equal(m[:, 53:56], raw["pose"][:, :3])  # head
    # Real jaw motion: the mouth opens and closes within radians of a human jaw.
    assert 0.05 < m[:, 50].max() - m[:, 50].min() < 1.0


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    m = (0.5 * rng.normal(size=(20, 56))).astype(np.float32)  # within the physical ranges
    p = tmp_path / "out.npz"
    save_motion_npz(str(p), m)
    with np.load(p) as d:
        assert set(d.files) == {"exp", "pose"} and d["exp"].shape == (20, 50) and d["pose"].shape == (20, 6)
    np.testing.assert_array_equal(load_motion_npz(str(p)), m)
    assert motion_to_dualtalk(m)["pose"].dtype == np.float32


def test_errors(tmp_path):
    with pytest.raises(MotionFileError, match="no such"):
        load_motion_npz(str(tmp_path / "missing.npz"))
    p = tmp_path / "nokeys.npz"
    np.savez(p, shape=np.zeros((3, 100)))
    with pytest.raises(MotionFileError, match="lacks key"):
        load_motion_npz(str(p))
    p = tmp_path / "garbage.npz"
    p.write_bytes(b"RIFF not a zip")
    with pytest.raises(MotionFileError, match="not a readable npz"):
        load_motion_npz(str(p))
    p = tmp_path / "mismatch.npz"
    np.savez(p, exp=np.zeros((5, 50), np.float32), pose=np.zeros((4, 6), np.float32))
    with pytest.raises(MotionFileError, match="frames"):
        load_motion_npz(str(p))
    p = tmp_path / "nan.npz"
    np.savez(p, exp=np.full((5, 50), np.nan, np.float32), pose=np.zeros((5, 6), np.float32))
    with pytest.raises(MotionFileError, match="NaN"):
        load_motion_npz(str(p))
    p = tmp_path / "badpose.npz"
    np.savez(p, exp=np.zeros((5, 50), np.float32), pose=np.zeros((5, 3), np.float32))
    with pytest.raises(MotionFileError, match="pose"):
        load_motion_npz(str(p))
