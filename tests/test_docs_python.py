"""docs/python.md runs as written: every ```python block, in order, in one namespace, in a temp folder."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

PAGE = Path(__file__).parent.parent / "docs" / "python.md"
CACHES = Path(__file__).parent / "fixtures" / "runs" / "caches"


def test_python_page_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 4
    shutil.copytree(CACHES, tmp_path / "data")  # the page's data/nbody.h5, as empcn lift --dataset nbody wrote it
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {}
        for block in blocks:
            exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102  (the page is ours, run as a user would)
    finally:
        os.chdir(here)
    assert namespace["epochs"] == [1, 2]
    assert (tmp_path / "runs" / "nbody-egnn" / "metrics.jsonl").is_file()
