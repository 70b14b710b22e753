"""The head model: FLAME motion ``[exp | jaw | head]`` -> mesh vertices.

* :mod:`~rsatalker_core.head.flame` — the FLAME layer (linear blend skinning), reading a
  user-supplied FLAME file or falling back to the stand-in.
* :mod:`~rsatalker_core.head.standin` — a procedurally built head with FLAME's array layout
  and joint structure, for running without the (non-redistributable) FLAME file.
"""
