"""Residual motion (rsatalker_core/model/residual.py): the sampler has the statistics it is
given, fitting recovers them, and live streaming adds exactly what offline generation adds."""

import dataclasses

import numpy as np
import pytest

from rsatalker_core.config import HEAD_SLICE, load_config
from rsatalker_core.errors import CheckpointError
from rsatalker_core.metrics.conversation import blinks_per_minute
from rsatalker_core.model.residual import (
    CausalVoiceActivity, ResidualMotionParams, ResidualMotionSampler, fit_residual_motion,
)

EYELID = 12


def _params(std_listen=0.02, std_speak=0.05, pole_listen=0.95, pole_speak=0.85, blinks=(20.0, 30.0)):
    std = np.zeros((4, 2, 3))
    std[:, 0], std[:, 1] = std_listen, std_speak
    pole = np.zeros((4, 2, 3))
    pole[:, 0], pole[:, 1] = pole_listen, pole_speak
    rate = np.tile(np.asarray(blinks, dtype=float), (4, 1))
    return ResidualMotionParams(std.tolist(), pole.tolist(), rate.tolist(), [0.8] * 4, EYELID)


def _turns(T, period=250):
    """Own-speech energy: alternating 10-s speaking (-20 dB) and listening (-75 dB) turns."""
    return np.where((np.arange(T) // period) % 2 == 0, -20.0, -75.0)


def test_sampler_has_the_fitted_statistics():
    energy = _turns(60000)
    out = ResidualMotionSampler(_params(), "couple", seed=1).run(energy)
    speaking = CausalVoiceActivity().run(energy)
    head = out[:, HEAD_SLICE]
    # steady state: skip the 2 s after each switch, while the filter forgets the other state
    switch = np.flatnonzero(np.diff(speaking.astype(int))) + 1
    steady = np.ones(len(energy), bool)
    for k in switch:
        steady[k : k + 50] = False
    assert abs(head[speaking & steady].std() - 0.05) < 0.006
    assert abs(head[~speaking & steady].std() - 0.02) < 0.003
    speed = np.abs(np.diff(head, axis=0)).mean(axis=1) * 25
    assert speed[speaking[1:]].mean() > 2.0 * speed[~speaking[1:]].mean()
    assert 22 <= blinks_per_minute(out[:, EYELID]) <= 28  # between the states' 20 and 30
    assert np.all(out[:, :EYELID] == 0) and np.all(out[:, EYELID + 1 : 50] == 0)


def test_sampler_is_deterministic_and_seeded():
    e = _turns(500)
    a = ResidualMotionSampler(_params(), "couple", seed=3).run(e)
    b = ResidualMotionSampler(_params(), "couple", seed=3).run(e)
    c = ResidualMotionSampler(_params(), "couple", seed=4).run(e)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_fit_recovers_the_parameters():
    truth = _params()
    res, energies, rels = [], [], []
    for k in range(8):
        e = _turns(3000)
        res.append(ResidualMotionSampler(truth, "siblings", seed=k).run(e))
        energies.append(e)
        rels.append("siblings")
    fit = fit_residual_motion(res, energies, rels, eyelid_index=EYELID)
    std, pole = np.asarray(fit.head_std), np.asarray(fit.head_pole)
    # siblings = index 0; the other relationships fall back to the pooled values
    assert np.allclose(std[0, 1], 0.05, rtol=0.15) and np.allclose(std[0, 0], 0.02, rtol=0.2)
    assert np.allclose(pole[0, 1], 0.85, atol=0.03) and np.allclose(pole[0, 0], 0.95, atol=0.02)
    assert np.allclose(fit.blink_per_min[0], [20.0, 30.0], rtol=0.3)
    assert abs(fit.blink_amp[0] - 0.8) < 0.1


def test_malformed_entry_is_a_checkpoint_error():
    good = _params().to_dict()
    assert ResidualMotionParams.from_dict(good).eyelid_index == EYELID
    with pytest.raises(CheckpointError, match="head_std"):
        ResidualMotionParams.from_dict({**good, "head_std": [[0.1]]})
    with pytest.raises(CheckpointError):
        ResidualMotionParams.from_dict({**good, "unknown": 1})


def test_streaming_adds_what_offline_adds():
    """The live generator's residual equals MotionModel.residual_motion for the same audio."""
    from rsatalker_core.model.motion_model import MotionModel
    from rsatalker_core.model.streaming import StreamingMotionGenerator

    cfg = load_config("config/test_small.yaml")
    cfg = dataclasses.replace(cfg, streaming=dataclasses.replace(cfg.streaming, window_frames=10, lookahead_frames=1, hop_frames=1))
    model = MotionModel(cfg)
    sr, spf, T = cfg.speech.sample_rate, cfg.speech.sample_rate // 25, 100
    rng = np.random.default_rng(0)
    env = np.repeat(np.where((np.arange(T) // 20) % 2 == 0, 0.3, 0.0), spf)
    self_wav = (rng.standard_normal(T * spf) * env).astype(np.float32)
    partner_wav = (rng.standard_normal(T * spf) * 0.1).astype(np.float32)

    def stream():
        gen = StreamingMotionGenerator(cfg, model=model)
        frames = []
        for k in range(T):
            gen.push_audio("partner", partner_wav[k * spf:(k + 1) * spf], sr, k * 40_000_000)
            gen.push_audio("self", self_wav[k * spf:(k + 1) * spf], sr, k * 40_000_000)
            frames += gen.step()
        return np.stack([f.motion for f in frames])

    model.residual_params = None
    plain = stream()
    model.residual_params = _params()
    with_res = stream()
    offline = model.residual_motion(self_wav, sr, T, "couple")
    n = len(plain)
    assert n >= T - 2
    assert np.abs(offline[:n]).max() > 0.01
    np.testing.assert_allclose(with_res - plain, offline[:n], atol=1e-5)
