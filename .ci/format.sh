#!/usr/bin/env bash
# Run once on main after merging: formats the whole tree and applies ruff's safe fixes
# (sorted imports, unquoted annotations, ...), so that `ruff format --check` and `ruff check` pass.
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF="${RUFF:-.venv/bin/ruff}"
"$RUFF" check --fix empcn tests
"$RUFF" format empcn tests
"$RUFF" check empcn tests
"$RUFF" format --check empcn tests
