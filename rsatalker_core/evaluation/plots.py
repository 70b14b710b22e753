"""PNG plots of an evaluation (matplotlib, the non-interactive Agg backend).

* :func:`plot_group_bars`: one figure per group (EXP, JAW, POSE), one panel per metric, one
  bar per row of the table, with the paper's Table 1 scaling (the panel titles say which).
* :func:`plot_curves`: for a sample, the ground-truth and predicted jaw and head-pose
  axis-angle components (radians) over time (seconds at 25 fps).
"""

from __future__ import annotations

import os
from typing import List

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rsatalker_core.config import FPS, HEAD_SLICE, JAW_SLICE  # noqa: E402
from rsatalker_core.evaluation.runner import METRICS, ROWS, EvaluationResult, SampleResult  # noqa: E402
from rsatalker_core.evaluation.table import DIRECTION, column_labels  # noqa: E402
from rsatalker_core.metrics.motion import GROUPS, TABLE1_SCALE  # noqa: E402

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:gray", "tab:purple"]
#: Rows drawn in the curve plots besides the ground truth: (row, style).
CURVE_ROWS = (("model", "-"), ("no_social", "--"), ("mean_pose", ":"))


def plot_group_bars(result: EvaluationResult, out_dir: str) -> List[str]:
    """Bar charts ``bars_<group>.png`` (``EXP``, ``JAW``, ``POSE``) in ``out_dir``.

    A row without a value for a metric (skipped row, or P-FD/rPCC without any partner npz)
    gets no bar and an ``n/a`` mark.

    Returns:
        the written paths, in group order.
    """
    os.makedirs(out_dir, exist_ok=True)
    labels = column_labels()
    names = list(ROWS.values())
    paths = []
    for group in GROUPS:
        fig, axes = plt.subplots(1, len(METRICS), figsize=(3.0 * len(METRICS), 3.6), squeeze=False)
        for ax, metric in zip(axes[0], METRICS):
            key = f"{metric}-{group}"
            title = labels[key]
            vals = []
            for row in ROWS:
                v = (result.rows.get(row) or {}).get(key)
                vals.append(np.nan if v is None else v)
            y = np.asarray(vals, np.float64) * 10.0 ** TABLE1_SCALE.get(key, 0)
            x = np.arange(len(names))
            ax.bar(x, np.nan_to_num(y, nan=0.0), color=_COLORS[: len(names)])
            for xi, yi in zip(x, y):
                if not np.isfinite(yi):
                    ax.text(xi, 0.0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
            ax.set_title(f"{title} {DIRECTION[metric]}", fontsize=9)
            ax.set_xticks(x)
            ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
        fig.suptitle(f"{group}: {result.info.get('split', '')} split, {result.info.get('samples', 0)} samples")
        fig.tight_layout()
        path = os.path.join(out_dir, f"bars_{group}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_curves(sample: SampleResult, out_dir: str) -> str:
    """Jaw and head-pose curves of one sample: ``curves_<clip>_speaker<N>.png``.

    Six panels (jaw x/y/z, head x/y/z axis-angle, radians) against time in seconds; the
    ground truth in black, the model, the ``w/o socially-aware module`` ablation and the
    mean pose as lines. Needs ``sample.motion`` (kept for the first samples).

    Raises:
        ValueError: the sample's motion was not kept.
    """
    if "gt" not in sample.motion:
        raise ValueError(f"sample {sample.name}: motion not kept (evaluate_split keep_motion)")
    os.makedirs(out_dir, exist_ok=True)
    gt = sample.motion["gt"]
    t = np.arange(len(gt)) / FPS
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharex=True)
    for r, (part, cols) in enumerate((("jaw", JAW_SLICE), ("head", HEAD_SLICE))):
        for c, axis in enumerate("xyz"):
            ax = axes[r, c]
            ax.plot(t, gt[:, cols][:, c], color="black", lw=1.2, label="ground truth")
            for (row, style), color in zip(CURVE_ROWS, _COLORS):
                if row in sample.motion:
                    ax.plot(t, sample.motion[row][: len(t), cols][:, c], style, color=color, lw=1.0, label=ROWS[row])
            ax.set_title(f"{part} {axis} (rad)", fontsize=9)
            ax.tick_params(labelsize=7)
            if r == 1:
                ax.set_xlabel("time (s)", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{sample.name} ({sample.relationship}): jaw and head pose, predicted vs ground truth")
    fig.tight_layout()
    path = os.path.join(out_dir, f"curves_{sample.name}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
