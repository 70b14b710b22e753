"""Error types raised by rsatalker_core. Every message names the offending file or value."""


class RsatalkerError(Exception):
    """Base class of all rsatalker errors (the CLI prints these as one line)."""


class ConfigError(RsatalkerError):
    """A config file or value is missing, malformed or out of range."""


class AudioError(RsatalkerError):
    """An audio file is missing, not audio, truncated, or has an unusable sample rate."""


class MotionFileError(RsatalkerError):
    """A FLAME motion npz is missing, malformed, or lacks required keys."""


class FlameModelError(RsatalkerError):
    """A FLAME model file is missing or does not have the official array layout."""


class RelationshipError(RsatalkerError, ValueError):
    """An unknown relationship name."""


class CheckpointError(RsatalkerError):
    """A checkpoint is missing, corrupt, or does not match the configured model."""


class SpeechEncoderError(RsatalkerError):
    """A speech encoder's weights cannot be found offline, or its input is unusable."""


class DatasetError(RsatalkerError):
    """A dataset directory or clip is unusable: missing split, missing speaker file, or
    lengths that do not match between files."""


class MetricError(RsatalkerError, ValueError):
    """Metric input is malformed: wrong shape, too few frames, NaN/Inf, bad key."""


class RenderError(RsatalkerError, ValueError):
    """Rendering input is unusable: mismatched shapes/devices, bad image size or backend."""


class TrainingError(RsatalkerError):
    """Training cannot continue: non-finite loss, or an unusable training state."""


class BagError(RsatalkerError):
    """A rosbag2 recording is missing, not a bag, cannot be created or written, or lacks
    what an evaluation needs (e.g. the ``avatar/flame_params`` topic)."""


class OutputError(RsatalkerError):
    """An output location cannot be written: a read-only directory, a path that is a
    directory where a file is expected (or a file where a directory is), or a path under a
    regular file. Checked before any work starts (:mod:`rsatalker_core.io.outputs`)."""


class MotionValueError(RsatalkerError, ValueError):
    """FLAME motion values (not from a file: a live frame, a message, a model output) are
    malformed, non-finite or outside the physical ranges of
    :func:`rsatalker_core.io.motion_npz.check_motion_ranges`."""
