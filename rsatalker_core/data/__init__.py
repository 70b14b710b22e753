"""Training data: DualTalk-layout clips, relationship labels, feature cache, and a
SYNTHETIC-SUPERVISION dyadic corpus generator.

* :mod:`.dualtalk` — :class:`DataConfig`, :class:`DualTalkDataset` (windows of
  ``<root>/<split>/<clip>_speaker{1,2}.{wav,npz}``), :func:`collate_windows`.
* :mod:`.relationships` — the clip -> relationship index (CSV / YAML) and the unlabelled
  policy.
* :mod:`.feature_cache` — per-window speech features cached on disk.
* :mod:`.synthetic` — a synthetic dyadic corpus (real recorded speech, rule-based motion
  targets), written in the DualTalk layout; imported on demand.
"""

from rsatalker_core.data.dualtalk import (
    SYNTHETIC_METADATA,
    DataConfig,
    DatasetError,
    DualTalkDataset,
    collate_windows,
    window_starts,
)
from rsatalker_core.data.feature_cache import FeatureCache, encoder_fingerprint, file_sha256
from rsatalker_core.data.relationships import (
    RelationshipIndex,
    load_relationship_index,
    write_relationship_index,
)

__all__ = [
    "DataConfig",
    "DatasetError",
    "DualTalkDataset",
    "FeatureCache",
    "RelationshipIndex",
    "SYNTHETIC_METADATA",
    "collate_windows",
    "encoder_fingerprint",
    "file_sha256",
    "load_relationship_index",
    "window_starts",
    "write_relationship_index",
]
