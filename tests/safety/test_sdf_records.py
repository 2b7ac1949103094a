"""SD files cut short or holding bytes that are not UTF-8: the record is skipped with its reason, never half-read."""

from __future__ import annotations

from pathlib import Path

from helpers import OPLS_ENERGY, invoke, rdkit_ligands

from empcn import open_cache
from empcn.lift.sdf import parse_target_tags, read_sdf, read_sdf_for_predict

ENERGY_TAG = OPLS_ENERGY.split("=", 1)[1]


def records(count: int) -> list[bytes]:
    """The first ``count`` records of RDKit's EGFR ligands, each ending with its ``$$$$`` line."""
    text = rdkit_ligands("egfr").read_bytes()
    parts = text.split(b"$$$$\n")[:count]
    return [part + b"$$$$\n" for part in parts]


def lift(source: Path, out: Path):
    return invoke(
        "lift",
        "--dataset",
        "molecules",
        "--source",
        source,
        "--targets",
        OPLS_ENERGY,
        "--out",
        out,
        "--workers",
        "1",
        "--no-progress",
        "--fractions",
        "0.34,0.33,0.33",
    )


def test_a_record_cut_inside_its_last_value_is_skipped(tmp_path: Path) -> None:
    three = records(3)
    last = three[2].decode()
    value_at = last.index(f"<{ENERGY_TAG}>") + len(ENERGY_TAG) + 3  # the value's line
    source = tmp_path / "cut.sdf"
    source.write_bytes(three[0] + three[1] + (last[:value_at] + last[value_at : value_at + 4]).encode())  # "-65."
    result = lift(source, tmp_path / "c.h5")
    assert result.exit_code == 0, result.output
    cache = open_cache(tmp_path / "c.h5")
    assert len(cache) == 2
    (skip,) = cache.manifest["skipped"]
    assert skip["reason"] == "the file ends inside record 3 (no $$$$ after its data: cut short?)"
    assert skip["id"] == last.split("\n", 1)[0].strip()


def test_a_complete_molfile_without_terminator_is_read(tmp_path: Path) -> None:
    first = records(1)[0].decode()
    molfile = tmp_path / "one.mol"
    molfile.write_text(first[: first.index("M  END") + len("M  END\n")])  # a molfile: no data items, no $$$$
    ((_, record),) = read_sdf_for_predict(molfile)
    assert not isinstance(record, str) and len(record.z) > 10


def test_a_title_that_is_not_utf8_skips_its_record_and_the_lift_goes_on(tmp_path: Path) -> None:
    three = records(3)
    title_end = three[1].index(b"\n")
    source = tmp_path / "latin1.sdf"
    source.write_bytes(three[0] + b"caf\xe9 ligand" + three[1][title_end:] + three[2])
    lifted = read_sdf(source, parse_target_tags(OPLS_ENERGY))
    assert len(lifted.records) == 2
    assert [(s.id, s.reason) for s in lifted.skipped] == [("record 2", "record 2's title or tags are not UTF-8 text")]
    result = lift(source, tmp_path / "c.h5")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    predicted = read_sdf_for_predict(source)
    assert predicted[1] == ("record 2", "record 2's title or tags are not UTF-8 text")
