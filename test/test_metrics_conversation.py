"""Conversational-motion statistics on synthetic signals with known answers."""

import numpy as np
import pytest

from rsatalker_core.errors import MetricError
from rsatalker_core.metrics import conversation as cv

FPS = 25


def _bump(T, start, length):
    t = np.arange(T) - start
    out = 0.5 - 0.5 * np.cos(2 * np.pi * t / length)
    out[(t < 0) | (t > length)] = 0.0
    return out


def test_frame_energy_and_voice_activity():
    sr, T = 16000, 100
    wav = np.zeros(T * 640)
    wav[20 * 640 : 60 * 640] = 0.1 * np.sin(np.arange(40 * 640) * 0.3)  # frames 20-59 loud
    wav[61 * 640 : 62 * 640] = 0.0  # (already silent)
    e = cv.frame_energy_db(wav, sr)
    assert e.shape == (T,)
    assert e[30] == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.05)  # sine RMS in dB
    assert e[5] == cv.ENERGY_FLOOR_DB
    assert len(cv.frame_energy_db(wav, sr, num_frames=120)) == 120  # zero-padded
    vad = cv.voice_activity(e)
    assert vad[20:60].all() and not vad[:20].any() and not vad[60:].any()
    # A 0.2-s pause inside speech is bridged; a lone 2-frame burst is dropped.
    e2 = e.copy()
    e2[40:45] = cv.ENERGY_FLOOR_DB
    e2[80:82] = e[30]
    vad2 = cv.voice_activity(e2)
    assert vad2[40:45].all() and not vad2[80:82].any()
    with pytest.raises(MetricError, match="multiple"):
        cv.frame_energy_db(wav, 16001)
    with pytest.raises(MetricError, match="mono"):
        cv.frame_energy_db(np.zeros((2, 640)), sr)


def test_head_stats_std_speed_and_spectrum():
    T = 25 * 40
    t = np.arange(T) / FPS
    head = np.stack([0.05 * np.sin(2 * np.pi * 1.0 * t), 0.1 * np.sin(2 * np.pi * 0.2 * t), 0.02 * np.sin(2 * np.pi * 3.0 * t)], 1)
    s = cv.head_rotation_stats(head)
    np.testing.assert_allclose(s["std_rad"], [0.05 / np.sqrt(2), 0.1 / np.sqrt(2), 0.02 / np.sqrt(2)], rtol=0.01)
    # Mean |d/dt| of A sin(2 pi f t) is 4 A f.
    np.testing.assert_allclose(s["speed_rad_s"], [4 * 0.05 * 1.0, 4 * 0.1 * 0.2, 4 * 0.02 * 3.0], rtol=0.03)
    np.testing.assert_allclose(s["dominant_hz"], [1.0, 0.2, 3.0], atol=0.03)
    assert np.argmax(s["band_shares"][0]) == 1 and s["band_shares"][0][1] > 0.95  # 1 Hz in 0.5-2
    assert np.argmax(s["band_shares"][1]) == 0 and np.argmax(s["band_shares"][2]) == 2
    assert sum(s["band_shares"][0]) == pytest.approx(1.0)
    with pytest.raises(MetricError, match=r"\[T >= 2, 3\]"):
        cv.head_rotation_stats(np.zeros((10, 2)))


def test_speaking_listening_speed_ratio():
    T = 500
    t = np.arange(T) / FPS
    speaking = (t % 4) < 2  # 2 s on, 2 s off
    amp = np.where(speaking, 0.06, 0.02)
    head = np.zeros((T, 3))
    head[:, 1] = amp * np.sin(2 * np.pi * 1.0 * t)
    r = cv.speaking_listening_speed(head, speaking)
    assert r["ratio"] == pytest.approx(3.0, rel=0.1)
    assert r["speaking_share"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(MetricError, match="both speaking and listening"):
        cv.speaking_listening_speed(head, np.ones(T, bool))
    with pytest.raises(MetricError, match="speaking must be"):
        cv.speaking_listening_speed(head, speaking[:-1])


def test_energy_jaw_correlation_finds_the_lag():
    rng = np.random.default_rng(0)
    T = 600
    energy = -60 + 40 * np.clip(np.convolve(rng.standard_normal(T + 10), np.ones(5) / 5, "same")[:T], -1, 1)
    jaw = np.zeros(T)
    jaw[3:] = 0.01 * (energy[:-3] + 60)  # the jaw follows the audio by 3 frames
    r = cv.energy_jaw_correlation(energy, jaw)
    assert r["best_lag_frames"] == 3 and r["best_r"] > 0.97 and r["best_lag_s"] == pytest.approx(0.12)
    assert r["r0"] < r["best_r"]
    lags, rr = cv.lagged_correlation(energy, jaw, 5)
    assert list(lags) == list(range(-5, 6)) and rr[5 + 3] == pytest.approx(1.0)  # unclipped energy
    # Independent signals: no correlation.
    assert abs(cv.energy_jaw_correlation(energy, rng.standard_normal(T))["r0"]) < 0.15
    with pytest.raises(MetricError, match="differ in length"):
        cv.lagged_correlation(energy, jaw[:-1], 3)


def test_nods_counted_by_amplitude_and_duration():
    T = 25 * 60
    rng = np.random.default_rng(1)
    pitch = 0.05 * np.sin(2 * np.pi * 0.05 * np.arange(T) / FPS)  # slow drift: not nods
    pitch += 0.002 * rng.standard_normal(T)  # tracker jitter: not nods
    starts = [50, 200, 400, 700, 1000, 1300]
    for s in starts:
        pitch += 0.04 * _bump(T, s, 15)  # 0.6-s nods of 0.04 rad
    pitch += 0.04 * _bump(T, 550, 75)  # 3-s slow dip: not a nod
    pitch += 0.01 * _bump(T, 850, 15)  # too small
    nods = cv.detect_nods(pitch, min_amp_rad=0.02)
    assert len(nods) == len(starts)
    np.testing.assert_allclose(nods, np.array(starts) + 7.5, atol=2)
    assert cv.nods_per_minute(pitch) == pytest.approx(6.0)


def test_blinks_detected_and_long_closures_not():
    T = 25 * 30
    lid = np.zeros(T)
    onsets = np.arange(20, T - 20, 50)  # one every 2 s: 30/min
    for s in onsets:
        lid += _bump(T, s, 6)  # 0.24-s blinks
    lid[300:340] = np.maximum(lid[300:340], 1.0)  # 1.6 s eyes shut: not a blink
    lid += 0.05 * np.random.default_rng(2).standard_normal(T)
    b = cv.detect_blinks(lid)
    expected = [s for s in onsets if not 290 <= s <= 340]
    assert len(b) == len(expected)
    assert cv.blinks_per_minute(np.zeros(T)) == 0.0


def test_conversation_stats_summary():
    T = 250
    rng = np.random.default_rng(3)
    head = 0.02 * rng.standard_normal((T, 3)).cumsum(0) / 10
    energy = np.where(np.arange(T) < 125, -20.0, -90.0) + rng.standard_normal(T)
    jaw = np.clip((energy + 60) / 200, 0, None)
    s = cv.conversation_stats(head, jaw, energy, partner_energy_db=-energy, eyelid=np.zeros(T))
    assert s["seconds"] == 10.0 and s["blinks_per_minute"] == 0.0
    assert s["jaw_vs_own_energy"]["r0"] > 0.9 and s["jaw_vs_partner_energy"]["r0"] < -0.9
    assert s["speaking_vs_listening"]["speaking_share"] == pytest.approx(0.5, abs=0.02)
    with pytest.raises(MetricError, match="frames"):
        cv.conversation_stats(head, jaw[:-1], energy)


def test_reference_script_on_the_real_dualtalk_sample(tmp_path):
    """scripts/motion_reference.py on the real sample: numbers of the order issue 9 reports."""
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    data = repo.parent / "shared" / "data" / "dualtalk_sample"
    spec = importlib.util.spec_from_file_location("motion_reference", repo / "scripts" / "motion_reference.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 3
    assert not (tmp_path / "o").exists()
    if script._find_clip(str(data)) is None:
        pytest.skip("real DualTalk sample not in ../shared/data/dualtalk_sample")
    assert script.main(["--data", str(data), "--out", str(tmp_path)]) == 0
    import json

    ref = json.loads((tmp_path / "motion_reference.json").read_text())
    m = ref["measured"]
    assert all(0.02 < s < 0.2 for s in m["head"]["std_rad"])
    assert m["speaking_vs_listening"]["ratio"] > 1.2  # real speakers move faster while talking
    assert abs(m["jaw_vs_own_energy"]["r0"]) < 0.2  # the known flaw of this clip (issue 9)
    assert "Bentivoglio" in (tmp_path / "motion_reference.md").read_text()
