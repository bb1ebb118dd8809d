"""Issue 19: the one-line rule at the command boundary, over every command, as a table of bad inputs.

Each row is a command a user can mistype; each must end with exit code 2 and at most two lines on
stderr (the error naming the file, option or name, and the --debug hint), never a traceback. A bug
(an unexpected exception) is one line too, with exit code 1.
"""
from __future__ import annotations

import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from reidlab.cli import main


def run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's own usage errors: "usage: ..." and one error line, exit 2
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(code, err, *needles, exit_code=2):
    """Exit code, no traceback, and one error line (plus the --debug hint or argparse's usage line);
    progress bars and log lines of work done before the error are not errors."""
    assert code == exit_code, err
    assert "Traceback" not in err
    text = err.replace("\r", "\n")
    errors = [line for line in text.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    others = [line for line in text.splitlines() if line.strip() and line not in errors and "%|" not in line
              and not line.startswith(("WARNING", "INFO", "usage:", "(run with --debug", "(a bug in reidlab", " "))]
    assert not others, err
    for needle in needles:
        assert needle in errors[0], err


def corrupt_png(path: Path) -> None:
    """A PNG whose header (and size) is fine but whose pixel data does not decode: passes the
    header check before training, fails when the batch is read."""
    Image.new("RGB", (64, 128), (120, 30, 200)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    data[start:start + length] = bytes(b ^ 0x5A for b in data[start:start + length])  # zlib stream broken
    crc = zlib.crc32(bytes(data[start - 4:start + length])) & 0xFFFFFFFF
    data[start + length:start + length + 4] = crc.to_bytes(4, "big")  # a valid chunk checksum
    path.write_bytes(bytes(data))


@pytest.fixture
def data(synthetic_root):
    return ["--dataset", "synthetic", "--data-root", synthetic_root]


BAD = {
    "unknown preset": (["train", "--preset", "mbgn/table9/Nope"], ["unknown preset 'mbgn/table9/Nope'"]),
    "unknown model": (["train", "--model", "resnet_nope"], ["unknown model 'resnet_nope'", "bnneck"]),
    "misspelled model_cfg key": (["train", "--preset", "mbgn/table2/Baseline", "--model-cfg", '{"dpeth": 18}'],
                                 ["no option 'dpeth'", "depth"]),
    "read-only output folder": (["train", "--model", "bnneck", "--output-dir", "/proc/reidlab-run"], ["/proc/reidlab-run"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_train_bad_input_is_one_line(case, data, capsys, tmp_path):
    argv, needles = BAD[case]
    if "--output-dir" not in argv:
        argv = [*argv, "--output-dir", tmp_path / "run"]
    code, _, err = run([*argv, *data, "--epochs", "1"], capsys)
    assert_one_line(code, err, *needles)


def test_a_text_file_as_a_checkpoint_is_named(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n" * 20)
    code, _, err = run(["evaluate", "--checkpoint", text], capsys)
    assert_one_line(code, err, str(text), "not a checkpoint")


def test_an_image_that_fails_to_decode_during_training_is_named(tmp_path, synthetic_root, capsys):
    import shutil

    root = tmp_path / "synthetic"
    shutil.copytree(synthetic_root, root)
    victim = sorted((root / "bounding_box_train").glob("*.jpg"))[0]
    png = victim.with_suffix(".png")
    corrupt_png(png)
    victim.unlink()
    png.rename(victim)  # a PNG behind a .jpg name: PIL reads by content
    code, _, err = run(["train", "--model", "bnneck", "--model-cfg", '{"depth": 18, "pretrained": false}',
                        "--dataset", "synthetic", "--data-root", root, "--epochs", "1", "--max-steps-per-epoch", "50",
                        "--batch-p", "4", "--batch-k", "2", "--num-workers", "0", "--output-dir", tmp_path / "run"], capsys)
    assert_one_line(code, err, victim.name)


def test_an_unreachable_scheduler_is_one_line_in_seconds_and_writes_nothing(tmp_path, capsys):
    start = time.perf_counter()
    code, _, err = run(["ablate", "mbgn-table2", "--scheduler", "tcp://127.0.0.1:1", "--output-dir", tmp_path / "b"],
                       capsys)
    assert_one_line(code, err, "cannot reach a Dask scheduler at tcp://127.0.0.1:1")
    assert time.perf_counter() - start < 15 and not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv,needle", [
    (["summary", "market1501", "--root", "/nonexistent/market"], "/nonexistent/market"),
    (["ablate", "no-such-set"], "no-such-set"),
    (["pretrain", "--epochs", "0", "--output", "/nonexistent-dir/x.pth"], "epochs"),
])
def test_other_commands_bad_input_is_one_line(argv, needle, capsys):
    code, _, err = run(argv, capsys)
    assert_one_line(code, err, needle)


def test_a_bug_is_one_line_too(monkeypatch, capsys, tmp_path):
    import reidlab.cli as cli

    def broken(args):
        raise RuntimeError("something internal\nwith a second line")

    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if getattr(a, "choices", None) and "train" in a.choices)
    subparsers.choices["train"].set_defaults(func=broken)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    code, _, err = run(["train", "--output-dir", tmp_path / "run"], capsys)
    assert_one_line(code, err, "internal error: RuntimeError: something internal with a second line", exit_code=1)


@pytest.mark.parametrize("command", ["train", "pretrain", "ablate", "evaluate"])
def test_every_option_is_described_with_one_default(command):
    """Issue 19: `--help` says more than an option's name, lists choices where there are some,
    and shows one default (never "(default: ...) (default: None)")."""
    from reidlab.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if getattr(a, "choices", None) and command in a.choices)
    sub = subparsers.choices[command]
    for action in sub._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        text = action.help or ""
        name_words = set(action.dest.replace("_", " ").split())
        assert len(set(text.lower().replace("(", " ").split()) - name_words - {"default:"}) >= 2, (command, action.dest, text)
        assert text.count("(default:") <= 1 and "default: None" not in text, (command, action.dest, text)
    amp = next((a for a in sub._actions if a.dest == "amp"), None)
    if amp is not None:
        assert set(amp.choices) >= {"auto", "bf16", "off"}
