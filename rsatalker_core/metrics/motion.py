"""Motion metrics of the DualTalk protocol: FD, P-FD, MSE, SID, rPCC and STS.

Every metric is computed per clip on three groups of the 56-D motion vector
``[exp 0:50 | jaw 50:53 | head 53:56]`` (:mod:`rsatalker_core.config`), then averaged over
clips with :func:`aggregate`:

============  =================  ==========================================================
group         motion columns     DualTalk npz source
============  =================  ==========================================================
``EXP``       ``0:50``           ``exp[:, :50]`` (FLAME expression coefficients)
``JAW``       ``50:53``          ``pose[:, 3:]`` (jaw axis-angle, radians)
``POSE``      ``53:56``          ``pose[:, :3]`` (head axis-angle, radians)
============  =================  ==========================================================

The definitions follow DualTalk's evaluation script (Peng et al., "DualTalk: Dual-Speaker
Interaction for 3D Talking Head Conversations", CVPR 2025; ``metric/metric.py`` of its code
release), re-implemented here; each function's docstring gives its formula. Prediction,
ground truth and the partner's ground truth are truncated to the shortest of them, as
DualTalk does. All arithmetic is in float64.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> gt, partner = rng.normal(size=(100, 56)), rng.normal(size=(100, 56))
    >>> m = motion_metrics(gt + 0.01, gt, partner)
    >>> round(m["MSE-EXP"], 6)
    0.0001
    >>> table = scale_for_table(aggregate([m]))
    >>> "FD-JAW (×10³)" in table
    True
"""

from __future__ import annotations

import warnings
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
from scipy import linalg
from scipy.cluster.vq import kmeans2, vq

from rsatalker_core import errors as _errors
from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, JAW_SLICE, MOTION_DIM

MetricError = _errors.MetricError


__all__ = [
    "GROUPS",
    "SID_CLUSTERS",
    "STS_TIMESTEP",
    "FD_EPS",
    "TABLE1_SCALE",
    "MetricError",
    "gaussian_stats",
    "frechet_distance_from_stats",
    "frechet_distance",
    "paired_frechet_distance",
    "mse",
    "shannon_index_diversity",
    "pearson",
    "rpcc",
    "sts",
    "motion_metrics",
    "aggregate",
    "scale_for_table",
]

#: Metric groups: name -> columns of the 56-D motion vector (DualTalk's EXP / JAW / POSE).
GROUPS: Dict[str, slice] = {"EXP": EXP_SLICE, "JAW": JAW_SLICE, "POSE": HEAD_SLICE}
#: k-means cluster counts for SID, per group (DualTalk: 40 for EXP, 10 for JAW and POSE).
SID_CLUSTERS: Dict[str, int] = {"EXP": 40, "JAW": 10, "POSE": 10}
#: The ``timestep`` divisor of DualTalk's STS. DualTalk uses 0.1 (not the 1/25 s frame
#: period); it is kept so that values compare with published ones.
STS_TIMESTEP: float = 0.1
#: Diagonal offset added to both covariances when ``sqrtm`` of their product is not finite
#: (the FID reference code's rule, also DualTalk's).
FD_EPS: float = 1e-6
#: Table 1 scaling of the RSATalker paper: column -> power of ten the value is multiplied by.
#: JAW columns x10^3, POSE columns x10^2 and MSE-EXP x10^1; others are reported unscaled.
TABLE1_SCALE: Dict[str, int] = {
    "FD-JAW": 3,
    "FD-POSE": 2,
    "P-FD-JAW": 3,
    "P-FD-POSE": 2,
    "MSE-EXP": 1,
    "MSE-JAW": 3,
    "MSE-POSE": 2,
}

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _as_frames(x, name: str, dim: Optional[int] = None) -> np.ndarray:
    """Any array-like / torch tensor ``[T, D]`` -> float64 numpy, checked."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise MetricError(f"{name} must be a [T, D] array of frames, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise MetricError(f"{name} must be [T, {dim}], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise MetricError(f"{name} holds NaN or Inf values")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise MetricError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


# --------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------


def gaussian_stats(x) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of per-frame features, as DualTalk computes them.

    Args:
        x: features ``[T, D]``, one row per frame.

    Returns:
        ``(mu [D], sigma [D, D])``: the sample mean and the unbiased sample covariance
        (``np.cov(x, rowvar=False)``, divisor ``T - 1``).

    Raises:
        MetricError: fewer than 2 frames (no covariance exists), a non-2-D input, NaN/Inf.
    """
    arr = _as_frames(x, "features")
    if arr.shape[0] < 2:
        raise MetricError(
            f"Fréchet distance needs at least 2 frames to estimate a covariance, got {arr.shape[0]}"
        )
    mu = arr.mean(axis=0)
    sigma = np.atleast_2d(np.cov(arr, rowvar=False))
    return mu, sigma


def _sqrtm(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "singular matrix" notes; handled by the caller
        return linalg.sqrtm(a)


def frechet_distance_from_stats(
    mu1: np.ndarray,  # [D]
    sigma1: np.ndarray,  # [D, D]
    mu2: np.ndarray,  # [D]
    sigma2: np.ndarray,  # [D, D]
    eps: float = FD_EPS,
) -> float:
    """Fréchet distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``FD = |mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^½)``
    (Dowson & Landau 1982; Heusel et al. 2017, the FID; DualTalk's
    ``calculate_frechet_distance``), with the matrix square root from
    ``scipy.linalg.sqrtm``.

    Degenerate cases follow one documented rule, so the result is never NaN:

    1. If ``sqrtm(sigma1 @ sigma2)`` is not finite (singular product), ``eps * I`` is added
       to both covariances and the square root is taken again (the FID code's rule).
    2. A complex square root (round-off on a singular product) is replaced by its real part.
    3. The result is clamped at 0: a true Fréchet distance is never negative, and tiny
       negatives are round-off.

    Raises:
        MetricError: mismatched shapes, or a result that is still not finite.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise MetricError(
            f"Fréchet distance: inconsistent shapes mu {mu1.shape}/{mu2.shape}, "
            f"sigma {s1.shape}/{s2.shape}"
        )
    diff = mu1 - mu2
    covmean = _sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = _sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    if not np.isfinite(fd):
        raise MetricError("Fréchet distance is not finite even after the eps*I fallback")
    return max(fd, 0.0)


def frechet_distance(x, y, eps: float = FD_EPS) -> float:
    """Fréchet distance (FD) between the per-frame feature distributions of two clips.

    Each clip's frames are summarised by a Gaussian (:func:`gaussian_stats`), then
    :func:`frechet_distance_from_stats` applies. Units: squared feature units (radians² for
    JAW / POSE).

    Args:
        x: features ``[T1, D]`` (DualTalk passes the prediction here).
        y: features ``[T2, D]`` (the ground truth). The clips need not be equally long.

    Raises:
        MetricError: fewer than 2 frames in either clip, differing ``D``, NaN/Inf.
    """
    mu1, s1 = gaussian_stats(x)
    mu2, s2 = gaussian_stats(y)
    return frechet_distance_from_stats(mu1, s1, mu2, s2, eps)


def paired_frechet_distance(pred, gt, partner_gt, eps: float = FD_EPS) -> float:
    """Paired Fréchet distance (P-FD): FD of ``[partner_gt, gt]`` versus ``[partner_gt, pred]``.

    Per frame, the partner's ground-truth features are concatenated with the listener's,
    so the distance also sees how the listener co-varies with the partner (DualTalk's
    ``p_fid``; introduced by Ng et al., "Learning to Listen", CVPR 2022).

    Args:
        pred: predicted features ``[T, D]``.
        gt: ground-truth features ``[T, D]``.
        partner_gt: the partner's ground-truth features ``[T, D]`` (same group).

    Raises:
        MetricError: differing shapes, fewer than 2 frames, NaN/Inf.
    """
    pred, gt = _as_frames(pred, "pred"), _as_frames(gt, "gt")
    partner = _as_frames(partner_gt, "partner_gt")
    _same_shape(pred, gt, "pred and gt")
    _same_shape(partner, gt, "partner_gt and gt")
    return frechet_distance(
        np.concatenate([partner, gt], axis=1), np.concatenate([partner, pred], axis=1), eps
    )


# --------------------------------------------------------------------------------------
# Per-frame and sequence metrics
# --------------------------------------------------------------------------------------


def mse(pred, gt) -> float:
    """Mean squared error over all frames and features: ``mean((pred - gt)²)``.

    Args:
        pred, gt: ``[T, D]`` with the same shape.
    """
    pred, gt = _as_frames(pred, "pred"), _as_frames(gt, "gt")
    _same_shape(pred, gt, "pred and gt")
    return float(np.mean((pred - gt) ** 2))


def _kmeans(data: np.ndarray, k: int, seed: int, max_iter: int = 300) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding (scipy ``kmeans2``), stopped once the labels
    no longer change or after ``max_iter`` iterations (sklearn's default cap). -> ``[k, D]``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One of the clusters is empty": the centroid stays
        centroids, labels = kmeans2(data, k, iter=1, minit="++", rng=seed)
        for _ in range(max_iter - 1):
            centroids, new_labels = kmeans2(data, centroids, iter=1, minit="matrix")
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
    return centroids


def shannon_index_diversity(fit, assign, k: int, seed: int = 0) -> float:
    """Shannon index diversity (SID), in bits, as DualTalk computes it.

    k-means with ``k`` clusters is fitted on the frames of ``fit``; every frame of
    ``assign`` is then given its nearest centroid, and the entropy of that cluster
    histogram ``p`` is returned: ``SID = -Σ_i p_i log2(p_i + 1e-6)`` (DualTalk's
    ``calcuate_sid``, after Ng et al., "Learning to Listen", CVPR 2022). The largest value
    is about ``log2(k)``; a collapsed sequence scores 0.

    Order of arguments: DualTalk's script calls its ``calcuate_sid(gt, pred, k)`` with the
    *prediction first*, so it fits k-means on the prediction and histograms the ground
    truth. :func:`motion_metrics` reproduces that executed order
    (``fit=pred, assign=gt``) so that values compare with published ones.

    Clustering: ``scipy.cluster.vq.kmeans2`` with k-means++ seeding (``seed``), Lloyd
    iterations until the labels settle (at most 300), standing in for DualTalk's
    ``sklearn.cluster.KMeans(random_state=0)``
    (same algorithm; the partition, and so SID, can differ where k-means has several local
    optima). When ``fit`` has fewer than ``k`` distinct frames, ``k`` is lowered to that
    number.

    Args:
        fit: frames ``[T1, D]`` the clusters are fitted on.
        assign: frames ``[T2, D]`` whose cluster histogram is measured.
        k: number of clusters (DualTalk: 40 for EXP, 10 for JAW / POSE).
        seed: k-means++ seed.

    Raises:
        MetricError: ``k < 1``, empty inputs, differing ``D``, NaN/Inf.
    """
    fit_arr, assign_arr = _as_frames(fit, "fit"), _as_frames(assign, "assign")
    if fit_arr.shape[0] == 0 or assign_arr.shape[0] == 0:
        raise MetricError("SID needs at least one frame in each sequence")
    if fit_arr.shape[1] != assign_arr.shape[1]:
        raise MetricError(f"SID: feature sizes differ, {fit_arr.shape} vs {assign_arr.shape}")
    if int(k) < 1:
        raise MetricError(f"SID: k must be >= 1, got {k}")
    k_eff = min(int(k), np.unique(fit_arr, axis=0).shape[0])
    if k_eff == 1:
        centroids = fit_arr[:1]
    else:
        centroids = _kmeans(fit_arr, k_eff, seed)
    labels, _ = vq(assign_arr, centroids)  # nearest centroid; ties go to the lower index
    hist = np.bincount(labels, minlength=k_eff).astype(np.float64)
    p = hist / hist.sum()
    return float(-np.sum(p * np.log2(p + 1e-6)))


def pearson(a, b) -> float:
    """Pearson correlation of two equally long 1-D series.

    Defined as 0 when either series is constant (its variance is 0), where the textbook
    coefficient is undefined: a constant sequence does not co-vary with anything.
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise MetricError(f"pearson needs two equally long series of >= 2 values, got {a.shape}, {b.shape}")
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    if denom == 0.0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip(np.dot(a, b) / denom, -1.0, 1.0))


def rpcc(pred, gt, partner_gt) -> float:
    """Residual Pearson correlation coefficient (rPCC) with the partner.

    ``rPCC = |PCC(gt, partner_gt) - PCC(pred, partner_gt)|``, each PCC taken over the
    flattened ``[T, D]`` arrays (row-major, as DualTalk's ``reshape(-1)``): how far the
    prediction's correlation with the partner is from the real listener's (DualTalk's
    ``rpcc``, after "Learning to Listen"). A constant sequence has PCC 0 (:func:`pearson`).

    Args:
        pred, gt, partner_gt: ``[T, D]``, the same shape.
    """
    pred, gt = _as_frames(pred, "pred"), _as_frames(gt, "gt")
    partner = _as_frames(partner_gt, "partner_gt")
    _same_shape(pred, gt, "pred and gt")
    _same_shape(partner, gt, "partner_gt and gt")
    return abs(pearson(gt, partner) - pearson(pred, partner))


def sts(pred, gt, timestep: float = STS_TIMESTEP) -> float:
    """Sequence temporal similarity (STS) distance between two sequences' velocities.

    ``STS = sqrt( Σ_{t>=1} Σ_d ((x_t,d - x_t-1,d) - (y_t,d - y_t-1,d))² / timestep )``
    (DualTalk's ``sts``; ``timestep`` = :data:`STS_TIMESTEP` = 0.1 there). Lower is better;
    identical frame-to-frame motion gives 0, whatever the offset between the sequences.

    Args:
        pred, gt: ``[T, D]``, the same shape, T >= 1.
        timestep: the divisor, > 0.
    """
    pred, gt = _as_frames(pred, "pred"), _as_frames(gt, "gt")
    _same_shape(pred, gt, "pred and gt")
    if not timestep > 0:
        raise MetricError(f"STS timestep must be > 0, got {timestep}")
    dv = np.diff(pred, axis=0) - np.diff(gt, axis=0)
    return float(np.sqrt(np.sum(dv * dv) / timestep))


# --------------------------------------------------------------------------------------
# Per-clip evaluation, aggregation and reporting
# --------------------------------------------------------------------------------------


def motion_metrics(pred, gt, partner_gt=None, *, sid_seed: int = 0) -> Dict[str, float]:
    """All DualTalk motion metrics of one clip, on the EXP, JAW and POSE groups.

    The three sequences are truncated to the shortest of them first.

    Args:
        pred: the predicted listener/speaker motion ``[T1, 56]`` (numpy or torch).
        gt: the ground-truth motion of the same person ``[T2, 56]``.
        partner_gt: the partner's ground-truth motion ``[T3, 56]``, or ``None``; P-FD and
            rPCC need it and are left out without it.
        sid_seed: k-means++ seed for SID.

    Returns:
        ``{"FD-EXP", "FD-JAW", "FD-POSE", "P-FD-*", "MSE-*", "SID-*", "rPCC-*", "STS-*"}``
        -> float, unscaled (see :func:`scale_for_table`). FD / P-FD / MSE are in squared
        units (FLAME coefficients² for EXP, radians² for JAW and POSE).

    Raises:
        MetricError: not ``[T, 56]``, fewer than 2 common frames, NaN/Inf.
    """
    pred_a = _as_frames(pred, "pred", MOTION_DIM)
    gt_a = _as_frames(gt, "gt", MOTION_DIM)
    partner_a = None if partner_gt is None else _as_frames(partner_gt, "partner_gt", MOTION_DIM)
    n = min(len(pred_a), len(gt_a), len(gt_a) if partner_a is None else len(partner_a))
    if n < 2:
        raise MetricError(
            f"motion metrics need at least 2 common frames, got {n} "
            f"(pred {len(pred_a)}, gt {len(gt_a)}"
            + ("" if partner_a is None else f", partner_gt {len(partner_a)}")
            + ")"
        )
    pred_a, gt_a = pred_a[:n], gt_a[:n]
    partner_a = None if partner_a is None else partner_a[:n]

    out: Dict[str, float] = {}
    for metric in ("FD", "P-FD", "MSE", "SID", "rPCC", "STS"):
        if metric in ("P-FD", "rPCC") and partner_a is None:
            continue
        for group, cols in GROUPS.items():
            p, g = pred_a[:, cols], gt_a[:, cols]
            key = f"{metric}-{group}"
            if metric == "FD":
                out[key] = frechet_distance(p, g)
            elif metric == "P-FD":
                out[key] = paired_frechet_distance(p, g, partner_a[:, cols])
            elif metric == "MSE":
                out[key] = mse(p, g)
            elif metric == "SID":
                out[key] = shannon_index_diversity(p, g, SID_CLUSTERS[group], seed=sid_seed)
            elif metric == "rPCC":
                out[key] = rpcc(p, g, partner_a[:, cols])
            else:
                out[key] = sts(p, g)
    return out


def aggregate(per_clip: Iterable[Mapping[str, float]]) -> Dict[str, float]:
    """Mean of each metric over clips (DualTalk averages per-clip values, unweighted).

    Args:
        per_clip: dicts from :func:`motion_metrics` (or any ``name -> float`` dicts), all
            with the same keys.

    Returns:
        ``name -> mean over clips``, keys in the order of the first clip.

    Raises:
        MetricError: no clips, clips with differing keys, or a non-finite value.
    """
    clips: List[Mapping[str, float]] = list(per_clip)
    if not clips:
        raise MetricError("aggregate needs at least one clip's metrics")
    keys = list(clips[0].keys())
    for i, clip in enumerate(clips[1:], start=1):
        if set(clip.keys()) != set(keys):
            raise MetricError(
                f"clip {i} has metrics {sorted(clip.keys())}, clip 0 has {sorted(keys)}"
            )
    out: Dict[str, float] = {}
    for key in keys:
        vals = np.array([float(c[key]) for c in clips], dtype=np.float64)
        if not np.isfinite(vals).all():
            raise MetricError(f"metric {key!r} has a non-finite value in some clip")
        out[key] = float(vals.mean())
    return out


def scale_for_table(metrics: Mapping[str, float]) -> Dict[str, float]:
    """Apply the RSATalker paper's Table 1 scaling and label the columns.

    JAW columns are multiplied by 10³, POSE columns by 10² and MSE-EXP by 10¹
    (:data:`TABLE1_SCALE`); other metrics keep their value and name.

    Args:
        metrics: ``name -> value`` from :func:`motion_metrics` or :func:`aggregate`.

    Returns:
        ``label -> scaled value``, e.g. ``{"FD-EXP": 10.7, "FD-JAW (×10³)": 2.1, ...}``, in
        the input's order.
    """
    out: Dict[str, float] = {}
    for key, value in metrics.items():
        power = TABLE1_SCALE.get(key, 0)
        if power:
            out[f"{key} (×10{str(power).translate(_SUPERSCRIPT)})"] = float(value) * 10.0**power
        else:
            out[key] = float(value)
    return out
