"""Fixtures for the QM9 source tests: the raw-format fixture files, real qm9pack rows, archive builders."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "qm9"
CSV_HEAD_ROWS = 300


def qm9pack_data() -> Path:
    spec = importlib.util.find_spec("qm9pack")
    assert spec is not None and spec.submodule_search_locations, "qm9pack must be installed for these tests"
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@pytest.fixture(scope="session")
def qm9pack_dir() -> Path:
    """qm9pack's data folder (qm9_part1.csv ... qm9_part3.csv)."""
    return qm9pack_data()


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """tests/fixtures/qm9: official-format .xyz files written from qm9pack rows."""
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def fixture_texts() -> dict[int, str]:
    """id -> text of each fixture .xyz file."""
    return {int(p.stem.split("_")[1]): p.read_text() for p in sorted(FIXTURE_DIR.glob("*.xyz"))}


@pytest.fixture(scope="session")
def csv_rows() -> pd.DataFrame:
    """The first rows of qm9pack's qm9_part1.csv, every column as text (the independent reference)."""
    return pd.read_csv(qm9pack_data() / "qm9_part1.csv", nrows=CSV_HEAD_ROWS, dtype=str, na_filter=False)


@pytest.fixture(scope="session")
def csv_head():
    """read_qm9 of the built-in source, first CSV_HEAD_ROWS molecules."""
    from empcn.data.qm9 import read_qm9

    return read_qm9(None, limit=CSV_HEAD_ROWS)


def write_tar(path: Path, members: Iterable[tuple[str, bytes]], compresslevel: int = 9) -> Path:
    """Write ``members`` (name, bytes) in order to a .tar or .tar.bz2 archive at ``path``."""
    mode = "w" if path.name.endswith(".tar") else "w:bz2"
    kwargs = {} if mode == "w" else {"compresslevel": compresslevel}
    with tarfile.open(path, mode, **kwargs) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def make_tar() -> Callable[..., Path]:
    return write_tar


@pytest.fixture
def filler() -> Callable[[int], bytes]:
    """Deterministic random bytes: a filler member that spans several bz2 blocks at level 1."""
    return lambda n_bytes: np.random.default_rng(0).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
