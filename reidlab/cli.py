"""Command line: ``reidlab synth | summary | demo | train | evaluate``.

Each subcommand is a thin wrapper over a package function, so that what the
command line does a notebook or a test can do in Python too.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_SYNTH_ROOT = Path("data") / "synthetic"


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="generate the built-in synthetic dataset (Market-1501 layout)")
    p.add_argument("--root", default=str(DEFAULT_SYNTH_ROOT), help="output folder (default: %(default)s)")
    p.add_argument("--num-ids", type=int, default=None, help="identities (default: the generator's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --root")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args) -> int:
    from reidlab.data.synthetic import make_synthetic_dataset

    kwargs = {"seed": args.seed, "overwrite": args.overwrite}
    if args.num_ids is not None:
        kwargs["num_ids"] = args.num_ids
    root = make_synthetic_dataset(args.root, **kwargs)
    print(f"synthetic dataset written to {root}")
    return 0


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="load a dataset and print its summary")
    p.add_argument("dataset", help="market1501, dukemtmc, cuhk03, cuhk01, folder or synthetic")
    p.add_argument("--root", required=True, help="the dataset's folder")
    p.set_defaults(func=_cmd_summary)


def _cmd_summary(args) -> int:
    from reidlab.data import load_dataset

    split = load_dataset(args.dataset, args.root)
    print(split)
    print(split.summary().to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidlab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synth(sub)
    _add_summary(sub)
    _add_engine_commands(sub)
    return parser


def _add_engine_commands(sub) -> None:
    """``train``, ``evaluate`` and ``demo`` live with the engine (reidlab.engine.commands)."""
    try:
        from reidlab.engine.commands import add_commands
    except ImportError:  # engine not built yet
        return
    add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
