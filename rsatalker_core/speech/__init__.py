"""Speech in, per-frame features out (the first step of the data flow; docs/architecture.md).

* :mod:`~rsatalker_core.speech.audio` — loading, validating and resampling audio, the 25 fps
  frame clock.
* :mod:`~rsatalker_core.speech.encoder` — the :class:`SpeechEncoder` interface every backend
  implements.
* :mod:`~rsatalker_core.speech.factory` — :func:`build_speech_encoder` from a config.
* Backends: :mod:`~rsatalker_core.speech.whisper` (whisper-tiny from CTranslate2 weights),
  :mod:`~rsatalker_core.speech.wav2vec2` (the paper's encoder, local weights only),
  :mod:`~rsatalker_core.speech.logmel` (weight-free, for tests).
* :mod:`~rsatalker_core.speech.dialogue` — two-person dialogues arranged from single-speaker
  recordings (demo and synthetic corpus).
"""
