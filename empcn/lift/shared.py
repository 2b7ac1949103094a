"""Caches shared by a team in one folder (``empcn lift --cache-dir DIR``), named by their fingerprint.

A lift's identity is :func:`empcn.cache.lift_fingerprint` (data set, source content, every lift
parameter, format version), known before anything is read. In ``DIR`` the cache is
``<dataset>-<fingerprint[:16]>.h5`` (+ its ``.shards/`` folder). A lift into ``DIR``

1. reuses that cache when it is there, verifies (every shard's sha256 and structure) and has the
   same full fingerprint: nothing is lifted;
2. otherwise takes the entry's writer lock (:func:`empcn.lift.output.claim_output`), checks again
   (another lift may have finished meanwhile) and lifts; everything is written under temporary
   names and renamed, the entry file last;
3. when another process holds the lock, waits for it to finish and goes back to 1: two people
   lifting the same thing at once get one cache, lifted once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from empcn import cache as cache_format
from empcn.lift.output import OutputBusy, claim_output, wait_for_writer


def entry_in(cache_dir: Path, dataset: str, fingerprint: str) -> Path:
    """``DIR/<dataset>-<first 16 hex of the fingerprint>.h5``."""
    return Path(cache_dir) / f"{dataset}-{fingerprint[:16]}.h5"


def reusable(entry: Path, fingerprint: str) -> bool:
    """Whether ``entry`` is a complete cache that verifies and has ``fingerprint``."""
    if not Path(entry).is_file():
        return False
    try:
        manifest = cache_format.open_cache(entry).manifest
    except cache_format.CacheError:
        return False
    return cache_format.cache_fingerprint(manifest) == fingerprint and cache_format.verify_cache(entry).ok


def lift_shared(
    cache_dir: Path,
    dataset: str,
    params: dict[str, Any],
    source_fingerprint: str,
    lift_unclaimed: Callable[[Path], Path],
    say: Callable[[str], None] = print,
) -> tuple[Path, bool]:
    """(entry file in ``cache_dir`` of this lift, whether it was reused): reused when verified, else
    lifted by ``lift_unclaimed(entry)``.

    ``lift_unclaimed`` writes the cache at the path it is given; the caller here holds its lock.
    """
    fingerprint = cache_format.lift_fingerprint(dataset, source_fingerprint, params)
    entry = entry_in(cache_dir, dataset, fingerprint)
    waited = False
    while True:
        if reusable(entry, fingerprint):
            say(f"reusing {entry}: a verified cache with fingerprint {fingerprint[:16]}… (nothing lifted)")
            return entry, True
        try:
            with claim_output(entry):
                if reusable(entry, fingerprint):  # finished while we looked
                    say(f"reusing {entry}: a verified cache with fingerprint {fingerprint[:16]}… (nothing lifted)")
                    return entry, True
                return lift_unclaimed(entry), False
        except OutputBusy:
            if not waited:
                say(f"waiting for another lift writing {entry} (same fingerprint)")
                waited = True
            wait_for_writer(entry)
