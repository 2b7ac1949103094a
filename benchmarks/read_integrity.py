"""What the integrity check on read costs: ``open_cache`` iteration with the shard hash check on and off.

Every read path hashes a shard (sha256 of its bytes against the manifest) the first time it loads it
(``docs/cache-format.md``). This measures the iteration throughput of a lifted cache, one core, cold
shard loads, alternating the two modes in the same run (off = the hash check patched out), and prints
the ratio. Usage: ``python benchmarks/read_integrity.py data/qm9.h5 [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from empcn import cache as cache_format


def iterate(path: str) -> tuple[int, float]:
    """(samples, seconds) of one full pass over ``open_cache(path)``."""
    c = cache_format.open_cache(path)
    t = time.perf_counter()
    n = sum(1 for _ in c)
    return n, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    real = cache_format.read_shard
    unchecked = lambda path, sha256=None, **kw: real(path, sha256=None, **kw)  # noqa: E731
    times = {"checked": [], "unchecked": []}
    n = 0
    for _ in range(args.repeats):
        for mode in ("checked", "unchecked"):
            cache_format.read_shard = real if mode == "checked" else unchecked
            n, s = iterate(args.cache)
            times[mode].append(s)
    cache_format.read_shard = real
    best = {k: min(v) for k, v in times.items()}
    for k in ("unchecked", "checked"):
        print(f"{k:9s}  {n / best[k]:,.0f} samples/s  (best of {args.repeats}: {best[k]:.2f} s for {n} samples)")
    print(f"checked / unchecked throughput: {best['unchecked'] / best['checked']:.3f}")


if __name__ == "__main__":
    main()
