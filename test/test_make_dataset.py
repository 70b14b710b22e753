"""``rsatalker make-dataset`` (rsatalker_core.data.make_dataset): dyadic recordings -> a
DualTalk-layout corpus that DualTalkDataset reads and stage-1 training accepts, from two
videos, a side-by-side video and a rosbag2 recording with two cameras and two audio
topics. Real faces and voices: the GRID clips (CC-BY 4.0, attribution in
../shared/data/grid_sample/README); skipped when they are absent."""

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, SHARED_DATA

from rsatalker_core.cli import main
from rsatalker_core.data.make_dataset import SAMPLE_RATE, clip_bounds, parse_crop
from rsatalker_core.errors import DatasetError

GRID = SHARED_DATA / "grid_sample"
CLIPS = sorted(GRID.glob("*.mpg")) if GRID.is_dir() else []
needs_grid = pytest.mark.skipif(len(CLIPS) < 2, reason=f"GRID sample not found under {GRID}")
HOP = SAMPLE_RATE // 25


def _audio(clip):
    from rsatalker_core.io.video import read_audio_track

    return read_audio_track(str(clip), SAMPLE_RATE)


def _frames(clip):
    from rsatalker_core.io.video import read_frames

    return read_frames(str(clip), rgb=False)


def _speech_energy(wav, T):
    return np.log(np.array([np.mean(wav[i * HOP : (i + 1) * HOP] ** 2) for i in range(T)]) + 1e-8)


@pytest.fixture(scope="module")
def two_videos_corpus(tmp_path_factory):
    if len(CLIPS) < 2:
        pytest.skip(f"GRID sample not found under {GRID}")
    pytest.importorskip("mediapipe")
    root = tmp_path_factory.mktemp("corpus")
    rc = main(["make-dataset", "--videos", str(CLIPS[0]), str(CLIPS[1]), "--root", str(root), "--name", "grid",
               "--relationship", "siblings", "--clip-seconds", "1.6"])
    assert rc == 0
    return root


def test_clip_bounds_and_crop_parsing():
    assert clip_bounds(75, 40) == [(0, 38), (38, 75)]
    assert clip_bounds(75, 0) == [(0, 75)]
    assert clip_bounds(10, 40) == []  # under one second
    assert parse_crop("0, 10,360,288") == (0, 10, 360, 288)
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,5", "-1,0,5,5"):
        with pytest.raises(DatasetError):
            parse_crop(bad)


@needs_grid
def test_two_videos_give_a_corpus_dualtalk_reads(two_videos_corpus):
    from rsatalker_core.config import DataConfig
    from rsatalker_core.data.dualtalk import DualTalkDataset
    from rsatalker_core.data.relationships import load_relationship_index

    root = two_videos_corpus
    index = load_relationship_index(str(root / "relationships.csv"))
    assert sorted(index) == ["grid_00", "grid_01"] and index.get("grid_00").name == "siblings"
    names = sorted(p.name for p in (root / "train").iterdir())
    assert names == [f"grid_0{c}_speaker{s}.{e}" for c in (0, 1) for s in (1, 2) for e in ("npz", "wav")]
    ds = DualTalkDataset(DataConfig(root=str(root), split="train", window_frames=0,
                                    relationship_index=str(root / "relationships.csv"), unlabelled="refuse"))
    assert len(ds) == 4  # 2 clips x 2 roles
    item = ds[0]
    assert bool(item["partner_motion_valid"]) and item["relationship"] == "siblings"
    assert item["self_motion"].shape[1] == 56 and 35 <= item["self_motion"].shape[0] <= 40
    # The wavs are the speakers' own voices, frame-aligned with the tracked motion.
    for spk, clip in ((1, CLIPS[0]), (2, CLIPS[1])):
        wav0, sr = sf.read(root / "train" / f"grid_00_speaker{spk}.wav", dtype="float32")
        d = np.load(root / "train" / f"grid_00_speaker{spk}.npz")
        assert sr == SAMPLE_RATE and len(wav0) == len(d["exp"]) * HOP
        np.testing.assert_allclose(wav0, _audio(clip)[: len(wav0)], atol=1e-6)
        assert d["valid"].all() and str(d["expression_space"]) == "rsatalker-standin"
    # Real tracking, not placeholders: the speaker's mouth opens with the speech.
    motion = np.concatenate([np.load(root / "train" / f"grid_0{c}_speaker1.npz")["pose"][:, 3] for c in (0, 1)])
    energy = _speech_energy(_audio(CLIPS[0]), len(motion))
    assert motion.std() > 1e-3 and np.corrcoef(motion, energy)[0, 1] > 0.2


@needs_grid
def test_stage1_training_accepts_the_corpus(two_videos_corpus, tmp_path):
    import torch

    from rsatalker_core.config import load_config
    from rsatalker_core.training.stage1 import MotionStage
    from rsatalker_core.training.trainer import Trainer

    root = two_videos_corpus
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(str(REPO / "config" / "train_stage1_test.yaml"), {
            "data.root": str(root), "data.split": "train", "data.relationship_index": str(root / "relationships.csv"),
            "data.unlabelled": "refuse", "train.out_dir": str(tmp_path / "run"), "train.max_steps": 4,
            "train.val_every": 0, "train.checkpoint_every": 0})
        stage = MotionStage(cfg)
        assert len(stage.train_data) == 4
        result = Trainer(stage, cfg.train, seed=cfg.seed).fit()
    finally:
        torch.set_num_threads(n)
    assert not result.interrupted and result.step == 4 and np.isfinite(result.loss)


@needs_grid
def test_side_by_side_video_matches_two_videos(two_videos_corpus, tmp_path):
    """Both GRID clips hstacked into one video: the crops give back each person's motion."""
    pytest.importorskip("mediapipe")
    import cv2

    a, b = _frames(CLIPS[0]), _frames(CLIPS[1])
    n = min(len(a), len(b))
    h, w = a[0].shape[:2]
    sbs = tmp_path / "sbs.avi"
    writer = cv2.VideoWriter(str(sbs), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (2 * w, h))
    for fa, fb in zip(a[:n], b[:n]):
        writer.write(np.hstack([fa, fb]))
    writer.release()
    for i, clip in enumerate(CLIPS[:2], start=1):
        sf.write(tmp_path / f"a{i}.wav", _audio(clip), SAMPLE_RATE)
    root = tmp_path / "corpus"
    args = ["make-dataset", "--side-by-side", str(sbs), "--crop1", f"0,0,{w},{h}", "--crop2", f"{w},0,{w},{h}",
            "--root", str(root), "--name", "grid", "--relationship", "siblings", "--clip-seconds", "1.6"]
    # The video has no audio track: each speaker's audio must be given.
    assert main(args) == 2
    assert main(args + ["--audio1", str(tmp_path / "a1.wav"), "--audio2", str(tmp_path / "a2.wav")]) == 0
    for spk in (1, 2):
        for c in (0, 1):
            got = np.load(root / "train" / f"grid_0{c}_speaker{spk}.npz")
            want = np.load(two_videos_corpus / "train" / f"grid_0{c}_speaker{spk}.npz")
            assert got["pose"].shape == want["pose"].shape
            # same face through another codec: head pose within 3 degrees, jaw follows
            assert np.degrees(np.abs(got["pose"][:, :3] - want["pose"][:, :3])).max() < 3.0
            assert np.abs(got["pose"][:, 3] - want["pose"][:, 3]).max() < 0.05
    # A crop outside the frame is a clear error.
    bad = args[:6] + [f"{w + 10},0,{w},{h}"] + args[7:] + ["--audio1", str(tmp_path / "a1.wav"),
                                                               "--audio2", str(tmp_path / "a2.wav"), "--overwrite"]
    assert main(bad) == 2


@needs_grid
def test_bag_with_two_cameras_and_two_audio_topics(two_videos_corpus, tmp_path):
    """A recording as record:=true writes it: self and partner cameras (Image bgr8, partner
    starting 0.4 s later) and self and partner audio (40-ms AudioChunks at 48 kHz)."""
    pytest.importorskip("mediapipe")
    from rsatalker_core.io import session_topics as st
    from rsatalker_core.io.bag_types import session_typestore
    from rsatalker_core.speech.audio import resample
    from rsatalker_ros.bag_recorder import BagWriter

    ts = session_typestore()
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]
    t0 = 1_700_000_000 * 10**9

    def stamp(ns):
        return Time(sec=int(ns // 10**9), nanosec=int(ns % 10**9))

    bag = tmp_path / "session"
    w = BagWriter(str(bag))
    topics = [st.SELF_CAMERA, st.PARTNER_CAMERA, st.AUDIO_SELF, st.AUDIO_PARTNER]
    for t in topics:
        w.add_topic(t.absolute, t.msgtype, reliable=False)
    delay = [0, 400_000_000]  # the partner camera and microphone start 0.4 s later
    for i, clip in enumerate(CLIPS[:2]):
        for k, bgr in enumerate(_frames(clip)):
            ns = t0 + delay[i] + k * 40_000_000
            h, wd = bgr.shape[:2]
            msg = T["sensor_msgs/msg/Image"](header=Header(stamp=stamp(ns), frame_id="cam"), height=h, width=wd,
                                             encoding="bgr8", is_bigendian=0, step=3 * wd,
                                             data=np.ascontiguousarray(bgr).reshape(-1))
            w.write(topics[i].absolute, ns + 5_000_000, ts.serialize_cdr(msg, msg.__msgtype__))
        wav48 = np.asarray(resample(_audio(clip), SAMPLE_RATE, 48000), np.float32)
        for j in range(0, len(wav48) - 1919, 1920):
            ns = t0 + delay[i] + j * 10**9 // 48000
            msg = T["rsatalker/msg/AudioChunk"](header=Header(stamp=stamp(ns), frame_id="mic"),
                                                role="self" if i == 0 else "partner", sample_rate=48000,
                                                samples=wav48[j : j + 1920])
            w.write(topics[2 + i].absolute, ns + 1_000_000, ts.serialize_cdr(msg, msg.__msgtype__))
    w.close()

    root = tmp_path / "corpus"
    assert main(["make-dataset", "--bag", str(bag), "--root", str(root), "--name", "session",
                 "--relationship", "superior_subordinate", "--split", "test", "--clip-seconds", "0"]) == 0
    d1 = np.load(root / "test" / "session_00_speaker1.npz")
    d2 = np.load(root / "test" / "session_00_speaker2.npz")
    T_ = len(d1["exp"])
    # the span all four streams cover: 3 s of video, 2.96 s of whole 40-ms audio chunks, minus
    # the partner's 0.4-s late start
    assert len(d2["exp"]) == T_ and 62 <= T_ <= 64
    assert d1["valid"].all() and d2["valid"].all()
    # Aligned on the capture clock: speaker 1's frames 10.. are the two-video run's frames 0..
    ref1 = np.concatenate([np.load(two_videos_corpus / "train" / f"grid_0{c}_speaker1.npz")["pose"] for c in (0, 1)])
    ref2 = np.concatenate([np.load(two_videos_corpus / "train" / f"grid_0{c}_speaker2.npz")["pose"] for c in (0, 1)])
    n = min(T_, len(ref1) - 10, len(ref2))
    assert np.corrcoef(d1["pose"][:n, 3], ref1[10 : 10 + n, 3])[0, 1] > 0.8
    assert np.corrcoef(d2["pose"][:n, 3], ref2[:n, 3])[0, 1] > 0.8
    # and speaker 1's audio starts 0.4 s into the clip's own sound track
    wav1, _ = sf.read(root / "test" / "session_00_speaker1.wav", dtype="float32")
    ref = _audio(CLIPS[0])[10 * HOP : 10 * HOP + len(wav1)]
    assert np.corrcoef(wav1[: len(ref)], ref)[0, 1] > 0.95
    from rsatalker_core.data.relationships import load_relationship_index

    assert load_relationship_index(str(root / "relationships.csv")).get("session_00").name == "superior_subordinate"
    # a topic the bag lacks
    assert main(["make-dataset", "--bag", str(bag), "--root", str(root), "--relationship", "couple",
                 "--bag-topics", "cam/a", "partner/camera/image", "audio/self", "audio/partner"]) == 2
