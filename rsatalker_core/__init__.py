"""rsatalker_core: the RSATalker method in pure PyTorch and numpy (no ROS imports).

Data flow: audio → speech features (:mod:`speech`) → motion with the partner and the
relationship (:mod:`motion`, :mod:`social`) → FLAME vertices (:mod:`flame`) → bound
Gaussians (:mod:`avatar`) → pixels (:mod:`render`). :mod:`pipeline` assembles the stack,
:mod:`streaming` runs it live, :mod:`cli` is the offline job.
"""

__version__ = "0.1.0"
