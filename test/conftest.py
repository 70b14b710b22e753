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


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory):
    """A randomly initialised wav2vec 2.0 (hidden size 32, 2 layers) saved with
    ``save_pretrained`` into a local directory, as ``speech.model_path`` expects (no download)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    path = tmp_path_factory.mktemp("wav2vec2_tiny")
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )
    Wav2Vec2Model(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a module (``pytestmark = pytest.mark.usefixtures(
    "one_torch_thread")``): the tiny test models run fastest so on two busy cores, and
    bit-exact comparisons with subprocesses (OMP_NUM_THREADS=1) need equal thread counts."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def small_avatar_renderer():
    """The default avatar's renderer on the CPU at 192x192 px: small real renders for the
    landmark-response calibrations (calls that change its ``viewmat`` restore it)."""
    from rsatalker_core.config import load_config
    from rsatalker_core.render.renderer import AvatarRenderer

    cfg = load_config(None, {"device": "cpu"})
    cfg.render.width = cfg.render.height = 192
    return AvatarRenderer(cfg)
