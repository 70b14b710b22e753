"""The SYNTHETIC-SUPERVISION dyadic corpus: layout, determinism and the documented motion rules.

Needs real speech from the Debian package codec2-examples (skips without it); espeak-ng
voices are tested only where espeak-ng is installed.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rsatalker_core.head.flame import STANDIN_SPACE

from rsatalker_core.speech.audio import load_audio
from rsatalker_core.data import DataConfig, DatasetError, DualTalkDataset, SYNTHETIC_METADATA
from rsatalker_core.data import synthetic as syn
from rsatalker_core.errors import AudioError, ConfigError
from rsatalker_core.io.motion_npz import load_motion_npz
from rsatalker_core.metrics import conversation as cv
from rsatalker_core.relationship import Relationship

REPO = Path(__file__).resolve().parents[1]
SPF = 640


def _need_codec2():
    voices = syn.available_voices("codec2")
    if len(voices) < 2:
        pytest.skip("needs the Debian package codec2-examples (real speech recordings)")
    return voices


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    _need_codec2()
    root = tmp_path_factory.mktemp("synthetic") / "corpus"
    cfg = syn.SyntheticCorpusConfig(root=str(root), train_clips=8, test_clips=2, clip_seconds=10.0, voices="codec2")
    meta = syn.make_synthetic_corpus(cfg)
    return root, meta


def _tracks(root, meta):
    """(clip meta, speaker, wav [S], motion [T, 56]) for every track of the corpus."""
    for c in meta["clips"]:
        for s in (1, 2):
            base = root / c["split"] / f"{c['clip']}_speaker{s}"
            yield c, s, load_audio(str(base) + ".wav")[0], load_motion_npz(str(base) + ".npz")


def test_layout_is_read_by_the_dualtalk_loader(corpus):
    root, meta = corpus
    cfg = DataConfig(root=str(root), split="train", window_frames=100, stride_frames=50,
                     relationship_index=str(root / "relationships.csv"), unlabelled="refuse")
    ds = DualTalkDataset(cfg)
    assert ds.synthetic and len(ds.clips) == 8 and ds.num_samples() == 16
    assert ds.expression_space == STANDIN_SPACE  # the npz files say so; trained models inherit it
    assert len(ds) == 16 * 4  # 250 frames: starts 0, 50, 100, 150
    rels = sorted(c.relationship.name for c in ds.clips)
    assert rels == sorted(Relationship.names() * 2)  # balanced over the four relationships
    item = ds[5]
    assert item["synthetic"] is True and bool(item["partner_motion_valid"])
    assert item["self_motion"].shape == (100, 56) and item["self_audio"].shape == (100 * SPF,)
    label = {c["clip"]: c["relationship"] for c in meta["clips"]}
    assert item["relationship"] == label[item["clip"]]
    test = DualTalkDataset(DataConfig(root=str(root), split="test", window_frames=0,
                                      relationship_index=str(root / "relationships.csv")))
    assert len(test) == 4 and test[0]["num_frames"] == 250
    # Labelled as synthetic supervision everywhere.
    names = os.listdir(root / "train") + os.listdir(root / "test")
    assert names and all(n.startswith("synthetic_") for n in names)
    assert "SYNTHETIC SUPERVISION" in (root / "README.md").read_text()
    saved = json.loads((root / SYNTHETIC_METADATA).read_text())
    assert saved["synthetic_supervision"] is True and saved["rules"] == syn.RULES
    with np.load(root / "train" / names[0].replace(".wav", ".npz")) as z:
        assert "SYNTHETIC SUPERVISION" in str(z["synthetic_note"])
        assert z["exp"].shape == (250, 50) and z["pose"].shape == (250, 6) and z["exp"].dtype == np.float32
        assert z["eye_pose"].shape == (250, 6) and str(z["expression_space"]) == syn.EXPRESSION_SPACE
    assert saved["version"] == syn.GENERATOR_VERSION == "synthetic-v4"


def test_deterministic_given_seed(tmp_path):
    _need_codec2()
    metas = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = syn.SyntheticCorpusConfig(root=str(tmp_path / name), train_clips=2, test_clips=1,
                                        clip_seconds=4.0, seed=seed, voices="codec2")
        metas.append(syn.make_synthetic_corpus(cfg))
    assert metas[0]["clips"] == metas[1]["clips"]
    for c in metas[0]["clips"]:
        for s in (1, 2):
            rel = Path(c["split"]) / f"{c['clip']}_speaker{s}"
            a, b, other = (tmp_path / n / rel for n in ("a", "b", "c"))
            np.testing.assert_array_equal(load_motion_npz(f"{a}.npz"), load_motion_npz(f"{b}.npz"))
            np.testing.assert_array_equal(load_audio(f"{a}.wav")[0], load_audio(f"{b}.wav")[0])
            assert not np.array_equal(load_motion_npz(f"{a}.npz"), load_motion_npz(f"{other}.npz"))


def test_jaw_follows_own_speech_envelope_and_stays_human(corpus):
    root, meta = corpus
    for c, s, wav, m in _tracks(root, meta):
        T = len(m)
        env = np.sqrt(np.mean(wav[: T * SPF].reshape(T, SPF) ** 2, axis=1))
        r = np.corrcoef(env, m[:, 50])[0, 1]
        assert r > 0.5, f"{c['clip']} speaker{s}: jaw/envelope r = {r:.2f}"
        # The jaw does not follow the partner's speech.
        other = load_audio(str(root / c["split"] / f"{c['clip']}_speaker{3 - s}.wav"))[0]
        env_o = np.sqrt(np.mean(other[: T * SPF].reshape(T, SPF) ** 2, axis=1))
        assert np.corrcoef(env_o, m[:, 50])[0, 1] < 0.2
        assert np.corrcoef(env, m[:, 0])[0, 1] > 0.5  # lips part with the envelope too
        assert 0.0 <= m[:, 50].min() and m[:, 50].max() <= 0.4 and m[:, 50].max() > 0.1
        assert np.abs(m[:, 53:56]).max() <= 0.3
        assert np.abs(np.diff(m[:, 50])).max() < 0.15  # rad per 40-ms frame
        assert np.abs(np.diff(m[:, 53:56], axis=0)).max() < 0.05


def test_listener_nods_are_backchannels(corpus):
    """Nods while listening (conversation.detect_nods) come while the partner speaks or up
    to 1 s after a partner phrase ends."""
    root, meta = corpus
    follows, total = 0, 0
    for c, s, _, m in _tracks(root, meta):
        partner = [(a, b) for sp, a, b in c["turns"] if sp != s]
        own = [(a, b) for sp, a, b in c["turns"] if sp == s]
        for p in cv.detect_nods(m[:, 53], min_amp_rad=0.03):
            t = p / 25.0
            if any(a - 0.1 <= t <= b + 0.1 for a, b in own):
                continue  # speaking: stress nods, not backchannels
            total += 1
            follows += any(a <= t <= b + 1.0 for a, b in partner)
    assert total >= 10, f"only {total} listening nods in the corpus"
    assert follows / total >= 0.8, f"{follows}/{total} listening nods are backchannels"


def test_corpus_meets_the_real_motion_reference(corpus):
    """synthetic-v4 against benchmarks/motion_reference.md (issue 9): head amplitude per axis,
    faster while speaking, lip-sync with the own voice, conversational blink rate, gaze at
    the partner more while listening (Kendon 1967)."""
    root, meta = corpus
    stds, ratios, blinks, seconds, look = [], [], 0, 0.0, {True: [], False: []}
    for c, s, wav, m in _tracks(root, meta):
        m = m.astype(np.float64)
        energy = cv.frame_energy_db(wav, 16000, len(m))
        st = cv.conversation_stats(m[:, 53:56], m[:, 50], energy, eyelid=m[:, syn.BLINK_EXPR])
        stds.append(st["head"]["std_rad"])
        assert st["jaw_vs_own_energy"]["r0"] >= 0.5, (c["clip"], s, st["jaw_vs_own_energy"])
        assert st["speaking_vs_listening"] is not None
        ratios.append(st["speaking_vs_listening"]["ratio"])
        blinks += len(cv.detect_blinks(m[:, syn.BLINK_EXPR]))
        seconds += st["seconds"]
        with np.load(root / c["split"] / f"{c['clip']}_speaker{s}.npz") as z:
            at_partner = np.abs(z["eye_pose"][:, :2]).max(1) < 0.05
        speaking = cv.voice_activity(energy)
        look[True].append(at_partner[~speaking].mean())
        look[False].append(at_partner[speaking].mean())
        assert 0.0 <= m[:, syn.BLINK_EXPR].min() and m[:, syn.BLINK_EXPR].max() <= 1.0
    stds = np.array(stds)
    assert ((stds > 0.015) & (stds < 0.15)).all(), stds.round(3)
    assert ((stds.mean(0) > 0.02) & (stds.mean(0) < 0.12)).all(), stds.mean(0)
    assert np.median(ratios) >= 1.2 and min(ratios) >= 1.0, np.round(ratios, 2)
    assert 10.0 <= blinks * 60.0 / seconds <= 35.0, blinks * 60.0 / seconds
    assert np.mean(look[True]) > np.mean(look[False]) + 0.15, (np.mean(look[True]), np.mean(look[False]))


def test_relationship_changes_motion_in_the_documented_direction():
    voices = _need_codec2()
    pair = (voices[0], voices[1])
    clips = {r: syn.synthesize_clip(pair, r, seconds=20.0, seed=11) for r in Relationship.names()}
    base = clips["couple"]
    for c in clips.values():  # same audio and turns: only the rules differ
        np.testing.assert_array_equal(c.audio[0], base.audio[0])
        np.testing.assert_array_equal(c.motion[0][:, 50], base.motion[0][:, 50])  # no jaw rule for speaker 1
    smile = {r: [c.motion[k][:, 1].mean() for k in (0, 1)] for r, c in clips.items()}
    def speaking_speed(clip, k):  # rad/s while the speaker talks (prosody-coupled motion)
        sp = syn._speaking_mask(clip.turns, k + 1, len(clip.motion[k]))
        return cv.speaking_listening_speed(clip.motion[k][:, 53:56], sp)["speaking_rad_s"]

    head = {r: [speaking_speed(c, k) for k in (0, 1)] for r, c in clips.items()}
    for k in (0, 1):
        # blood -> warmer: more smiling.
        assert smile["siblings"][k] > smile["couple"][k] + 0.1
        assert smile["parent_child"][k] > smile["superior_subordinate"][k] + 0.1
    # non-equal -> formal: both roles move the head less while speaking (the model does not
    # know its role, so v4 gives both roles the same motion rules); blood -> more expressive.
    for k in (0, 1):
        assert head["superior_subordinate"][k] < 0.75 * head["couple"][k]
        assert head["parent_child"][k] < 0.75 * head["siblings"][k]
        assert head["siblings"][k] > head["couple"][k]
    # Dynamics, not only offsets: blood relatives mimic the partner's head motion more.
    def mimicry(clip, k):
        own, other = clip.motion[k][:, 53:56].astype(float), clip.motion[1 - k][:, 53:56].astype(float)
        return np.mean([np.corrcoef(other[:-15, a], own[15:, a])[0, 1] for a in range(3)])

    assert mimicry(clips["siblings"], 0) > mimicry(clips["couple"], 0)
    assert mimicry(clips["parent_child"], 1) > mimicry(clips["superior_subordinate"], 1)
    # The rule table itself: the motion rules are role-blind, the roles differ in gaze.
    p_low = syn.motion_params(Relationship.parse("superior_subordinate"), 2)
    p_high = syn.motion_params(Relationship.parse("superior_subordinate"), 1)
    p_eq = syn.motion_params(Relationship.parse("couple"), 2)
    p_sib = syn.motion_params(Relationship.parse("siblings"), 2)
    assert p_low["head_gain"] == p_high["head_gain"] < p_eq["head_gain"] < p_sib["head_gain"]
    assert p_low["blink_per_min"] == p_high["blink_per_min"] > p_eq["blink_per_min"]
    assert p_eq["p_backchannel"] < p_sib["p_backchannel"]
    assert p_high["gaze_speak"] > p_eq["gaze_speak"] > p_low["gaze_speak"]  # visual dominance


def test_relationship_changes_backchannel_nod_rate():
    """Blood relatives give more backchannel nods while listening than non-blood peers (one
    60-s dialogue, same audio and turns under both relationships)."""
    voices = _need_codec2()
    clips = {r: syn.synthesize_clip((voices[0], voices[1]), r, seconds=60.0, seed=12)
             for r in ("couple", "siblings")}

    def listening_nods(clip, k):
        own = [(t.start, t.end) for t in clip.turns if t.speaker == k]
        return sum(not any(a - 0.1 <= p / 25 <= b + 0.1 for a, b in own)
                   for p in cv.detect_nods(clip.motion[k][:, 53], min_amp_rad=0.03))

    for k in (0, 1):
        assert listening_nods(clips["siblings"], k) > listening_nods(clips["couple"], k)


def test_bad_inputs_are_refused(tmp_path):
    _need_codec2()
    other = tmp_path / "real"
    other.mkdir()
    (other / "something.txt").write_text("not a synthetic corpus")
    cfg = syn.SyntheticCorpusConfig(root=str(other), train_clips=1, test_clips=0, clip_seconds=2.0, voices="codec2")
    with pytest.raises(DatasetError, match="refusing"):
        syn.make_synthetic_corpus(cfg)
    cfg.root = str(tmp_path / "syn")
    syn.make_synthetic_corpus(cfg)
    with pytest.raises(DatasetError, match="overwrite"):
        syn.make_synthetic_corpus(cfg)
    cfg.overwrite = True
    assert len(syn.make_synthetic_corpus(cfg)["clips"]) == 1
    with pytest.raises(ConfigError, match="different voices"):
        syn.synthesize_clip(("codec2-hts1a", "codec2-hts1a"), "couple", 2.0)
    with pytest.raises(ConfigError, match="unknown voices"):
        syn.available_voices("robots")
    with pytest.raises(ConfigError, match="speaker must be 1 or 2"):
        syn.synthesize_motion(np.zeros(16000, np.float32), [], 3, Relationship.parse("couple"), 16000)
    with pytest.raises(ConfigError, match="partner_head"):
        syn.synthesize_motion(np.zeros(16000, np.float32), [], 1, Relationship.parse("couple"), 16000,
                              partner_head=np.zeros((25, 2)))
    with pytest.raises(AudioError, match="shorter than one"):
        syn.synthesize_motion(np.zeros(100, np.float32), [], 1, Relationship.parse("couple"), 16000)


def test_espeak_voices_are_distinct_speech():
    if not syn.espeak_available():
        pytest.skip("espeak-ng not installed (Debian package espeak-ng)")
    a = syn.load_voice("espeak-us-f2")
    b = syn.load_voice("espeak-gb-m1")
    assert a.dtype == np.float32 and len(a) > 16000 * 20  # sixteen sentences
    assert np.abs(a).max() <= 0.99 and not np.array_equal(a[:16000], b[:16000])
    clip = syn.synthesize_clip(("espeak-us-f2", "espeak-gb-m1"), "siblings", 4.0)
    assert clip.motion[0].shape == (100, 56)


def test_script_writes_a_corpus(tmp_path, capsys):
    _need_codec2()
    out = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_synthetic_corpus.py"), "--out", str(out),
         "--train-clips", "2", "--test-clips", "1", "--seconds", "3", "--voices", "codec2"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC-SUPERVISION" in res.stdout
    assert len(list((out / "train").glob("*.npz"))) == 4 and (out / "relationships.csv").is_file()
    # The error path, in-process (one interpreter start is enough for the test budget).
    spec = importlib.util.spec_from_file_location("make_synthetic_corpus", REPO / "scripts" / "make_synthetic_corpus.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(out), "--voices", "codec2"]) == 2
    assert "overwrite" in capsys.readouterr().err
