"""rsatalker_core: the RSATalker method in pure PyTorch and numpy (no ROS imports).

Subpackages follow the data flow (docs/architecture.md):

    speech  ->  model  ->  head  ->  avatar  ->  render
    audio       FLAME      mesh      bound        pixels
    features    motion     vertices  Gaussians

with :mod:`~rsatalker_core.relationship` (the relationship value type),
:mod:`~rsatalker_core.data`, :mod:`~rsatalker_core.training`,
:mod:`~rsatalker_core.evaluation`, :mod:`~rsatalker_core.metrics` and
:mod:`~rsatalker_core.io` beside them. :mod:`~rsatalker_core.cli` is the offline job.
"""

__version__ = "0.1.0"
