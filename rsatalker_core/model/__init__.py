"""Speech features + partner motion + relationship -> the avatar's FLAME motion.

* :mod:`~rsatalker_core.model.social` — relationship embeddings and the motion socialnet
  (RSATalker §3.3).
* :mod:`~rsatalker_core.model.generator` — the speaker–listener motion generator (§3.2).
* :mod:`~rsatalker_core.model.motion_model` — frozen speech encoder + generator, built from a
  config and a checkpoint (offline inference).
* :mod:`~rsatalker_core.model.streaming` — the same model fed chunk by chunk (live use).
"""
