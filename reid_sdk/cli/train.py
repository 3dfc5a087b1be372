"""``reid-train``: unsupervised IMD/CPD training (Algorithm 1) on a dataset folder, into a run directory."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from reid_sdk._utils.progress import set_default_progress
from reid_sdk.cli.common import (EXIT_FAILED, EXIT_OK, add_device_option, add_json_option, add_progress_option,
                                 configure_logging, fail, make_parser, print_json)
from reid_sdk.datasets import LOADERS
from reid_sdk.training.config import ConfigError, RunConfig, load_config
from reid_sdk.training.run_dir import RunDirectory

PROG = "reid-train"
EXIT_DIVERGED = EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-train`` argument parser."""
    parser = make_parser(PROG, __doc__)
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, plot)")
    parser.add_argument("--data", help="dataset root (data.root)")
    parser.add_argument("--format", choices=list(LOADERS), help="dataset layout (data.format)")
    parser.add_argument("--config", help="a shipped config's name (paper-market, paper-duke, paper-mars, "
                                          "paper-dukevideo, cpu-smoke) or a YAML file")
    parser.add_argument("--eval-data", help="a separate labelled query / gallery set to evaluate and choose the "
                                            "stage on (data.eval_root)")
    parser.add_argument("--eval-format", choices=list(LOADERS), help="layout of --eval-data (data.eval_format)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one value, e.g. --set train.batch_size=64 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last stage")
    parser.add_argument("--max-memory", metavar="SIZE",
                        help="resident memory a CPU training step may use, e.g. 4GiB (train.max_memory; default: what "
                             "the machine has free): steps are checkpointed or split to fit, or refused at start-up")
    ablation = parser.add_argument_group("ablations (paper Tables III and IV)")
    ablation.add_argument("--linkage", help="clustering.linkage: imd_cpd, imd, min, max, average, buc")
    ablation.add_argument("--pooling", help="model.pooling: avg, max, mixed")
    ablation.add_argument("--non-local", action=argparse.BooleanOptionalAction, default=None,
                          help="model.non_local")
    add_device_option(ablation, default=None)  # train.device
    add_progress_option(parser)
    add_json_option(parser)
    return parser


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The run's config: saved in the run directory for --resume, else file + flags + --set overrides."""
    if args.resume:
        saved = RunDirectory(args.out).config
        if not saved.is_file():
            raise ConfigError(f"--resume: {args.out} has no config.yaml, so there is no run to continue")
        if args.config or args.overrides or args.data or args.format or args.eval_data or args.eval_format:
            raise ConfigError("--resume continues with the run's saved config; drop --config/--set/--data/--format/"
                              "--eval-data/--eval-format")
        config = load_config(saved)  # the memory budget belongs to the machine, not the run: --max-memory may change
        return replace(config, train=replace(config.train, max_memory=args.max_memory)) if args.max_memory else config
    flags = {"data.root": args.data, "data.format": args.format, "data.eval_root": args.eval_data,
             "data.eval_format": args.eval_format, "clustering.linkage": args.linkage,
             "model.pooling": args.pooling, "model.non_local": args.non_local, "train.device": args.device,
             "train.max_memory": args.max_memory}
    overrides = [f"{key}={str(value).lower() if isinstance(value, bool) else value}"
                 for key, value in flags.items() if value is not None]
    return load_config(args.config, overrides + args.overrides)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``reid-train``."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, timestamps=True)
    set_default_progress(args.progress)
    from reid_sdk.training.stage_sgd import TrainingDiverged
    from reid_sdk.training.model_choice import scores_line
    from reid_sdk.training.schedules import build_trainer

    try:
        trainer = build_trainer(resolve_config(args), args.out, resume=args.resume)
        results = trainer.run()
    except TrainingDiverged as exc:
        print(f"{PROG}: stopped: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ValueError, OSError) as exc:  # bad config or data (ConfigError is a ValueError), missing files
        return fail(PROG, exc)
    best = next((result for result in results if result.best), None)
    rule, step = trainer.model_choice, trainer.STEP
    if args.json:
        print_json({"out": args.out, "step": step, "selected_by": rule.metric, "best": best and trainer.run_dir.best,
                    "best_step": best and best.stage, "rows": [result.as_dict() for result in results]})
        return EXIT_OK
    summary = (f"best.pt is {step} {best.stage}, chosen by {rule.metric} = {best.score(rule.metric):.4f}: "
               f"{rule.reason}" if best else f"no {step} ran")
    print(f"done: {len(results)} {step}s in {args.out} ({summary}); best model: {trainer.run_dir.best}")
    if best:
        print(scores_line(results, rule.metric, step))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
