"""Benchmark the QM9 lift and cache reading.

    python benchmarks/lift_qm9.py [--workers 2] [--limit N] [--out /tmp/bench-qm9.h5] [--append BENCHMARKS.md]

Measures: wall time of the whole lift (reading the source included, as a user runs it), cache size on
disk, and how many molecules per second ``open_cache`` iterates on one core (a cold pass: shards are
read and decompressed during the pass). Prints markdown rows; ``--append`` adds them to a file.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

from machine import describe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/empcn-bench/qm9.h5"))
    ap.add_argument("--append", type=Path, default=None)
    args = ap.parse_args()

    cmd = [sys.executable, "-m", "empcn", "lift", "--dataset", "qm9", "--out", str(args.out),
           "--workers", str(args.workers), "--no-progress"]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    lift_s = time.perf_counter() - t0

    # reading on one core, in a fresh process so nothing is warm in memory but the OS page cache
    read_code = (
        "import time, torch; torch.set_num_threads(1)\n"
        "from empcn import open_cache\n"
        f"c = open_cache({str(args.out)!r}); t = time.perf_counter(); n = 0\n"
        "for s in c: n += 1\n"
        "dt = time.perf_counter() - t; print(n, dt)\n"
    )
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", read_code], check=True, capture_output=True, text=True
    ).stdout.split()
    n, read_s = int(out[0]), float(out[1])

    from empcn.cache import cache_size_bytes

    size = cache_size_bytes(args.out)
    date = datetime.date.today().isoformat()
    command = " ".join(["python benchmarks/lift_qm9.py", f"--workers {args.workers}"]
                       + ([f"--limit {args.limit}"] if args.limit else []))
    rows = [
        f"| QM9 lift, {n} molecules, --workers {args.workers} | {lift_s:.1f} s wall | `{command}` | {describe()} | {date} |",
        f"| QM9 cache size on disk | {size / 2**20:.1f} MiB | `{command}` | {describe()} | {date} |",
        f"| open_cache iteration, 1 core | {n / read_s:,.0f} molecules/s | `{command}` | {describe()} | {date} |",
    ]
    text = "\n".join(rows)
    print(text)
    if args.append:
        with open(args.append, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
