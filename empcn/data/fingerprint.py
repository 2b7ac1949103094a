"""The content fingerprint of a source's files: part of a cache's identity (``lift --cache-dir`` shares by it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from empcn.data.qm9_targets import SourceError


def files_fingerprint(files: Iterable[Path]) -> str:
    """``sha256:<hex>`` over the name, size and bytes of ``files`` (in the order given)."""
    digest = hashlib.sha256()
    for file in files:
        file = Path(file)
        try:
            with open(file, "rb") as handle:
                digest.update(file.name.encode("utf-8") + b"\0")
                digest.update(file.stat().st_size.to_bytes(8, "little"))
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise SourceError(f"{file}: cannot read for the fingerprint: {' '.join(str(exc).split())}") from None
    return f"sha256:{digest.hexdigest()}"
