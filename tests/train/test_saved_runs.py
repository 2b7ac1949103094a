"""Runs outlive releases: run folders an earlier release saved evaluate and resume to that release's numbers.

``tests/fixtures/runs`` (see its ``make_fixtures.py``) holds two run folders of an earlier release — a
QM9 U0 EMPCN run with an atom reference (scalar task) and an N-body run of ``--model egnn`` (positions,
saved then as ``egnn_dynamics`` with placeholder normalisation fields) — trained on the tests' caches,
and what that release computed from them: ``empcn evaluate``'s test metric and the records of resuming
each run for one more epoch. Today's code, through the CLI, must compute the same numbers (QM9's cache
is lifted again here: same parameters, same bytes, so the resumed run accepts it by fingerprint; the
N-body run's cache, lifted by that release, is kept beside the runs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import invoke

from empcn.train.checkpoint import LAST, RunMeta, load_checkpoint
from empcn.train.metrics import read_records, read_result

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
#: float32 kernels may round differently on another CPU; a changed function differs by far more.
RTOL = 1e-6


@pytest.fixture(scope="module")
def caches(qm9_cache: Path) -> dict[str, Path]:
    """QM9: the tests' cache (its bytes have not changed since that release). N-body: the cache the run
    was trained on, as that release lifted it (``caches/nbody.h5``): the charged simulator's arithmetic
    has changed since (``SIMULATOR_VERSION`` 2, the same bytes on every CPU), so a lift today has another
    fingerprint, and a run resumes only on the cache it was trained on. Older caches stay readable."""
    return {"qm9": qm9_cache, "nbody": FIXTURES / "caches" / "nbody.h5"}


def saved_run(name: str, tmp_path: Path) -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    return run


def close(a: float, b: float) -> bool:
    return abs(a - b) <= RTOL * max(abs(a), abs(b))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_saved_run_evaluates_to_its_release_s_number(name: str, caches, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    run = saved_run(name, tmp_path)
    r = invoke("evaluate", run, "--cache", caches[expected["cache"]], "--json", "--no-plot")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["metric"] == expected["metric"]
    assert close(result[expected["metric"].lower()], expected["evaluate_test"]), (result, expected["evaluate_test"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_saved_run_resumes_to_its_release_s_numbers(name: str, caches, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    run = saved_run(name, tmp_path)
    r = invoke(
        "train",
        "--resume",
        run,
        "--cache",
        caches[expected["cache"]],
        "--epochs",
        expected["resumed_epochs"],
        "--no-progress",
    )
    assert r.exit_code == 0, r.stderr
    records = read_records(run)
    assert [rec.epoch for rec in records] == [e["epoch"] for e in expected["resumed_records"]]
    for rec, want in zip(records, expected["resumed_records"]):
        assert rec.steps == want["steps"] and close(rec.lr, want["lr"]) if want["lr"] else rec.lr == 0.0
        assert close(rec.train_loss, want["train_loss"]) and close(rec.valid_error, want["valid"]), (rec, want)
    assert close(read_result(run).test_error, expected["resumed_test"])
    # the resumed run saves today's form of its metadata: the task's own record, no placeholders
    meta = load_checkpoint(run / LAST)["meta"]
    assert {"task", "task_record"} <= set(meta) and "target_index" not in meta and "mad" not in meta


def test_saved_metadata_reads_as_the_task_s_own_record() -> None:
    positions = RunMeta.from_dict(load_checkpoint(FIXTURES / "nbody-egnn" / LAST)["meta"])
    assert (positions.model, positions.task) == ("egnn", "positions")  # saved as "egnn_dynamics"
    assert set(positions.task_record) == {"target", "unit"}  # target_index -1, mean 0, MAD 1 were placeholders
    scalar = RunMeta.from_dict(load_checkpoint(FIXTURES / "qm9-U0-empcn" / LAST)["meta"])
    assert (scalar.model, scalar.task) == ("empcn", "scalar")
    assert scalar.task_record["target"] == "U0" and len(scalar.task_record["reference"]) == 5
    assert {"mean", "mad", "target_index", "reference_species"} <= set(scalar.task_record)
