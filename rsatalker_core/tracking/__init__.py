"""Face tracking: camera frames -> FLAME motion of the loaded head model (docs/ros.md "Face tracker").

``landmarks`` (MediaPipe FaceMesh wrapper, face selection), ``embedding`` (landmark ->
mesh correspondence), ``fit`` (Levenberg-Marquardt fit of head pose, jaw, expression and
gaze), ``smoothing`` (One-Euro filter), ``tracker`` (the chain with a face / no-face state),
``offline`` (video files -> DualTalk npz + wav) and ``cli`` (``rsatalker track``).
ROS-free.
"""
