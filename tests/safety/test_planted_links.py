"""A received run or cache folder may hold names planted to make empcn write elsewhere: it never does."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch
from helpers import error_line, invoke
from safety_helpers import copy_run

from empcn import files
from empcn.lift.output import lock_path
from empcn.train.checkpoint import load_checkpoint, save_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"


def victims(folder: Path, names: list[str], run: Path) -> dict[Path, str]:
    """A file of the user's per planted name, the name in ``run`` a symbolic link to it."""
    out = {}
    for k, name in enumerate(names):
        victim = folder / f"notes-{k}.txt"
        victim.write_text(f"my notes {k}\n")
        (run / name).symlink_to(victim)
        out[victim] = victim.read_text()
    return out


def test_evaluate_never_writes_through_a_planted_temporary_name(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    planted = victims(tmp_path, [".parity_test.tmp.png"], run)
    result = invoke("evaluate", run, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert all(v.read_text() == text for v, text in planted.items())
    assert (run / ".parity_test.tmp.png").is_symlink()  # left alone, not followed, not removed
    assert (run / "parity_test.png").read_bytes().startswith(PNG)


def test_resume_never_writes_through_planted_names(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    names = [
        ".metrics.jsonl.tmp",
        ".config.json.tmp",
        ".learning_curve.tmp.png",
        ".result.json.tmp",
        ".parity_test.tmp.png",
    ]
    planted = victims(tmp_path, names, run)
    result = invoke("train", "--resume", run, "--epochs", "3", "--no-progress")
    assert result.exit_code == 0, result.output
    assert all(v.read_text() == text for v, text in planted.items())
    for name in ("metrics.jsonl", "config.json", "learning_curve.png", "result.json", "last.pt", "best.pt"):
        assert (run / name).is_file() and not (run / name).is_symlink(), name
    assert '"epoch": 3' in (run / "metrics.jsonl").read_text()


def test_a_metrics_file_that_is_a_link_is_refused_not_followed(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    victim = tmp_path / "notes.txt"
    victim.write_text('{"epoch": 1}\n')
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(victim)
    result = invoke("train", "--resume", run, "--epochs", "3", "--no-progress")
    assert result.exit_code == 2
    assert f"{run / 'metrics.jsonl'}: a symbolic link" in error_line(result)
    assert victim.read_text() == '{"epoch": 1}\n'


def test_lift_refuses_a_planted_lock_link_and_leaves_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "caches" / "qm9.h5"
    out.parent.mkdir()
    lock_path(out).symlink_to(victim)
    result = invoke("lift", "--dataset", "qm9", "--limit", "20", "--out", out, "--workers", "1", "--no-progress")
    assert result.exit_code == 2
    assert "symbolic link" in error_line(result) and str(lock_path(out)) in error_line(result)
    assert victim.read_text() == "precious\n" and lock_path(out).is_symlink()
    assert not out.exists()


def test_appends_and_locks_never_follow_links_fifos_or_hard_links(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "metrics.jsonl"
    link.symlink_to(victim)
    with pytest.raises(files.WriteError, match="symbolic link"):
        files.append_line(link, "{}\n")
    with pytest.raises(files.WriteError, match="symbolic link"):
        files.open_lock_file(link)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(files.WriteError, match="a FIFO"):  # without blocking on the FIFO
        files.append_line(fifo, "{}\n")
    with pytest.raises(files.WriteError, match="a FIFO"):
        files.open_lock_file(fifo)
    hard = tmp_path / "hard.jsonl"
    os.link(victim, hard)
    files.append_line(hard, "{}\n")  # the hard link is broken first: the other name keeps its content
    assert victim.read_text() == "precious\n" and hard.read_text() == "precious\n{}\n"
    os.link(victim, tmp_path / "hard.lock")
    with pytest.raises(files.WriteError, match="hard links"):
        files.open_lock_file(tmp_path / "hard.lock")
    assert victim.read_text() == "precious\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old\n")

    def fail(f) -> None:
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(files.WriteError, match=f"{target}: no space left on device"):
        files.write_atomic(target, fail)
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_reader_beside_a_writer_gets_one_whole_checkpoint(tmp_path: Path) -> None:
    """`evaluate` beside a training: checkpoints are renamed into place whole, a reader gets old or new."""
    path = tmp_path / "best.pt"
    states = [{"model": {"w": torch.full((20_000,), float(k))}, "meta": {"k": k}} for k in range(2)]
    save_checkpoint(path, states[0])
    stop = threading.Event()

    def writer() -> None:
        k = 0
        while not stop.is_set():
            k ^= 1
            save_checkpoint(path, states[k])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(60):
            state = load_checkpoint(path)
            assert torch.all(state["model"]["w"] == float(state["meta"]["k"]))
    finally:
        stop.set()
        thread.join()
