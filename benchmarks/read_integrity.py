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
    parser.add_argument("--fletcher32", metavar="SCRATCH", help="also compare HDF5 Fletcher-32 shards (written to SCRATCH)")
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
    if args.fletcher32:
        fletcher32_ratio(args.cache, args.fletcher32, args.repeats)



def fletcher32_ratio(path: str, scratch: str, repeats: int) -> None:
    """The alternative: every shard rewritten with HDF5's Fletcher-32 filter (same gzip chunks), read
    without the hash, against the real shards read with it. Prints both throughputs and the ratio."""
    import shutil
    from pathlib import Path

    import h5py

    c = cache_format.open_cache(path)
    shards = [c.shard_path(k) for k in range(len(c.manifest["shards"]))]
    out = Path(scratch)
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for src in shards:
        dst = out / Path(src).name
        with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
            for key, value in a.attrs.items():
                b.attrs[key] = value

            def copy(name, obj, b=b):
                if isinstance(obj, h5py.Dataset):
                    b.create_dataset(name, data=obj[()], chunks=obj.chunks, compression=obj.compression,
                                     compression_opts=obj.compression_opts, fletcher32=True)
                    for key, value in obj.attrs.items():
                        b[name].attrs[key] = value

            a.visititems(copy)
        copies.append(dst)
    digests = [m["sha256"] for m in c.manifest["shards"]]
    best = {"sha256 on read": float("inf"), "fletcher32": float("inf")}
    for _ in range(repeats):
        t = time.perf_counter()
        for p, d in zip(shards, digests):
            cache_format.read_shard(p, sha256=d)
        best["sha256 on read"] = min(best["sha256 on read"], time.perf_counter() - t)
        t = time.perf_counter()
        for p in copies:
            cache_format.read_shard(p)
        best["fletcher32"] = min(best["fletcher32"], time.perf_counter() - t)
    shutil.rmtree(out)
    for k, s in best.items():
        print(f"{k:15s}  {s:.2f} s to load all {len(shards)} shards")
    print(f"fletcher32 / sha256 load time: {best['fletcher32'] / best['sha256 on read']:.3f}")


if __name__ == "__main__":
    main()
