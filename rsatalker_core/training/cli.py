"""``rsatalker train``: run one training stage from a YAML config.

    rsatalker train --stage 1 --config config/train_stage1.yaml \\
        --set data.root=/data/dualtalk --set train.out_dir=runs/stage1 [--resume] [--device cuda]

Under ``torchrun --nproc_per_node=K`` (several GPUs or CPU processes, and several machines
through torchrun's rendezvous arguments) the same command trains data-parallel
(:mod:`rsatalker_core.training.distributed`, docs/training.md); rank 0 prints and writes.

``--resume`` continues ``<train.out_dir>/checkpoints/last.pt`` (or ``--resume PATH``)
exactly where it stopped. Ctrl-C or SIGTERM finishes the current step, saves that
checkpoint and exits with status ``128 + signal`` (130 / 143). A completed stage-1 run
prints the path of its MotionModel weights (``motion.checkpoint``), a completed stage-2 run
that of its trained avatar (``avatar.checkpoint``; config/train_stage2.yaml), a completed
stage-3 (joint) run that of its MotionModel weights, with ``avatar_stage3.pt`` beside them
(config/train_stage3.yaml).
"""

from __future__ import annotations

import argparse

from rsatalker_core.training import distributed


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand on ``subparsers`` (the ``rsatalker`` CLI)."""
    p = subparsers.add_parser(
        "train", help="train one stage (1 = motion generator; 2 = renderer; 3 = joint)",
        description="Run one training stage from a YAML config (see config/train_stage1.yaml).",
    )
    p.add_argument("--stage", type=int, choices=(1, 2, 3), required=True,
                   help="1 = motion generator (L_mesh); 2 = renderer; 3 = joint (L_mesh + 0.5 L_image + ...)")
    p.add_argument("--config", help="YAML config (e.g. config/train_stage1.yaml; default: embedded)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue <train.out_dir>/checkpoints/last.pt, or the given checkpoint")
    p.add_argument("--device", help="cpu | cuda | cuda:N | auto (default: the config's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                   help="override a config value (dotted key, YAML value); repeatable")
    p.set_defaults(func=cmd_train)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``rsatalker train``; returns the exit status (0, or 128 + signal when stopped).

    Raises:
        RsatalkerError: bad config, data or checkpoint (the CLI prints it as one line).
    """
    from rsatalker_core.config import load_config, parse_overrides, to_dict
    from rsatalker_core.training import build_stage
    from rsatalker_core.training.trainer import Trainer

    overrides = parse_overrides(args.overrides)
    if args.device:
        overrides["device"] = args.device
    cfg = load_config(args.config, overrides)
    # torchrun (WORLD_SIZE > 1): join the process group; CUDA -> one GPU per rank (cuda:LOCAL_RANK).
    cfg.device = distributed.init_distributed(cfg.device)
    from rsatalker_core.device import resolve_device
    from rsatalker_core.io.outputs import check_writable

    if cfg.train.out_dir:  # an empty out_dir is reported by the trainer's own check
        check_writable(cfg.train.out_dir, "dir", "train.out_dir")  # before the data and model load
    resolve_device(cfg.device)
    stage = build_stage(args.stage, cfg)
    trainer = Trainer(stage, cfg.train, seed=cfg.seed, run_config=to_dict(cfg))
    n_val = len(stage.val_data) if getattr(stage, "val_data", None) is not None else 0
    say = print if distributed.is_main() else (lambda *a, **k: None)  # rank 0 reports
    say(
        f"stage {args.stage} ({stage.name}): {len(stage.train_dataset())} training windows, "
        f"{n_val} validation samples, device {getattr(stage, 'device', cfg.device)}, out_dir {cfg.train.out_dir}",
        flush=True,
    )
    result = trainer.fit(resume=args.resume)
    distributed.shutdown()
    loss = "n/a" if result.loss is None else f"{result.loss:.6g}"
    if result.interrupted:
        say(
            f"stopped at step {result.step}/{cfg.train.max_steps} (loss {loss}); checkpoint "
            f"{result.checkpoint}; continue with --resume", flush=True,
        )
        return 128 + result.signal if result.signal else 1
    val = ", ".join(f"{k} {v:.4g}" for k, v in result.val.items() if k.startswith("MSE") or k == "loss")
    say(
        f"done: step {result.step}, loss {loss}, {result.steps_per_s:.1f} steps/s"
        + (f"; validation: {val}" if val else "")
        + (f"\nweights: {result.final_weights} (set {'avatar' if args.stage == 2 else 'motion'}.checkpoint to use them)"
           if result.final_weights else ""),
        flush=True,
    )
    return 0
