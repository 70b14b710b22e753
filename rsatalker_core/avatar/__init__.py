"""The avatar: 3D Gaussians bound to the head mesh's triangles (GaussianAvatars binding).

* :mod:`~rsatalker_core.avatar.gaussians` — :class:`GaussianAvatar`, anchor and neural
  Gaussians in triangle-local frames, posed by the mesh.
* :mod:`~rsatalker_core.avatar.offsets` — :class:`RelationshipOffsets`, the relationship's
  per-anchor position offsets ``c`` (RSATalker §3.3 Gaussian offsetnet), carried by a
  trained avatar.
* :mod:`~rsatalker_core.avatar.fit` — fitting an avatar's Gaussians to a portrait (how the
  shipped default avatar was built).
"""
