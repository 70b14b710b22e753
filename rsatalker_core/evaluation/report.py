"""Write an evaluation's files: tables, per-sample metrics, plots and ``report.md``.

Output directory layout (all paths in ``report.md`` are relative to it)::

    report.md          the report: provenance, the table, the plots, notes
    table.md           the Table 1-style markdown table (:mod:`.table`)
    table.csv          the same table as CSV
    metrics.json       unscaled per-row means and per-sample metrics, with provenance
    plots/bars_{EXP,JAW,POSE}.png
    plots/curves_<clip>_speaker<N>.png   (the first few samples)
"""

from __future__ import annotations

import json
import os
from typing import Dict, List

from rsatalker_core.evaluation.baselines import SOURCE_TRAIN
from rsatalker_core.evaluation.plots import plot_curves, plot_group_bars
from rsatalker_core.evaluation.runner import ROWS, EvaluationResult
from rsatalker_core.evaluation.table import markdown_table, write_csv, write_markdown


def write_metrics_json(result: EvaluationResult, path: str) -> str:
    """Unscaled metrics: ``{"info", "rows", "counts", "skipped", "samples": [...]}``."""
    data = {
        "info": result.info,
        "rows": result.rows,
        "counts": {k: {"samples": n, "with_partner": p} for k, (n, p) in result.counts.items()},
        "skipped": result.skipped,
        "samples": [
            {
                "clip": s.clip, "self_speaker": s.self_speaker, "relationship": s.relationship,
                "num_frames": s.num_frames, "has_partner": s.has_partner, "metrics": s.metrics,
            }
            for s in result.samples
        ],
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False)
    return path


def _report_text(result: EvaluationResult, bars: List[str], curves: List[str], out_dir: str) -> str:
    info = result.info
    rel = lambda p: os.path.relpath(p, out_dir).replace(os.sep, "/")  # noqa: E731
    ckpt = info.get("checkpoint") or f"none: untrained generator (random init, seed {info.get('seed')})"
    mean_src = str(info.get("mean_pose_source", ""))
    mean_rule = (
        "the mean motion of the data directory's train split"
        if mean_src.startswith(SOURCE_TRAIN)
        else "the model's `motion_mean` statistics (no train split in the data directory; "
        "all zeros, the neutral face, for an untrained model)"
    )
    lines = [
        f"# Motion evaluation: {info.get('split')} split",
        "",
        f"- data: `{info.get('data_root')}` / `{info.get('split')}`: {info.get('clips')} clips, "
        f"{info.get('samples')} samples (clip × avatar speaker with an npz), "
        f"{info.get('samples_with_partner')} with the partner's npz",
        f"- motion checkpoint: {ckpt}",
        f"- speech encoder: {info.get('speech_encoder')}; device: {info.get('device')}",
        f"- time: {float(info.get('seconds_total', 0.0)):.1f} s "
        f"({float(info.get('clips_per_second', 0.0)):.3g} clips/s; model inference "
        f"{float(info.get('seconds_model', 0.0)):.1f} s)",
        "",
        "Files: [table.md](table.md), [table.csv](table.csv), [metrics.json](metrics.json) "
        "(unscaled, per sample).",
        "",
        "## Table (layout of the paper's Table 1)",
        "",
        markdown_table(result),
        "## Rows",
        "",
        f"- **{ROWS['model']}**: both speakers' speech and the partner's ground-truth motion "
        "(the generator's neutral fallback, all zeros, when the partner npz is missing).",
        f"- **{ROWS['no_social']}**: the same inputs with the social feature s set to zero "
        "(`SpeakerListenerMotionGenerator.social_bypassed()`): an inference-time knock-out of "
        "the trained model, not the paper's retrained ablation.",
        f"- **{ROWS['no_partner']}**: partner audio silenced (zeros through the speech "
        "encoder) and no partner motion (neutral fallback).",
        f"- **{ROWS['mean_pose']}**: every frame predicted as {mean_rule}; source: {mean_src}.",
        f"- **{ROWS['mirror']}**: the partner's ground-truth motion as the prediction, on "
        "samples with the partner's npz"
        + (f" (skipped here: {result.skipped['mirror']})." if "mirror" in result.skipped else "."),
        "",
        "## Plots",
        "",
    ]
    for p in bars:
        lines += [f"![{os.path.basename(p)}]({rel(p)})", ""]
    if curves:
        lines += ["### Jaw and head pose, predicted vs ground truth", ""]
        for p in curves:
            lines += [f"![{os.path.basename(p)}]({rel(p)})", ""]
    return "\n".join(lines)


def write_report(result: EvaluationResult, out_dir: str, curves: int = 3) -> Dict[str, object]:
    """Write every output file of an evaluation into ``out_dir`` (layout in the module doc).

    Args:
        result: from :func:`~.runner.evaluate_split`.
        out_dir: created if missing; existing files of the same names are replaced.
        curves: curve plots for at most this many samples (those with kept motion).

    Returns:
        ``{"report", "table_md", "table_csv", "metrics_json": path, "bars": [paths],
        "curves": [paths]}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    plots = os.path.join(out_dir, "plots")
    paths: Dict[str, object] = {
        "table_md": write_markdown(result, os.path.join(out_dir, "table.md")),
        "table_csv": write_csv(result, os.path.join(out_dir, "table.csv")),
        "metrics_json": write_metrics_json(result, os.path.join(out_dir, "metrics.json")),
        "bars": plot_group_bars(result, plots),
        "curves": [plot_curves(s, plots) for s in [s for s in result.samples if s.motion][:curves]],
    }
    report = os.path.join(out_dir, "report.md")
    with open(report, "w", encoding="utf-8") as fh:
        fh.write(_report_text(result, paths["bars"], paths["curves"], out_dir))
    paths["report"] = report
    return paths
