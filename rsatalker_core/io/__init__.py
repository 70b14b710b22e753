"""Files in and out: checkpoints (atomic, validated), motion npz (DualTalk layout), mp4."""
