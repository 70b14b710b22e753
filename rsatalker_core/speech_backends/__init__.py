"""Backends of :class:`rsatalker_core.speech.SpeechEncoder`: ``logmel``, ``whisper``
(whisper-tiny from CTranslate2 weights) and ``wav2vec2``. Build them with
:func:`rsatalker_core.speech.build_speech_encoder`."""
