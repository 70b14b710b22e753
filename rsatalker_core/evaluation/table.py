"""Table 1-style CSV and markdown tables of an :class:`~.runner.EvaluationResult`.

Layout after Table 1 of RSATalker (and DualTalk): one row per method, and for every metric
(FD, P-FD, MSE, SID, rPCC, STS) one column per group EXP / JAW / POSE. Values carry the
paper's scaling (:data:`rsatalker_core.metrics.motion.TABLE1_SCALE`: JAW ×10³, POSE ×10²,
MSE-EXP ×10¹), and the column labels say so (``"FD-JAW (×10³)"``, from
:func:`~rsatalker_core.metrics.motion.scale_for_table`). Two count columns precede them:
``samples`` (samples scored) and ``with partner`` (of those, samples with the partner's npz,
over which P-FD and rPCC average). A missing value (no sample has it) is an empty CSV cell
and ``n/a`` in markdown; a skipped row keeps its line, with the reason.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, List, Optional

from rsatalker_core.evaluation.runner import METRIC_KEYS, METRICS, ROWS, EvaluationResult
from rsatalker_core.metrics.motion import scale_for_table

#: Direction of improvement per metric (DualTalk's arrows): SID is a diversity (higher is
#: better), the others are distances/errors (lower is better).
DIRECTION: Dict[str, str] = {"FD": "↓", "P-FD": "↓", "MSE": "↓", "SID": "↑", "rPCC": "↓", "STS": "↓"}
COUNT_COLUMNS = ("samples", "with partner")


def column_labels() -> Dict[str, str]:
    """Metric key -> scaled column label, e.g. ``"MSE-EXP" -> "MSE-EXP (×10¹)"``."""
    return {key: label for key, label in zip(METRIC_KEYS, scale_for_table({k: 0.0 for k in METRIC_KEYS}))}


def table_rows(result: EvaluationResult) -> List[Dict[str, object]]:
    """One dict per row of :data:`~.runner.ROWS`: ``{"method", "samples", "with partner",
    <scaled label>: float or None, "note": str}``."""
    labels = column_labels()
    out: List[Dict[str, object]] = []
    for row, name in ROWS.items():
        n, n_partner = result.counts.get(row, (0, 0))
        rec: Dict[str, object] = {"method": name, "samples": n, "with partner": n_partner}
        values = result.rows.get(row)
        if values is None:
            rec.update({labels[k]: None for k in METRIC_KEYS})
            rec["note"] = f"skipped: {result.skipped.get(row, 'no sample')}"
        else:
            scaled = scale_for_table({k: (0.0 if v is None else v) for k, v in values.items()})
            for key in METRIC_KEYS:
                rec[labels[key]] = None if values[key] is None else scaled[labels[key]]
            missing = [k for k in METRIC_KEYS if values[k] is None]
            rec["note"] = "P-FD, rPCC: no partner npz" if missing else ""
        out.append(rec)
    return out


def write_csv(result: EvaluationResult, path: str) -> str:
    """Write the table as CSV (UTF-8, header row, full precision; empty cell = missing)."""
    labels = list(column_labels().values())
    header = ["method", *COUNT_COLUMNS, *labels, "note"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for rec in table_rows(result):
            writer.writerow(["" if rec[h] is None else (repr(rec[h]) if isinstance(rec[h], float) else rec[h]) for h in header])
    return path


def _fmt(v: Optional[object]) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(result: EvaluationResult) -> str:
    """The table as GitHub markdown, with a legend of the scaling and the arrows."""
    labels = column_labels()
    header = ["method", *COUNT_COLUMNS] + [f"{labels[k]} {DIRECTION[k.rsplit('-', 1)[0]]}" for k in METRIC_KEYS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rec in table_rows(result):
        cells = [str(rec["method"]) + (f" ({rec['note']})" if rec["note"] else "")]
        cells += [_fmt(rec[c]) for c in COUNT_COLUMNS] + [_fmt(rec[labels[k]]) for k in METRIC_KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    legend = (
        f"Metrics {', '.join(METRICS)} per group EXP (50 expression coefficients), JAW (3, jaw "
        "axis-angle, rad) and POSE (3, head axis-angle, rad), averaged over samples. Scaling as in "
        "the paper's Table 1: JAW columns ×10³, POSE columns ×10², MSE-EXP ×10¹; the labels say "
        "which. ↓ lower is better, ↑ higher is better. P-FD and rPCC need the partner's ground "
        "truth and average over the `with partner` samples only; `n/a` = no sample had it."
    )
    return "\n".join(lines) + "\n\n" + legend + "\n"


def write_markdown(result: EvaluationResult, path: str) -> str:
    """Write :func:`markdown_table` to ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(markdown_table(result))
    return path
