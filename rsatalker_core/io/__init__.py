"""Files in and out: checkpoints (atomic, validated), motion npz (DualTalk layout), mp4, and
rosbag2 recordings of a session (its topics: session_topics; message types: bag_types)."""
