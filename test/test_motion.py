import pytest
import torch

from rsatalker_core.config import MOTION_DIM, MotionConfig, SocialConfig
from rsatalker_core.model.generator import SpeakerListenerMotionGenerator
from rsatalker_core.relationship import relationship_tensors


def _model(**kw):
    torch.manual_seed(0)
    cfg = MotionConfig(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, ff_dim=64,
                       dropout=0.0, max_frames=100, **kw)
    return SpeakerListenerMotionGenerator(cfg, SocialConfig(embed_dim=16, hidden_dim=32), speech_dim=12).eval()


def _inputs(B=2, T=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, 12, generator=g), torch.randn(B, T, 12, generator=g),
            torch.randn(B, T, MOTION_DIM, generator=g) * 0.1)


def test_shapes_and_finite():
    m = _model()
    sb, sa, ma = _inputs()
    blood, equal = relationship_tensors(["couple", "siblings"])
    out = m(sb, sa, blood, equal, ma)
    assert out.shape == (2, 30, MOTION_DIM) and torch.isfinite(out).all()
    # Neutral fallback when the partner's motion is missing.
    out0 = m(sb, sa, blood, equal, None)
    assert torch.allclose(out0, m(sb, sa, blood, equal, torch.zeros_like(ma)))


def test_every_input_matters():
    m = _model()
    sb, sa, ma = _inputs()
    blood, equal = relationship_tensors(["couple", "couple"])
    base = m(sb, sa, blood, equal, ma)
    assert not torch.allclose(base, m(sb * 0, sa, blood, equal, ma), atol=1e-5)
    assert not torch.allclose(base, m(sb, sa * 0, blood, equal, ma), atol=1e-5)
    assert not torch.allclose(base, m(sb, sa, blood, equal, ma * 0), atol=1e-5)
    b2, e2 = relationship_tensors(["parent_child", "parent_child"])
    assert not torch.allclose(base, m(sb, sa, b2, e2, ma), atol=1e-5)


def test_gradients_reach_all_parts():
    m = _model().train()
    sb, sa, ma = _inputs()
    blood, equal = relationship_tensors(["couple", "superior_subordinate"])
    loss = m(sb, sa, blood, equal, ma).pow(2).mean()
    loss.backward()
    for name in ["proj_partner_speech.weight", "proj_self_speech.weight", "motion_encoder.0.weight",
                 "partner_cross_attn.attn.in_proj_weight", "fuse.weight", "social.blood_embeddings",
                 "social.equal_embeddings", "social.motion_socialnet.0.weight", "head.weight"]:
        g = dict(m.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name


def test_denormalisation_buffers():
    m = _model()
    sb, sa, ma = _inputs()
    blood, equal = relationship_tensors(["couple", "couple"])
    base = m(sb, sa, blood, equal, ma)
    m.motion_mean.fill_(0.5)
    m.motion_std.fill_(2.0)
    # Partner motion is normalised with the same statistics, the output de-normalised.
    assert torch.allclose(m(sb, sa, blood, equal, ma * 2 + 0.5), base * 2 + 0.5, atol=1e-5)


def test_errors():
    m = _model()
    sb, sa, ma = _inputs()
    blood, equal = relationship_tensors(["couple", "couple"])
    with pytest.raises(ValueError, match="partner_speech"):
        m(sb, sa[:, :10], blood, equal)
    with pytest.raises(ValueError, match="partner_motion"):
        m(sb, sa, blood, equal, ma[:, :10])
    long = torch.zeros(1, 101, 12)
    with pytest.raises(ValueError, match="max_frames"):
        m(long, long, blood[:1], equal[:1])
