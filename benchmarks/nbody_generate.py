"""Time generating the standard charged N-body set (3000 + 2000 + 2000 simulations × 5000 steps).

The standard set is the lift's default: EGNN's systems (its random stream replayed by
``egnn_initial_states``, drawing all 14,000 initial states of the reference run) integrated here.

Runs on one core: BLAS threads are limited to 1 before numpy is imported and, where the OS allows
it, the process is pinned to a single CPU. Prints one markdown table row:

    | command | machine | date | seconds |

Usage: ``python benchmarks/nbody_generate.py [--budget 60]``; exits with status 1 when the total
exceeds the budget (seconds).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from machine import describe  # noqa: E402


def _pin_to_one_cpu() -> None:
    """Restrict this process to one CPU of those it may use (no-op where unsupported)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})


def _machine() -> str:
    return f"{describe(cores_used=1)}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="fail if slower than this (s)")
    args = parser.parse_args()
    _pin_to_one_cpu()

    from empcn.data.nbody import STANDARD_CHARGED_SPLITS, ChargedConfig, egnn_initial_states, generate_split

    config = ChargedConfig()
    start = time.perf_counter()
    states = egnn_initial_states(config)
    sizes = []
    for split in STANDARD_CHARGED_SPLITS:
        arrays = generate_split(split, config, initial=states[split.name].head(split.num_sims))
        sizes.append(f"{split.name}={arrays.pos_in.shape[0]}")
    seconds = time.perf_counter() - start

    what = ", ".join(sizes) + f", {config.num_steps} steps"
    command = f"python benchmarks/nbody_generate.py  # charged {what}"
    date = datetime.date.today().isoformat()
    print("| command | machine | date | seconds |")
    print("|---|---|---|---|")
    print(f"| `{command}` | {_machine()} | {date} | {seconds:.1f} |")
    if seconds > args.budget:
        print(f"nbody_generate: {seconds:.1f} s exceeds the {args.budget:.0f} s budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
