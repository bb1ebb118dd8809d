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
    p.add_argument("--root", "--data-root", dest="root", default=str(DEFAULT_SYNTH_ROOT),
                   help="output folder: empty, missing, or an earlier synthetic dataset (default: %(default)s)")
    p.add_argument("--num-ids", type=int, default=None, help="identities (default: the generator's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="re-create the dataset at --root even when its parameters match (never deletes files the generator did not write)")
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
    p.add_argument("--root", "--data-root", dest="root", required=True, help="the dataset's folder")
    p.set_defaults(func=_cmd_summary)


def _cmd_summary(args) -> int:
    from reidlab.data import load_dataset

    split = load_dataset(args.dataset, args.root, generate=False)  # a summary never writes data
    print(split)
    print(split.summary().to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidlab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synth(sub)
    _add_summary(sub)
    _add_engine_commands(sub)
    for command in sub.choices.values():  # `reidlab train ... --debug` as well as `reidlab --debug train ...`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error")
    return parser


def _add_engine_commands(sub) -> None:
    """``train``, ``evaluate`` and ``demo`` live with the engine (reidlab.engine.commands)."""
    try:
        from reidlab.engine.commands import add_commands
    except ImportError:  # engine not built yet
        return
    add_commands(sub)
    from reidlab.engine.pretrain import add_pretrain_command

    add_pretrain_command(sub)
    try:
        from reidlab.ablation import add_ablate_command
    except ImportError:  # the ablation workbench needs the notebooks extra (papermill, dask)
        return
    add_ablate_command(sub)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a state the user can fix: one or two lines, exit code 2."""
    from reidlab.engine.checkpoint import CheckpointError, DiskFullError, FolderBusyError, RunFolderError

    errors: list[type[BaseException]] = [ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
                                         PermissionError, IsADirectoryError, CheckpointError, RunFolderError,
                                         DiskFullError, UnicodeDecodeError, FolderBusyError, OSError]
    try:
        from reidlab.engine.trainer import DivergenceError, NonFiniteLossError

        errors += [NonFiniteLossError, DivergenceError]
    except ImportError:
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("reidlab: interrupted", file=sys.stderr)
        return 130
    except user_errors() as error:
        if args.debug:
            raise
        print(f"reidlab {args.command}: error: {one_line(error)}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the one-line rule holds by construction: a bug too gets one line
        if args.debug:
            raise
        print(f"reidlab {args.command}: internal error: {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        print("(a bug in reidlab: run with --debug for the traceback, and report it)", file=sys.stderr)
        return 1


def one_line(error: BaseException) -> str:
    """An error's message on one line. An error raised in a data-loader worker carries the worker's
    traceback in its message: its last line is the original error."""
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Original Traceback" in text or "Traceback (most recent call last)" in text:
        return lines[-1]
    return " ".join(lines)


if __name__ == "__main__":
    sys.exit(main())
