"""DualTalk loader, relationship index and feature cache, on the real DualTalk sample clip
(tests needing it skip when ../shared/data/dualtalk_sample is absent) and on small files."""

import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from rsatalker_core.speech.audio import load_audio
from rsatalker_core.config import SpeechConfig
from rsatalker_core.data import (
    DataConfig,
    DatasetError,
    DualTalkDataset,
    FeatureCache,
    collate_windows,
    load_relationship_index,
    window_starts,
)
from rsatalker_core.errors import AudioError, ConfigError, MotionFileError, RelationshipError
from rsatalker_core.io.motion_npz import load_motion_npz, save_motion_npz
from rsatalker_core.relationship import Relationship
from rsatalker_core.speech.factory import build_speech_encoder

SPF = 640  # samples per 25-fps frame at 16 kHz


@pytest.fixture
def clip_dir(tmp_path, dualtalk_sample):
    """A writable copy of the real clip: ``(dir, clip id, paths)``."""
    d = tmp_path / "train"
    d.mkdir()
    paths = {}
    for key, src in dualtalk_sample.items():
        paths[key] = d / src.name
        shutil.copy(src, paths[key])
    clip = dualtalk_sample["speaker1_wav"].name[: -len("_speaker1.wav")]
    return d, clip, paths


def _ds(root, split="train", **kw):
    kw.setdefault("window_frames", 100)
    kw.setdefault("stride_frames", 50)
    return DualTalkDataset(DataConfig(root=str(root), split=split, **kw))


# ---------------------------------------------------------------------------- windows
def test_window_starts():
    assert window_starts(587, 100, 50) == [(s, 100) for s in range(0, 451, 50)] + [(487, 100)]
    assert window_starts(600, 100, 50)[-1] == (500, 100)  # no extra tail window
    assert window_starts(100, 100, 50) == [(0, 100)]
    assert window_starts(60, 100, 50) == [(0, 60)]  # short clip: one whole-clip window
    assert window_starts(587, 0, 50) == [(0, 587)]
    assert window_starts(0, 100, 50) == []
    with pytest.raises(ConfigError, match="stride"):
        window_starts(587, 100, 0)
    with pytest.raises(ConfigError, match="window"):
        window_starts(587, -1, 10)


def test_real_sample_gives_one_sample_with_neutral_partner(dualtalk_sample):
    root = dualtalk_sample["speaker1_wav"].parent
    ds = _ds(root, split="")
    assert len(ds.clips) == 1 and ds.num_samples() == 1 and ds.clips[0].num_frames == 587
    assert len(ds) == len(window_starts(587, 100, 50)) == 11
    for i in range(len(ds)):
        item = ds[i]
        assert item["self_speaker"] == 2 and item["partner_speaker"] == 1
        assert item["self_motion"].shape == (100, 56) and item["self_audio"].shape == (100 * SPF,)
        assert not bool(item["partner_motion_valid"])
        assert torch.count_nonzero(item["partner_motion"]) == 0  # neutral FLAME face
        assert item["relationship"] == "couple" and item["synthetic"] is False  # default label
    assert ds.index.defaulted == {ds.clips[0].clip}


def test_every_window_holds_its_own_slice(dualtalk_sample):
    """Guards against DualTalk's loader bug where all windows share the last chunk."""
    root = dualtalk_sample["speaker1_wav"].parent
    ds = _ds(root, split="", window_frames=50, stride_frames=40, clip_cache_size=1)
    motion = load_motion_npz(str(dualtalk_sample["speaker2_npz"]))
    own, _ = load_audio(dualtalk_sample["speaker2_wav"])
    partner, _ = load_audio(dualtalk_sample["speaker1_wav"])
    items = [ds[i] for i in range(len(ds))]  # all fetched first: later reads must not alias
    starts = [it["start"] for it in items]
    assert starts == [s for s, _ in window_starts(587, 50, 40)] and len(set(starts)) == len(items)
    for it in items:
        s, n = it["start"], it["num_frames"]
        np.testing.assert_array_equal(it["self_motion"].numpy(), motion[s : s + n])
        np.testing.assert_array_equal(it["self_audio"].numpy(), own[s * SPF : (s + n) * SPF])
        np.testing.assert_array_equal(it["partner_audio"].numpy(), partner[s * SPF : (s + n) * SPF])
    for a, b in zip(items, items[1:]):
        assert not torch.equal(a["self_motion"], b["self_motion"])
        assert not torch.equal(a["self_audio"], b["self_audio"])
    # Through a DataLoader with the padding collate, batches keep the same per-window data.
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_windows)
    seen = 0
    for batch in loader:
        assert batch["self_motion"].shape[1:] == (50, 56) and bool(batch["frame_mask"].all())
        for j in range(len(batch["clip"])):
            s = int(batch["start"][j])
            np.testing.assert_array_equal(batch["self_motion"][j].numpy(), motion[s : s + 50])
        seen += len(batch["clip"])
    assert seen == len(ds)


def test_collate_pads_short_windows():
    def item(n, start):
        return {"clip": "c", "start": start, "num_frames": n, "self_motion": torch.ones(n, 56),
                "self_audio": torch.ones(n * SPF), "blood": torch.tensor(1), "synthetic": True}

    b = collate_windows([item(10, 0), item(6, 3)])
    assert b["self_motion"].shape == (2, 10, 56) and b["self_audio"].shape == (2, 10 * SPF)
    assert b["frame_mask"].tolist() == [[True] * 10, [True] * 6 + [False] * 4]
    assert float(b["self_motion"][1, 6:].abs().sum()) == 0.0 and b["start"].tolist() == [0, 3]
    with pytest.raises(ValueError):
        collate_windows([])


def test_two_samples_when_both_speakers_have_motion(clip_dir):
    d, clip, paths = clip_dir
    m2 = load_motion_npz(str(paths["speaker2_npz"]))
    m1 = m2[::-1].copy() * 0.5  # a distinct, valid track for speaker 1
    save_motion_npz(str(d / f"{clip}_speaker1.npz"), m1)
    ds = _ds(d.parent, window_frames=200, stride_frames=200)
    assert ds.num_samples() == 2 and len(ds) == 2 * len(window_starts(587, 200, 200))
    by_self = {}
    for i in range(len(ds)):
        it = ds[i]
        by_self.setdefault(it["self_speaker"], []).append(it)
        assert bool(it["partner_motion_valid"])
    for it in by_self[1]:
        s = it["start"]
        np.testing.assert_array_equal(it["self_motion"].numpy(), m1[s : s + 200])
        np.testing.assert_array_equal(it["partner_motion"].numpy(), m2[s : s + 200])
    for it, mirror in zip(by_self[2], by_self[1]):
        s = it["start"]
        assert mirror["start"] == s
        np.testing.assert_array_equal(it["partner_motion"].numpy(), m1[s : s + 200])
        assert torch.equal(it["self_audio"], mirror["partner_audio"])
        assert torch.equal(it["partner_audio"], mirror["self_audio"])
        assert not torch.equal(it["self_audio"], it["partner_audio"])


def test_clip_without_motion_is_skipped(clip_dir):
    d, clip, paths = clip_dir
    for k in ("speaker1_wav", "speaker2_wav"):
        shutil.copy(paths[k], d / paths[k].name.replace(clip, "nomotion"))
    ds = _ds(d.parent)
    assert [c.clip for c in ds.clips] == [clip] and ds.skipped[0][0] == "nomotion"
    os.remove(paths["speaker2_npz"])
    with pytest.raises(DatasetError, match="no supervisable clip"):
        _ds(d.parent)


# ---------------------------------------------------------------------------- errors
def test_truncated_wav_is_named(clip_dir):
    d, clip, paths = clip_dir
    data = paths["speaker1_wav"].read_bytes()
    paths["speaker1_wav"].write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=rf"{paths['speaker1_wav'].name}.*truncated"):
        _ds(d.parent)


def test_npz_without_keys_is_named(clip_dir):
    d, clip, paths = clip_dir
    np.savez(paths["speaker2_npz"], exp=np.zeros((587, 50), np.float32))  # no pose
    with pytest.raises(MotionFileError, match=rf"{paths['speaker2_npz'].name}.*lacks key.*pose"):
        _ds(d.parent)


def test_length_mismatches(clip_dir):
    d, clip, paths = clip_dir
    m = load_motion_npz(str(paths["speaker2_npz"]))
    # Within the ±2 frame tolerance: accepted, the clip is cut to the shortest file.
    save_motion_npz(str(paths["speaker2_npz"]), m[:585])
    assert _ds(d.parent).clips[0].num_frames == 585
    # Beyond it: the error names both files.
    save_motion_npz(str(paths["speaker2_npz"]), m[:550])
    with pytest.raises(DatasetError, match=rf"{paths['speaker2_npz'].name} spans 550.*{paths['speaker2_wav'].name} spans 587"):
        _ds(d.parent)
    save_motion_npz(str(paths["speaker2_npz"]), m)
    # The two speakers' audio must match too.
    wav, sr = load_audio(paths["speaker1_wav"])
    sf.write(paths["speaker1_wav"], wav[: 500 * SPF], sr, subtype="FLOAT")
    with pytest.raises(DatasetError, match=rf"length mismatch.*{paths['speaker1_wav'].name} spans 500"):
        _ds(d.parent)


def test_missing_files_and_dirs(clip_dir, tmp_path):
    d, clip, paths = clip_dir
    with pytest.raises(DatasetError, match="split 'test' not found"):
        _ds(d.parent, split="test")
    with pytest.raises(DatasetError, match="root not found"):
        _ds(tmp_path / "nowhere")
    os.remove(paths["speaker1_wav"])
    with pytest.raises(DatasetError, match=rf"no speaker1 wav.*{clip}_speaker1.wav"):
        _ds(d.parent)


# ---------------------------------------------------------------------------- relationships
def test_relationship_index_csv_and_yaml(tmp_path):
    csv_path = tmp_path / "rel.csv"
    csv_path.write_text(
        "clip,relationship\n# comment\n\na,siblings\nb,\"non-blood,non-equal\"\nc, Parent-Child \n"
    )
    idx = load_relationship_index(csv_path)
    assert len(idx) == 3 and idx.get("a").name == "siblings"
    assert idx.get("b") == Relationship(False, False) and idx.get("c").name == "parent_child"
    yml = tmp_path / "rel.yaml"
    yml.write_text("a: couple\nb: blood,equal\n")
    idx = load_relationship_index(yml)
    assert idx.get("a").name == "couple" and idx.get("b").name == "siblings"
    assert idx.lookup("zzz", "default", "superior_subordinate").name == "superior_subordinate"
    assert idx.defaulted == {"zzz"}
    with pytest.raises(RelationshipError, match=rf"clip 'zzz'.*{yml.name}"):
        idx.lookup("zzz", "refuse")
    with pytest.raises(RelationshipError, match="policy"):
        idx.lookup("a", "maybe")


@pytest.mark.parametrize(
    "text, match",
    [
        ("clip,relationship\na,couple\nb,cousins\n", r"rel\.csv:3.*unknown relationship 'cousins'"),
        ("a,couple,extra\n", r"rel\.csv:1.*expected 2 fields"),
        ("a,non-blood,equal\n", r"rel\.csv:1.*expected 2 fields.*quote"),
        ("a,couple\na,siblings\n", r"rel\.csv:2.*labelled twice"),
        (",couple\n", r"rel\.csv:1.*empty clip"),
    ],
)
def test_bad_csv_lines_name_file_and_line(tmp_path, text, match):
    p = tmp_path / "rel.csv"
    p.write_text(text)
    with pytest.raises(RelationshipError, match=match):
        load_relationship_index(p)


def test_bad_yaml_and_missing_index(tmp_path):
    p = tmp_path / "rel.yaml"
    p.write_text("a: couple\nb: frenemies\n")
    with pytest.raises(RelationshipError, match=r"rel\.yaml:2.*frenemies"):
        load_relationship_index(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(RelationshipError, match="mapping"):
        load_relationship_index(p)
    with pytest.raises(RelationshipError, match="not found"):
        load_relationship_index(tmp_path / "none.csv")


def test_dataset_uses_index_default_and_refuse(clip_dir, tmp_path):
    d, clip, _ = clip_dir
    idx = tmp_path / "rel.csv"
    idx.write_text(f"{clip},parent_child\n")
    it = _ds(d.parent, relationship_index=str(idx), unlabelled="refuse")[0]
    assert it["relationship"] == "parent_child" and int(it["blood"]) == 1 and int(it["equal"]) == 0
    idx.write_text("someone_else,parent_child\n")
    it = _ds(d.parent, relationship_index=str(idx), default_relationship="superior_subordinate")[0]
    assert it["relationship"] == "superior_subordinate" and int(it["blood"]) == 0 and int(it["equal"]) == 0
    with pytest.raises(RelationshipError, match=rf"clip '{clip}' has no relationship label.*rel\.csv"):
        _ds(d.parent, relationship_index=str(idx), unlabelled="refuse")
    with pytest.raises(RelationshipError):
        _ds(d.parent, default_relationship="enemies")


# ---------------------------------------------------------------------------- feature cache
def test_feature_cache_per_window(clip_dir, tmp_path):
    d, clip, paths = clip_dir
    enc = build_speech_encoder(SpeechConfig(encoder="logmel", n_mels=16))
    cache_dir = tmp_path / "cache"
    ds = _ds(d.parent, window_frames=100, stride_frames=200, feature_cache=str(cache_dir))
    ds = DualTalkDataset(ds.cfg, encoder=enc)
    stats = ds.precompute_features()
    assert stats == {"hits": 0, "misses": 2 * len(ds), "recomputed": 0}
    it = ds[1]
    assert "self_audio" not in it and it["self_features"].shape == (100, 16)
    own, _ = load_audio(paths["speaker2_wav"])
    s = it["start"]
    with torch.no_grad():
        ref = enc(torch.from_numpy(own[s * SPF : (s + 100) * SPF])[None], 16000, 100)[0]
    torch.testing.assert_close(it["self_features"], ref)
    entries = sorted(p for p in cache_dir.rglob("*.npy"))
    assert len(entries) == 2 * len(ds)

    # A fresh dataset (new process in practice) hits the cache; a corrupt entry is recomputed.
    ds2 = DualTalkDataset(ds.cfg, encoder=enc, return_audio=True)
    entry = ds2.features.entry_path(paths["speaker2_wav"], s, 100)
    with open(entry, "wb") as fh:
        fh.write(b"\x93NUMPY garbage")
    it2 = ds2[1]
    assert ds2.features.stats == {"hits": 1, "misses": 0, "recomputed": 1}
    torch.testing.assert_close(it2["self_features"], ref)
    assert it2["self_audio"].shape == (100 * SPF,)
    assert ds2.features._read(entry, 100) is not None  # rewritten intact

    # Keys: same content elsewhere hits; another window or another encoder config misses.
    copy = tmp_path / "copy.wav"
    shutil.copy(paths["speaker2_wav"], copy)
    assert ds2.features.entry_path(copy, s, 100) == entry
    assert ds2.features.entry_path(copy, s + 1, 100) != entry
    other = FeatureCache(build_speech_encoder(SpeechConfig(encoder="logmel", n_mels=20)), cache_dir)
    assert other.fingerprint != ds2.features.fingerprint
    assert FeatureCache(enc, cache_dir).fingerprint == ds2.features.fingerprint
