"""Build ``empcn/data/cmu_mocap_35.tar.xz``, the built-in MoCap source, from a CMU subject-35 folder.

    python tools/pack_cmu_mocap.py /work/shared/data/cmu-mocap-35

The folder needs ``35.asf``, ``35_01.amc`` and ``amc30/`` (``35.asf`` and the 33 ``.amc`` trials);
the archive's ``README.md`` is ``empcn/data/cmu_mocap_35.README.md`` (attribution, terms, contents).
The bytes depend only on the files (sorted names, no dates or owners; xz preset 9e): packing the same
folder again gives the same archive.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from empcn.data.packaged import pack_members, read_members  # noqa: E402

DATA = REPO / "empcn" / "data"


def members_of(folder: Path) -> dict[str, bytes]:
    """Archive name → bytes: the README, the skeleton, the 120 Hz walk and the 30 Hz folder."""
    files = {"README.md": DATA / "cmu_mocap_35.README.md", "35.asf": folder / "35.asf", "35_01.amc": folder / "35_01.amc"}
    files.update({f"amc30/{p.name}": p for p in sorted((folder / "amc30").iterdir()) if p.suffix in (".asf", ".amc")})
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing or len(files) != 3 + 34:
        raise SystemExit(f"{folder}: not a complete subject-35 folder (missing: {', '.join(missing) or 'amc30 trials'})")
    return {name: path.read_bytes() for name, path in files.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a CMU subject-35 folder (35.asf, 35_01.amc, amc30/)")
    parser.add_argument("--out", type=Path, default=DATA / "cmu_mocap_35.tar.xz")
    args = parser.parse_args()
    members = members_of(args.folder)
    args.out.write_bytes(pack_members(members))
    assert read_members(args.out) == dict(sorted(members.items()))
    size = sum(map(len, members.values()))
    print(f"wrote {args.out}: {len(members)} files, {size / 1e6:.2f} MB → {args.out.stat().st_size / 1e6:.3f} MB")


if __name__ == "__main__":
    main()
