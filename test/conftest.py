"""Shared test fixtures: paths resolve relative to the repository, never to a machine."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DUALTALK_SAMPLE = SHARED_DATA / "dualtalk_sample"
SMALL_CONFIG = REPO / "config" / "test_small.yaml"

# Keep torch to the CI's two cores and away from oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# ROS 2 discovery stays on this machine in every test.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture(scope="session")
def dualtalk_sample():
    """Paths of the real DualTalk clip (both speakers' wav, speaker 2's npz); skips if absent."""
    wavs = sorted(DUALTALK_SAMPLE.glob("*_speaker1.wav")) if DUALTALK_SAMPLE.is_dir() else []
    if not wavs:
        pytest.skip(f"real DualTalk sample not found under {DUALTALK_SAMPLE}")
    stem = wavs[0].name[: -len("_speaker1.wav")]
    return {
        "speaker1_wav": DUALTALK_SAMPLE / f"{stem}_speaker1.wav",
        "speaker2_wav": DUALTALK_SAMPLE / f"{stem}_speaker2.wav",
        "speaker2_npz": DUALTALK_SAMPLE / f"{stem}_speaker2.npz",
    }


@pytest.fixture(scope="session")
def small_cfg():
    from rsatalker_core.config import load_config

    return load_config(str(SMALL_CONFIG))
