"""``rsatalker track VIDEO --out OUT.npz [--overlay OUT.mp4]``: a recorded face video ->
DualTalk-layout FLAME npz at 25 fps + the 16-kHz wav of its audio
(:mod:`rsatalker_core.tracking.offline`; docs/ros.md "Face tracker")."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_track_parser", "cmd_track"]


def add_track_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="face video -> FLAME motion npz (DualTalk layout, 25 fps) + 16-kHz wav")
    p.add_argument("video", help="video file with one visible face (and audio)")
    p.add_argument("--out", required=True, help="output npz: exp, pose, shape, cam, eye_pose, confidence, valid")
    p.add_argument("--out-wav", help="output wav, 16 kHz mono (default: --out with .wav)")
    p.add_argument("--overlay", help="optional mp4 showing the fit over the video")
    p.add_argument("--landmark-embedding", default="",
                   help="FLAME's mediapipe_landmark_embedding.npz (needed with an official FLAME model)")
    p.add_argument("--landmark-response", default="",
                   help="the video shows an rsatalker avatar, not a person: 'avatar' (the default "
                        "avatar's calibrated MediaPipe response) or a response npz (docs/ros.md \"Face tracker\")")
    p.add_argument("--select", choices=("largest", "centre"), default="largest",
                   help="which face when several are seen")
    p.add_argument("--hfov", type=float, default=60.0, help="camera horizontal field of view, degrees")
    p.add_argument("--no-smoothing", action="store_true", help="raw per-frame fits (no One-Euro filter)")
    p.add_argument("--config", help="YAML config (its flame section picks the head model)")
    p.set_defaults(func=cmd_track)


def cmd_track(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf
    from tqdm import tqdm

    from rsatalker_core.config import FPS, load_config
    from rsatalker_core.errors import RsatalkerError
    from rsatalker_core.head.flame import FlameModel
    from rsatalker_core.io.motion_npz import save_motion_npz, dualtalk_to_motion
    from rsatalker_core.io.video import VideoWriter, has_audio_stream, read_audio_track
    from rsatalker_core.tracking.offline import head_model_name, track_video
    from rsatalker_core.tracking.tracker import FaceTracker

    if not os.path.isfile(args.video):
        raise RsatalkerError(f"{args.video}: no such video file")
    if not 1.0 <= args.hfov <= 170.0:
        raise RsatalkerError(f"--hfov must be in 1..170 degrees, got {args.hfov}")
    from rsatalker_core.io.outputs import AtomicOutputs, check_writable

    wav_path = args.out_wav or os.path.splitext(args.out)[0] + ".wav"
    check_writable(args.out, "file", "--out")
    check_writable(wav_path, "file", "--out-wav")
    if args.overlay:
        check_writable(args.overlay, "file", "--overlay")
    outputs = AtomicOutputs()  # npz, wav and overlay appear together at the end, or none
    cfg = load_config(args.config)
    flame = FlameModel(cfg.flame)
    tracker = FaceTracker(flame, args.landmark_embedding or None, args.landmark_response or None, selection=args.select,
                          smoothing=not args.no_smoothing, hfov_deg=args.hfov)
    sr = 16000
    audio = read_audio_track(args.video, sr) if has_audio_stream(args.video) else None
    writer = None
    if args.overlay:
        writer = VideoWriter(outputs.temp(args.overlay), FPS, audio=audio, sample_rate=sr if audio is not None else None)
        writer.__enter__()

    def overlay(rgb, tf):
        import cv2

        img = rgb.copy()
        if tf.landmarks is not None:
            for x, y in tf.landmarks.points[:, :2]:
                cv2.circle(img, (int(x), int(y)), 1, (255, 60, 60), -1)
        if tf.fit is not None:
            K = tracker.intrinsics(rgb.shape[1], rgb.shape[0])
            for x, y in tracker.fitter.project(tf.fit, K):
                cv2.circle(img, (int(x), int(y)), 1, (40, 220, 40), -1)
        text = f"conf {tf.confidence:.2f}" if tf.has_face else "no face"
        cv2.putText(img, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
        writer.write(img)

    bar = tqdm(desc="track", unit="frame")
    try:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        out = track_video(args.video, tracker, FPS, progress, overlay if writer else None)
    except BaseException:
        if writer is not None:
            writer.abort()
        outputs.abort()
        raise
    finally:
        bar.close()
        tracker.close()
    T = len(out["exp"])
    motion = dualtalk_to_motion(out["exp"], out["pose"])
    extra = {k: v for k, v in out.items() if k not in ("exp", "pose")}
    extra["head_model"] = np.array(head_model_name(flame))
    with outputs:
        if writer is not None:
            writer.close()
        save_motion_npz(outputs.temp(args.out), motion, extra)
        if audio is not None:
            sf.write(outputs.temp(wav_path), audio, sr, subtype="PCM_16")
    msg = f"wrote {args.out}: {T} frames ({T / FPS:.2f} s at {FPS} fps), face in {out['valid'].mean():.0%} of frames"
    if audio is not None:
        msg += f"; {wav_path} ({len(audio) / sr:.2f} s, {sr} Hz)"
    else:
        msg += "; the video has no audio stream (no wav)"
    if args.overlay:
        msg += f"; overlay {args.overlay}"
    print(msg)
    return 0
