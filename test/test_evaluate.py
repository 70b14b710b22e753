"""``rsatalker evaluate``: tables, plots and report on the real DualTalk sample, baselines,
the social-module ablation switch and bad input."""

import csv
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import SMALL_CONFIG
from rsatalker_core.cli import main
from rsatalker_core.evaluation.runner import METRIC_KEYS, ROWS
from rsatalker_core.evaluation.table import column_labels

LABELS = column_labels()
NAMES = list(ROWS.values())


def _split(root, sample, files=("speaker1_wav", "speaker2_wav", "speaker2_npz"), split="test"):
    d = root / split
    d.mkdir(parents=True, exist_ok=True)
    for key in files:
        os.symlink(sample[key], d / sample[key].name)
    return d


def _run(data, out, *extra):
    return main(["evaluate", "--data", str(data), "--split", "test", "--config", str(SMALL_CONFIG),
                 "--out", str(out), *extra])


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {r["method"]: r for r in rows}


def _num(cell):
    return float(cell) if cell != "" else None


@pytest.fixture(scope="module")
def real_eval(tmp_path_factory, dualtalk_sample, small_cfg):
    """The real sample split, evaluated with a checkpoint whose motion_mean is 0.1."""
    from rsatalker_core.model.motion_model import MotionModel

    root = tmp_path_factory.mktemp("real")
    _split(root / "data", dualtalk_sample)
    model = MotionModel(small_cfg)
    model.generator.motion_mean.fill_(0.1)
    model.save(str(root / "motion.pt"))
    out = root / "out"
    assert _run(root / "data", out, "--checkpoint", str(root / "motion.pt")) == 0
    return out


def real_eval_clip(out):
    return next((out.parent / "data" / "test").glob("*_speaker2.npz")).name[: -len("_speaker2.npz")]


def test_real_sample_table(real_eval):
    rows = _read_csv(real_eval / "table.csv")
    assert list(rows) == NAMES
    header = list(next(iter(rows.values())).keys())
    assert header == ["method", "samples", "with partner", *LABELS.values(), "note"]
    assert "FD-JAW (×10³)" in header and "MSE-EXP (×10¹)" in header and "FD-POSE (×10²)" in header
    for name in NAMES[:4]:  # model, two ablations, mean pose: one sample, no partner npz
        r = rows[name]
        assert (r["samples"], r["with partner"]) == ("1", "0")
        for key in METRIC_KEYS:
            v = _num(r[LABELS[key]])
            if key.startswith(("P-FD", "rPCC")):
                assert v is None  # needs the partner's ground truth, absent in the sample
            else:
                assert v is not None and math.isfinite(v)
    model, mean = rows[ROWS["model"]], rows[ROWS["mean_pose"]]
    assert any(_num(model[LABELS[k]]) != _num(mean[LABELS[k]]) for k in ("MSE-EXP", "MSE-JAW", "FD-POSE"))
    # the ablation switch changes the prediction
    assert _num(rows[ROWS["no_social"]][LABELS["MSE-JAW"]]) != _num(model[LABELS["MSE-JAW"]])
    mirror = rows[ROWS["mirror"]]
    assert mirror["samples"] == "0" and "skipped" in mirror["note"]
    assert all(mirror[LABELS[k]] == "" for k in METRIC_KEYS)

    # the scaling is applied: table value = unscaled metrics.json value x 10^k
    metrics = json.loads((real_eval / "metrics.json").read_text())
    raw = metrics["rows"]["model"]
    assert _num(model[LABELS["MSE-JAW"]]) == pytest.approx(raw["MSE-JAW"] * 1e3)
    assert _num(model[LABELS["MSE-EXP"]]) == pytest.approx(raw["MSE-EXP"] * 10)
    assert _num(model[LABELS["FD-EXP"]]) == pytest.approx(raw["FD-EXP"])
    # no train/ split here: the mean pose is the checkpoint's motion_mean (0.1 everywhere)
    assert metrics["info"]["mean_pose_source"] == "model motion_mean"
    assert metrics["info"]["checkpoint"].endswith("motion.pt")
    assert [(m["clip"], m["self_speaker"]) for m in metrics["samples"]] == [(real_eval_clip(real_eval), 2)]
    with np.load(real_eval.parent / "data" / "test" / f"{real_eval_clip(real_eval)}_speaker2.npz") as z:
        gt_pose = z["pose"].astype(np.float64)
    assert metrics["rows"]["mean_pose"]["MSE-POSE"] == pytest.approx(np.mean((gt_pose[:, :3] - 0.1) ** 2), rel=1e-5)

    md = (real_eval / "table.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + len(NAMES)
    assert all(name in "\n".join(lines) for name in NAMES)
    assert "n/a" in md and "×10³" in md


def test_real_sample_plots_and_report(real_eval):
    from PIL import Image

    pngs = sorted((real_eval / "plots").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"bars_EXP.png", "bars_JAW.png", "bars_POSE.png"} <= names
    assert any(n.startswith("curves_") and "speaker2" in n for n in names)
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
        arr = np.asarray(Image.open(p).convert("RGB"))
        assert arr.shape[0] > 100 and arr.shape[1] > 100 and arr.std() > 0  # drawn, not blank

    report = (real_eval / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert len(links) >= 3 + len(pngs)
    for link in links:
        assert (real_eval / link).is_file(), link
    for p in pngs:
        assert f"plots/{p.name}" in links
    assert "motion.pt" in report and ROWS["mirror"] in report


def test_mirroring_with_partner_and_train_mean(tmp_path, dualtalk_sample):
    """A partner npz (a copy of speaker 2's) makes mirroring exact: zero MSE/FD, and every
    row gets P-FD/rPCC; a train/ split sets the mean pose."""
    data = tmp_path / "data"
    test = _split(data, dualtalk_sample)
    shutil.copy(dualtalk_sample["speaker2_npz"], test / dualtalk_sample["speaker2_npz"].name.replace("speaker2", "speaker1"))
    train = _split(data, dualtalk_sample, files=("speaker1_wav", "speaker2_wav"), split="train")
    with np.load(dualtalk_sample["speaker2_npz"]) as z:
        T = len(z["exp"])
    exp = np.full((T, 50), 0.5, np.float32)
    pose = np.tile(np.array([0.1, 0.0, 0.0, 0.2, 0.0, 0.0], np.float32), (T, 1))  # [head | jaw]
    np.savez(train / dualtalk_sample["speaker2_npz"].name, exp=exp, pose=pose)

    for name in ("speaker1_wav", "speaker2_wav", "speaker2_npz"):  # a second clip, left out
        os.symlink(dualtalk_sample[name], test / ("zz_" + dualtalk_sample[name].name))
    out = tmp_path / "out"
    assert _run(data, out, "--curves", "1", "--max-clips", "1") == 0
    rows = _read_csv(out / "table.csv")
    for name in NAMES:
        assert (rows[name]["samples"], rows[name]["with partner"]) == ("2", "2")
        assert all(_num(rows[name][LABELS[k]]) is not None for k in METRIC_KEYS)
    mirror = rows[ROWS["mirror"]]
    for group in ("EXP", "JAW", "POSE"):
        assert _num(mirror[LABELS[f"MSE-{group}"]]) == 0.0
        assert _num(mirror[LABELS[f"STS-{group}"]]) == 0.0
        assert _num(mirror[LABELS[f"FD-{group}"]]) == pytest.approx(0.0, abs=1e-6)
        assert _num(mirror[LABELS[f"P-FD-{group}"]]) == pytest.approx(0.0, abs=1e-6)
    assert _num(rows[ROWS["model"]][LABELS["MSE-EXP"]]) > 0

    # mean pose = the train split's mean: [exp 0.5 | jaw (0.2, 0, 0) | head (0.1, 0, 0)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["info"]["mean_pose_source"].startswith("train split")
    with np.load(dualtalk_sample["speaker2_npz"]) as z:
        gt_exp, gt_pose = z["exp"][:, :50].astype(np.float64), z["pose"].astype(np.float64)
    want_exp = np.mean((gt_exp - 0.5) ** 2)
    want_jaw = np.mean((gt_pose[:, 3:] - [0.2, 0.0, 0.0]) ** 2)
    got = metrics["rows"]["mean_pose"]
    assert got["MSE-EXP"] == pytest.approx(want_exp, rel=1e-5)
    assert got["MSE-JAW"] == pytest.approx(want_jaw, rel=1e-5)
    assert len(list((out / "plots").glob("curves_*.png"))) == 1


def test_speech_features_encoded_once_per_clip(tmp_path, dualtalk_sample, small_cfg, monkeypatch):
    """A clip with both speakers' npz gives two samples x three generated rows; each track
    (speaker 1, speaker 2, silence) is encoded once, and the motion equals the row-by-row
    live path (generate_offline) up to float round-off."""
    import rsatalker_core.evaluation.runner as runner
    from rsatalker_core.model.motion_model import MotionModel

    data = tmp_path / "data"
    test = _split(data, dualtalk_sample)
    shutil.copy(dualtalk_sample["speaker2_npz"], test / dualtalk_sample["speaker2_npz"].name.replace("speaker2", "speaker1"))
    model = MotionModel(small_cfg)
    calls = []
    real = runner.sliding_window_features

    def counting(m, wav, *args, **kw):
        calls.append(float(np.abs(wav).sum()))
        return real(m, wav, *args, **kw)

    monkeypatch.setattr(runner, "sliding_window_features", counting)
    cached = runner.evaluate_split(model, str(data), "test", keep_motion=2, progress=False)
    assert len(cached.samples) == 2 and len(calls) == 3  # speaker 1, speaker 2, silence
    assert sorted(c == 0.0 for c in calls) == [False, False, True]
    monkeypatch.setattr(runner, "MAX_CACHED_FRAMES", 0)  # the row-by-row path
    plain = runner.evaluate_split(model, str(data), "test", keep_motion=2, progress=False)
    assert len(calls) == 3
    for a, b in zip(cached.samples, plain.samples):
        for row in ("model", "no_social", "no_partner"):
            np.testing.assert_allclose(a.motion[row], b.motion[row], atol=1e-5)
        assert not np.allclose(a.motion["model"], a.motion["no_partner"], atol=1e-5)


def test_social_bypass_switch(small_cfg):
    from rsatalker_core.model.generator import SpeakerListenerMotionGenerator
    from rsatalker_core.relationship import relationship_tensors

    torch.manual_seed(0)
    gen = SpeakerListenerMotionGenerator(small_cfg.motion, small_cfg.social, 8).eval()
    fs, fp = torch.randn(1, 20, 8), torch.randn(1, 20, 8)
    sib, boss = relationship_tensors(["siblings"]), relationship_tensors(["superior_subordinate"])
    with torch.no_grad():
        on_sib, on_boss = gen(fs, fp, *sib), gen(fs, fp, *boss)
        with gen.social_bypassed():
            off_sib, off_boss = gen(fs, fp, *sib), gen(fs, fp, *boss)
        again = gen(fs, fp, *sib)
    assert not torch.allclose(on_sib, on_boss)  # the relationship matters with the module
    assert torch.equal(off_sib, off_boss)  # and not without it
    assert not torch.allclose(off_sib, on_sib)
    assert torch.equal(again, on_sib) and gen.use_social
    with pytest.raises(RuntimeError):
        with gen.social_bypassed():
            raise RuntimeError("boom")
    assert gen.use_social


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_bad_input(tmp_path, dualtalk_sample, capsys):
    out = tmp_path / "out"
    assert _run(tmp_path / "missing", out) == 2
    assert "data directory not found" in _error_line(capsys)

    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    assert _run(data, out) == 2  # empty split
    assert "no supervisable clip" in _error_line(capsys)

    assert main(["evaluate", "--data", str(data), "--split", "validation", "--config", str(SMALL_CONFIG),
                 "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "unknown split 'validation'" in line and "test" in line

    bad = tmp_path / "bad"
    d = _split(bad, dualtalk_sample, files=("speaker1_wav", "speaker2_wav"))
    (d / dualtalk_sample["speaker2_npz"].name).write_bytes(b"not an npz at all")
    assert _run(bad, out) == 2
    assert dualtalk_sample["speaker2_npz"].name in _error_line(capsys)

    assert _run(bad, out, "--checkpoint", str(tmp_path / "nope.pt")) == 2
    assert "checkpoint not found" in _error_line(capsys)
    assert _run(bad, out, "--max-clips", "0") == 2
    assert "--max-clips" in _error_line(capsys)
    (tmp_path / "file").write_text("x")
    assert _run(bad, tmp_path / "file") == 2
    assert "not a directory" in _error_line(capsys)
    assert not out.exists()  # nothing written on bad input
