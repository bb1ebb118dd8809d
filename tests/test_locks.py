"""Issue 19: one trainer per run folder, one `reidlab ablate` per batch folder; an OS lock that a
killed process does not leave behind, and a one-line refusal naming the folder and the holder."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from reidlab.engine.checkpoint import LOG_NAME, FolderBusyError, FolderLock
from reidlab.engine.trainer import Trainer, read_log

from test_trainer import TinyReID, tiny_cfg

HOLD = "import sys, time; from reidlab.engine.checkpoint import FolderLock; lock = FolderLock(sys.argv[1]).acquire(); " \
       "print('held', flush=True); time.sleep(600)"


@pytest.fixture
def holder(tmp_path):
    """Another process that holds the lock of tmp_path/run (as a trainer in mid-run would)."""
    folder = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    yield folder, child
    child.kill()
    child.wait()


def test_a_second_trainer_on_a_busy_run_folder_is_refused_and_touches_nothing(holder, synthetic_split):
    folder, child = holder
    stale = folder / f".{LOG_NAME}.tmp{child.pid}"  # a write in flight by the holder
    stale.write_text("partial")
    with pytest.raises(FolderBusyError, match=rf"run folder {folder} is in use.*pid {child.pid}"):
        Trainer(tiny_cfg(folder, epochs=1, resume=True), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids))
    assert stale.read_text() == "partial"  # the holder's temporary is not cleaned up under it


def test_the_cli_refuses_a_busy_folder_in_one_line(holder, capsys, synthetic_root):
    from reidlab.cli import main

    folder, child = holder
    code = main(["train", "--dataset", "synthetic", "--data-root", str(synthetic_root), "--output-dir", str(folder),
                 "--model", "bnneck", "--epochs", "1", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and f"pid {child.pid}" in err and str(folder) in err


def test_a_killed_holder_leaves_the_folder_free(holder, synthetic_split):
    folder, child = holder
    child.send_signal(signal.SIGKILL)  # kill -9: no clean-up ran
    child.wait()
    result = Trainer(tiny_cfg(folder, epochs=1), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids)).fit()
    assert result.completed and len(read_log(folder)) == 1


def test_the_lock_is_held_during_fit_and_released_after(tmp_path, synthetic_split):
    folder = tmp_path / "run"
    trainer = Trainer(tiny_cfg(folder, epochs=1), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids))
    with pytest.raises(FolderBusyError):
        FolderLock(folder).acquire()  # another handle, as another process would have
    trainer.fit()
    with FolderLock(folder):  # free once fit() has ended
        pass
    # a trainer that fails to start releases the folder at once (a notebook cell can be run again)
    with pytest.raises(Exception):
        Trainer(tiny_cfg(folder, epochs=1), split=synthetic_split, model=TinyReID(synthetic_split.num_train_pids))
    with FolderLock(folder):
        pass


def test_a_busy_batch_folder_is_refused(tmp_path, capsys):
    from reidlab.cli import main

    batch = tmp_path / "batch"
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(batch)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        start = time.perf_counter()
        code = main(["ablate", "mbgn-table2", "--output-dir", str(batch), "--epochs", "1"])
        err = capsys.readouterr().err
        assert code == 2 and f"batch folder {batch} is in use" in err and f"pid {child.pid}" in err
        assert time.perf_counter() - start < 30 and not (batch / "batch.json").exists()
    finally:
        child.kill()
        child.wait()
