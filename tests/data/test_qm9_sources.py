"""QM9 raw-source readers: qm9pack CSVs, official .xyz folders and (truncated) archives agree and fail clearly."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

from empcn.data.qm9 import (
    QM9_MAX_ID,
    TARGET_UNITS,
    TARGETS,
    UNCHARACTERIZED_FILE,
    QM9Raw,
    SourceError,
    read_qm9,
    source_fingerprint,
    source_kind,
    standard_targets,
    uncharacterized_ids,
)

FIXTURE_IDS = [1, 16, 17, 184, 212, 271]  # fixture files of characterised molecules, id order
UNCHARACTERIZED_FIXTURE = 58  # fixture file with an uncharacterized id: always left out
# qm9pack column of each target, in TARGETS order (typed here, independent of the reader)
CSV_TARGET_COLUMNS = [
    "Dipole_debye",
    "Polarizability_bohr3",
    "HOMO_au",
    "LUMO_au",
    "HOMO_LUMO_gap_au",
    "R2_bohr2",
    "ZPVE_au",
    "InternalEnergy_0K_au",
    "InternalEnergy_298K_au",
    "Enthalphy_298K_au",
    "GibbsFreeEnergy_298K_au",
    "Heatcapacity_Cv_cal_mol_K",
]
STOICHIOMETRY_Z = [1, 6, 7, 8, 9]  # qm9pack's Stoichiometry order: H, C, N, O, F


def assert_same(a: QM9Raw, b: QM9Raw) -> None:
    """Bit-identical molecules (ids, SMILES, atoms, positions, targets)."""
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.smiles == b.smiles
    for name in ("offsets", "z", "pos", "targets"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.strip() == message
    return message


# ------------------------------------------------------------------------------------------------
# built-in source: qm9pack CSVs


def test_csv_head_matches_the_csv_columns(csv_head, csv_rows):
    raw, skipped = csv_head
    assert skipped == []
    m = len(csv_rows)
    assert len(raw) == m
    np.testing.assert_array_equal(raw.ids, csv_rows["Index"].astype(int).to_numpy())
    assert raw.ids.dtype == np.int64 and np.all(np.diff(raw.ids) > 0)
    assert raw.offsets.dtype == np.int64 and raw.offsets.shape == (m + 1,)
    assert raw.z.dtype == np.uint8 and raw.pos.dtype == np.float64 and raw.targets.dtype == np.float64
    assert raw.pos.shape == (raw.offsets[-1], 3) and raw.targets.shape == (m, 12)
    np.testing.assert_array_equal(np.diff(raw.offsets), csv_rows["N_atoms"].astype(int).to_numpy())
    assert raw.smiles == csv_rows["SMILES"].tolist()
    # element counts per molecule against the Stoichiometry column [H, C, N, O, F]
    molecule = np.repeat(np.arange(m), np.diff(raw.offsets))
    for k, zk in enumerate(STOICHIOMETRY_Z):
        counts = np.bincount(molecule[raw.z == zk], minlength=m)
        expected = [int(s.strip("[]").split(",")[k]) for s in csv_rows["Stoichiometry"]]
        np.testing.assert_array_equal(counts, expected, err_msg=f"Z={zk}")
    assert set(np.unique(raw.z)) <= set(STOICHIOMETRY_Z)
    # targets and coordinates as the text of the file says
    for k, col in enumerate(CSV_TARGET_COLUMNS):
        np.testing.assert_array_equal(raw.targets[:, k], [float(t) for t in csv_rows[col]], err_msg=col)
    flat = [float(t) for s in csv_rows["XYZ_Ang"] for t in s.replace("[", "").replace("]", "").split(",")]
    np.testing.assert_array_equal(raw.pos.ravel(), flat)


def test_csv_first_molecule_is_methane(csv_head):
    raw, _ = csv_head
    assert raw.ids[0] == 1 and raw.smiles[0] == "C"
    np.testing.assert_array_equal(raw.z[: raw.offsets[1]], [6, 1, 1, 1, 1])
    np.testing.assert_array_equal(raw.pos[0], [-0.0126981359, 1.0858041578, 0.0080009958])  # dsgdb9nsd_000001.xyz
    assert raw.targets[0, TARGETS.index("U0")] == -40.47893


def test_limit_takes_the_first_ids_of_the_characterised_set(csv_rows):
    raw, skipped = read_qm9(limit=60)
    expected = csv_rows["Index"].astype(int).to_numpy()[:60]
    np.testing.assert_array_equal(raw.ids, expected)
    assert 58 not in raw.ids and 61 not in raw.ids and raw.ids[-1] == 62 and skipped == []
    empty, skipped = read_qm9(limit=0)
    assert len(empty) == 0 and empty.offsets.tolist() == [0] and skipped == []
    with pytest.raises(ValueError):
        read_qm9(limit=-1)


def test_uncharacterized_list_is_the_complement_of_qm9pack(csv_rows):
    text = UNCHARACTERIZED_FILE.read_text()
    assert text.startswith("#") and "qm9pack==1.0.3" in text
    ids = uncharacterized_ids()
    assert len(ids) == 3054 and np.all(np.diff(ids) > 0) and ids[0] >= 1 and ids[-1] <= 133885
    assert not ids.flags.writeable
    present = set(csv_rows["Index"].astype(int))
    top = max(present)
    below = {int(i) for i in ids if i <= top}
    assert present.isdisjoint(below)
    assert present | below == set(range(1, top + 1))


def test_take_selects_whole_molecules(csv_head):
    raw, _ = csv_head
    sub = raw.take([2, 0])
    np.testing.assert_array_equal(sub.ids, raw.ids[[2, 0]])
    a, b = raw.offsets[2], raw.offsets[3]
    np.testing.assert_array_equal(sub.pos[: b - a], raw.pos[a:b])
    np.testing.assert_array_equal(sub.z[b - a :], raw.z[: raw.offsets[1]])


# ------------------------------------------------------------------------------------------------
# official raw format: fixture folder, archives; all agree with the CSV


def _csv_subset(csv_head, ids) -> QM9Raw:
    raw, _ = csv_head
    idx = np.searchsorted(raw.ids, ids)
    assert np.array_equal(raw.ids[idx], ids)
    return raw.take(idx)


def test_fixture_folder_tar_and_csv_give_identical_molecules(fixture_dir, csv_head, make_tar, tmp_path):
    folder, skipped = read_qm9(fixture_dir)
    assert skipped == []
    np.testing.assert_array_equal(folder.ids, FIXTURE_IDS)  # 58 (uncharacterized) left out
    assert_same(folder, _csv_subset(csv_head, FIXTURE_IDS))
    members = [(f"dsgdb9nsd.xyz/{p.name}", p.read_bytes()) for p in sorted(fixture_dir.glob("*.xyz"))]
    for name in ("dsgdb9nsd.xyz.tar.bz2", "dsgdb9nsd.xyz.tar"):
        archive, skipped = read_qm9(make_tar(tmp_path / name, members))
        assert skipped == []
        assert_same(archive, folder)


def test_gdb17_smiles_is_used(fixture_dir, fixture_texts):
    smiles_line = fixture_texts[271].splitlines()[-2].split("\t")
    assert smiles_line[:2] == ["[NH3+]CCC([O-])=O", "[NH3]CCC(=O)[O]"]  # GDB-17, B3LYP
    raw, _ = read_qm9(fixture_dir)
    assert raw.smiles[FIXTURE_IDS.index(271)] == "[NH3+]CCC([O-])=O"


def test_mathematica_exponents_are_read(fixture_dir, fixture_texts):
    first_atom = fixture_texts[212].splitlines()[2]
    assert first_atom.split("\t")[1] == " 2.1997*^-6"
    raw, _ = read_qm9(fixture_dir)
    m = FIXTURE_IDS.index(212)
    assert raw.pos[raw.offsets[m], 0] == 2.1997e-6


def test_uncharacterized_file_is_left_out_silently(fixture_texts, tmp_path):
    assert f"gdb {UNCHARACTERIZED_FIXTURE}\t" in fixture_texts[UNCHARACTERIZED_FIXTURE]
    (tmp_path / "dsgdb9nsd_000058.xyz").write_text(fixture_texts[UNCHARACTERIZED_FIXTURE])
    (tmp_path / "renamed.xyz").write_text(fixture_texts[UNCHARACTERIZED_FIXTURE])  # id only in the file
    raw, skipped = read_qm9(tmp_path)
    assert len(raw) == 0 and skipped == []


def test_limit_on_folder_and_archive_stops_early(fixture_dir, fixture_texts, make_tar, tmp_path):
    raw, _ = read_qm9(fixture_dir, limit=2)
    np.testing.assert_array_equal(raw.ids, [1, 16])
    members = [(f"dsgdb9nsd_{i:06d}.xyz", fixture_texts[i].encode()) for i in FIXTURE_IDS]
    archive = make_tar(tmp_path / "a.tar", members)
    archive.write_bytes(archive.read_bytes()[:6000])  # cut after the first two members
    raw, skipped = read_qm9(archive, limit=2)
    np.testing.assert_array_equal(raw.ids, [1, 16])
    assert skipped == []  # never read as far as the cut


def test_repeated_id_keeps_the_first_file(fixture_texts, tmp_path):
    (tmp_path / "dsgdb9nsd_000001.xyz").write_text(fixture_texts[1])
    (tmp_path / "zz_1.xyz").write_text(fixture_texts[1])
    raw, skipped = read_qm9(tmp_path)
    np.testing.assert_array_equal(raw.ids, [1])
    assert [s.id for s in skipped] == [1] and "more than once" in skipped[0].reason


# ------------------------------------------------------------------------------------------------
# bad molecules in raw files (built in tmp_path from the fixture text of oxirane, id 17)


def _edit(text: str, line: int, field: int | None, value: str) -> str:
    lines = text.split("\n")
    if field is None:
        lines[line] = value
    else:
        fields = lines[line].split("\t")
        fields[field] = value
        lines[line] = "\t".join(fields)
    return "\n".join(lines)


BAD_TEXTS = {  # name: (edit of the oxirane text, words the reason must contain)
    "atom count": (lambda t: _edit(t, 0, None, "8"), "atom count 8 does not match 7 atom lines"),
    "missing atom line": (lambda t: "\n".join(l for i, l in enumerate(t.split("\n")) if i != 4), "does not match"),
    "unknown element": (lambda t: _edit(t, 2, 0, "Xx"), "unknown element symbol 'Xx'"),
    "nan coordinate": (lambda t: _edit(t, 3, 2, "NaN"), "non-finite coordinate on atom line 2"),
    "inf target": (lambda t: _edit(t, 1, 11, "inf"), "non-finite U0"),
    "malformed coordinate": (lambda t: _edit(t, 4, 1, "1.2.3"), "malformed number '1.2.3' on atom line 3"),
    "malformed target": (lambda t: _edit(t, 1, 6, "-0.2x"), "malformed number '-0.2x' on the property line"),
    "malformed exponent": (lambda t: _edit(t, 2, 1, "1.5*^"), "malformed number '1.5*^' on atom line 1"),
    "no SMILES line": (lambda t: "\n".join(t.split("\n")[:10]), "missing SMILES line"),
    "wrong id": (lambda t: t.replace("gdb 17\t", "gdb 18\t"), "property line says gdb 18"),
    "not text": (lambda t: "\udcff\udcfe", "unreadable"),
}


def _bad_bytes(fixture_texts, case: str) -> bytes:
    text = BAD_TEXTS[case][0](fixture_texts[17])
    return text.encode("utf-8", errors="surrogateescape")


@pytest.mark.parametrize("container", ["folder", "tar.bz2"])
@pytest.mark.parametrize("case", sorted(BAD_TEXTS))
def test_bad_molecule_is_skipped_with_its_reason(case, container, fixture_texts, make_tar, tmp_path):
    files = {f"dsgdb9nsd_{i:06d}.xyz": fixture_texts[i].encode() for i in (1, 16)}
    files["dsgdb9nsd_000017.xyz"] = _bad_bytes(fixture_texts, case)
    if container == "folder":
        source = tmp_path / "xyz"
        source.mkdir()
        for name, data in files.items():
            (source / name).write_bytes(data)
    else:
        source = make_tar(tmp_path / "qm9.tar.bz2", sorted(files.items()))
    raw, skipped = read_qm9(source)
    np.testing.assert_array_equal(raw.ids, [1, 16])
    assert len(skipped) == 1 and skipped[0].id == 17
    assert "dsgdb9nsd_000017.xyz" in skipped[0].reason and BAD_TEXTS[case][1] in skipped[0].reason
    assert "\n" not in skipped[0].reason
    with pytest.raises(SourceError) as err:
        read_qm9(source, strict=True)
    message = one_line(err)
    assert str(source) in message and "dsgdb9nsd_000017.xyz" in message and BAD_TEXTS[case][1] in message


def test_good_molecules_are_unchanged_next_to_bad_ones(fixture_dir, fixture_texts, tmp_path):
    for i in (1, 16):
        (tmp_path / f"dsgdb9nsd_{i:06d}.xyz").write_text(fixture_texts[i])
    (tmp_path / "dsgdb9nsd_000017.xyz").write_text(BAD_TEXTS["atom count"][0](fixture_texts[17]))
    raw, _ = read_qm9(tmp_path)
    full, _ = read_qm9(fixture_dir)
    assert_same(raw, full.take([0, 1]))


@pytest.mark.parametrize("kind", ["directory", "broken link"])
def test_unreadable_file_in_folder(kind, fixture_texts, tmp_path):
    (tmp_path / "dsgdb9nsd_000001.xyz").write_text(fixture_texts[1])
    bad = tmp_path / "dsgdb9nsd_000016.xyz"
    if kind == "directory":
        bad.mkdir()
    else:
        os.symlink(tmp_path / "does-not-exist", bad)
    raw, skipped = read_qm9(tmp_path)
    np.testing.assert_array_equal(raw.ids, [1])
    assert [s.id for s in skipped] == [16] and "unreadable" in skipped[0].reason
    with pytest.raises(SourceError, match="dsgdb9nsd_000016.xyz: unreadable"):
        read_qm9(tmp_path, strict=True)


# ------------------------------------------------------------------------------------------------
# truncated and corrupt archives


def test_truncated_bz2_keeps_the_molecules_before_the_cut(fixture_texts, make_tar, filler, tmp_path):
    # level 1 = 100 kB bz2 blocks; the 300 kB filler puts the cut in a later block than the first molecules
    members = [(f"dsgdb9nsd_{i:06d}.xyz", fixture_texts[i].encode()) for i in (1, 16, 17)]
    members.append(("README", filler(300_000)))
    members += [(f"dsgdb9nsd_{i:06d}.xyz", fixture_texts[i].encode()) for i in (184, 212, 271)]
    archive = make_tar(tmp_path / "qm9.tar.bz2", members, compresslevel=1)
    whole, _ = read_qm9(archive)
    np.testing.assert_array_equal(whole.ids, FIXTURE_IDS)
    archive.write_bytes(archive.read_bytes()[: int(archive.stat().st_size * 0.8)])
    raw, skipped = read_qm9(archive)
    assert_same(raw, whole.take([0, 1, 2]))
    assert len(skipped) == 1 and skipped[0].id is None and "truncated" in skipped[0].reason
    # the summary says how much was lost, not just "skipped 1"
    wanted = QM9_MAX_ID - len(uncharacterized_ids())
    assert f"{wanted - len(raw.ids)} of the {wanted} molecules wanted from it were not read" in skipped[0].reason
    with pytest.raises(SourceError, match="truncated"):
        read_qm9(archive, strict=True)


def test_truncated_tar_inside_a_member_names_it(fixture_texts, make_tar, tmp_path):
    members = [(f"dsgdb9nsd_{i:06d}.xyz", fixture_texts[i].encode()) for i in FIXTURE_IDS]
    archive = make_tar(tmp_path / "qm9.tar", members)
    data = archive.read_bytes()
    start = data.index(b"gdb 16\t")  # inside the data of the second member
    archive.write_bytes(data[: start + 100])
    raw, skipped = read_qm9(archive)
    np.testing.assert_array_equal(raw.ids, [1])
    assert [s.id for s in skipped] == [16] and "truncated" in skipped[0].reason


@pytest.mark.parametrize("cut", ["at a member boundary", "inside a header"])
def test_tar_cut_between_members_is_not_taken_for_its_end(cut, fixture_texts, make_tar, tmp_path):
    # tarfile alone ends quietly at an empty or partial header; the reader must notice
    members = [(f"dsgdb9nsd_{i:06d}.xyz", fixture_texts[i].encode()) for i in FIXTURE_IDS]
    archive = make_tar(tmp_path / "qm9.tar", members)
    data = archive.read_bytes()
    boundary = data.index(b"dsgdb9nsd_000017.xyz")  # header of the third member starts here
    archive.write_bytes(data[: boundary + (0 if cut == "at a member boundary" else 200)])
    raw, skipped = read_qm9(archive)
    np.testing.assert_array_equal(raw.ids, [1, 16])
    assert len(skipped) == 1 and "truncated or corrupt" in skipped[0].reason


def test_archive_that_is_not_bz2_is_a_source_error(tmp_path):
    junk = tmp_path / "dsgdb9nsd.xyz.tar.bz2"
    junk.write_bytes(b"this is not a bz2 stream" * 20)
    with pytest.raises(SourceError) as err:
        read_qm9(junk)
    assert str(junk) in one_line(err)


# ------------------------------------------------------------------------------------------------
# bad rows in CSV parts (built in tmp_path from the first rows of the real qm9_part1.csv)


def _csv_records(qm9pack_dir: Path, n: int) -> tuple[list[str], list[list[str]]]:
    with open(qm9pack_dir / "qm9_part1.csv", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [next(reader) for _ in range(n)]


def _write_csv(folder: Path, header: list[str], records: list[list[str]], tail: str = "") -> Path:
    folder.mkdir()
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *records])
    (folder / "qm9_part1.csv").write_text(buffer.getvalue() + tail)
    return folder


CSV_EDITS = {  # id: (column, old text, new text, words of the reason); "bulk" rows keep the compact layout
    "bulk": {
        2: ("HOMO_au", None, "abc", "malformed number 'abc' in HOMO_au"),
        3: ("XYZ_Ang", "-0.0343604951", "nan", "non-finite coordinate on atom 1"),
        4: ("Elements", "['C','C','H','H']", "['C','Q','H','H']", "unknown element symbol 'Q'"),
        6: ("InternalEnergy_0K_au", None, "inf", "non-finite InternalEnergy_0K_au"),
    },
    "row by row": {
        2: ("XYZ_Ang", "0.0625637998", "1.2.3", "malformed number '1.2.3' in XYZ_Ang"),
        4: ("N_atoms", None, "5", "Elements lists 4 atoms but N_atoms is 5"),
        5: ("Elements", "['C','N','H']", "['Cl','N','H']", "unknown element symbol 'Cl'"),
        6: ("Index", None, "six", "Index 'six' is not a positive integer"),
    },
}


@pytest.mark.parametrize("layout", sorted(CSV_EDITS))
def test_bad_csv_rows_are_skipped(layout, qm9pack_dir, csv_head, tmp_path):
    header, records = _csv_records(qm9pack_dir, 9)
    col = {name: k for k, name in enumerate(header)}
    for record in records:
        edit = CSV_EDITS[layout].get(int(record[col["Index"]]))
        if edit:
            column, old, new, _ = edit
            before = record[col[column]]
            record[col[column]] = new if old is None else before.replace(old, new)
            assert record[col[column]] != before
    cut = io.StringIO()
    csv.writer(cut, lineterminator="\n").writerow(records[-1][: col["XYZ_Ang"] + 1])  # row of id 9 cut short
    folder = _write_csv(tmp_path / "csv", header, records[:-1], tail=cut.getvalue())
    raw, skipped = read_qm9(folder)
    bad = {i: e[3] for i, e in CSV_EDITS[layout].items()}
    good = [i for i in range(1, 9) if i not in bad]
    assert_same(raw, _csv_subset(csv_head, good))
    reasons = {s.id: s.reason for s in skipped}
    expected_ids = {i for i in bad if CSV_EDITS[layout][i][0] != "Index"} | {9}
    assert {i for i in reasons if i is not None} == expected_ids
    for i in expected_ids - {9}:
        assert bad[i] in reasons[i] and reasons[i].startswith("qm9_part1.csv line ")
    assert "missing Dipole_debye" in reasons[9] and "line 10" in reasons[9]
    if 6 in bad and CSV_EDITS[layout][6][0] == "Index":
        assert any(s.id is None and bad[6] in s.reason for s in skipped)
    with pytest.raises(SourceError) as err:
        read_qm9(folder, strict=True)
    message = one_line(err)
    assert str(folder) in message and "qm9_part1.csv line " in message
    first, skipped = read_qm9(folder, limit=1, strict=True)  # bad rows after the limit do not count
    np.testing.assert_array_equal(first.ids, [1])
    assert skipped == []


def test_csv_parts_are_read_in_order_with_limit_and_repeats(qm9pack_dir, csv_head, tmp_path):
    header, records = _csv_records(qm9pack_dir, 6)
    folder = _write_csv(tmp_path / "csv", header, records[:3])  # ids 1-3
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, records[2], *records[3:]])  # 3 again, 4-6
    (folder / "qm9_part2.csv").write_text(buffer.getvalue())
    raw, skipped = read_qm9(folder)
    assert_same(raw, _csv_subset(csv_head, [1, 2, 3, 4, 5, 6]))
    assert [s.id for s in skipped] == [3] and "more than once" in skipped[0].reason
    raw, skipped = read_qm9(folder, limit=5)
    np.testing.assert_array_equal(raw.ids, [1, 2, 3, 4, 5])
    raw, skipped = read_qm9(folder, limit=2)
    np.testing.assert_array_equal(raw.ids, [1, 2])
    assert skipped == []


def test_csv_without_a_needed_column_is_a_source_error(qm9pack_dir, tmp_path):
    header, records = _csv_records(qm9pack_dir, 3)
    k = header.index("HOMO_au")
    folder = _write_csv(tmp_path / "csv", header[:k] + header[k + 1 :], [r[:k] + r[k + 1 :] for r in records])
    with pytest.raises(SourceError) as err:
        read_qm9(folder)
    assert "qm9_part1.csv" in one_line(err) and "cannot read CSV" in str(err.value)


# ------------------------------------------------------------------------------------------------
# source dispatch, errors, fingerprint


def test_missing_and_unrecognised_sources(tmp_path):
    cases = [tmp_path / "nope", tmp_path / "empty", tmp_path / "notes.txt"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    for path in cases:
        with pytest.raises(SourceError) as err:
            read_qm9(path)
        assert str(path) in one_line(err)
        with pytest.raises(SourceError):
            source_kind(path)
    with pytest.raises(SourceError, match="no such file"):
        read_qm9(tmp_path / "nope")


def test_source_kinds(fixture_dir, make_tar, tmp_path):
    assert source_kind(None) == "qm9pack-csv"
    assert source_kind(fixture_dir) == "xyz-folder"
    assert source_kind(make_tar(tmp_path / "a.tar.bz2", [])) == "xyz-archive"
    assert source_kind(str(tmp_path / "a.tar.bz2")) == "xyz-archive"


def test_fingerprint_is_stable_and_tracks_content(fixture_dir, fixture_texts, tmp_path):
    default = source_fingerprint(None)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", default)
    first = source_fingerprint(fixture_dir)
    assert first == source_fingerprint(fixture_dir) and first != default
    copy = tmp_path / "copy"
    copy.mkdir()
    for i, text in fixture_texts.items():
        (copy / f"dsgdb9nsd_{i:06d}.xyz").write_text(text)
    assert source_fingerprint(copy) == first  # same names and bytes, other folder
    (copy / "dsgdb9nsd_000001.xyz").write_text(fixture_texts[1].replace("157.7118", "157.7119"))
    assert source_fingerprint(copy) != first


# ------------------------------------------------------------------------------------------------
# standard targets


HA_MEV = 27.211386245988 * 1000
ATOM_REF = {  # QM9 atomref (Hartree): U0, U, H, G
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063163, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}


def test_standard_targets_closed_form():
    # methane (C + 4 H) with its real raw targets, and a made-up molecule with one atom of each element
    methane = [
        0.0,
        13.21,
        -0.3877,
        0.1171,
        0.5048,
        35.3641,
        0.044749,
        -40.47893,
        -40.476062,
        -40.475117,
        -40.498597,
        6.469,
    ]
    raw = QM9Raw(
        ids=np.array([1, 2], np.int64),
        smiles=["C", "x"],
        offsets=np.array([0, 5, 10], np.int64),
        z=np.array([6, 1, 1, 1, 1, 1, 6, 7, 8, 9], np.uint8),
        pos=np.zeros((10, 3)),
        targets=np.array([methane, [1.0] * 12]),
    )
    y = standard_targets(raw)
    assert y.shape == (2, 12) and y.dtype == np.float64
    np.testing.assert_array_equal(raw.targets[0], methane)  # input untouched
    col = {name: k for k, name in enumerate(TARGETS)}
    ch4 = {q: ATOM_REF[6][k] + 4 * ATOM_REF[1][k] for k, q in enumerate(("U0", "U", "H", "G"))}
    assert y[0, col["U0"]] == pytest.approx((-40.47893 - (-0.500273 * 4 - 37.846772)) * 27211.386245988, rel=1e-12)
    for q in ("U0", "U", "H", "G"):
        assert y[0, col[q]] == pytest.approx((methane[col[q]] - ch4[q]) * HA_MEV, rel=1e-12)
        hcnof = sum(ATOM_REF[zz][("U0", "U", "H", "G").index(q)] for zz in (1, 6, 7, 8, 9))
        assert y[1, col[q]] == pytest.approx((1.0 - hcnof) * HA_MEV, rel=1e-12)
    for q in ("homo", "lumo", "gap", "zpve"):
        assert y[0, col[q]] == pytest.approx(methane[col[q]] * HA_MEV, rel=1e-12)
        assert y[1, col[q]] == pytest.approx(HA_MEV, rel=1e-12)
    for q in ("mu", "alpha", "r2"):
        assert y[0, col[q]] == methane[col[q]] and y[1, col[q]] == 1.0
    assert y[0, col["Cv"]] == pytest.approx(6.469 - 5 * 2.981)
    assert y[1, col["Cv"]] == pytest.approx(1.0 - 5 * 2.981)
    # methane's atomisation energy is about -17.2 eV (four C-H bonds of ~4.3 eV)
    assert -17.5 < y[0, col["U0"]] / 1000 < -16.9


def test_standard_targets_over_many_molecules(csv_head):
    raw, _ = csv_head
    y = standard_targets(raw)
    k = TARGETS.index("G")
    for m in (0, 57, 123, len(raw) - 1):
        zs = raw.z[raw.offsets[m] : raw.offsets[m + 1]]
        ref = sum(ATOM_REF[int(zz)][3] for zz in zs)
        assert y[m, k] == pytest.approx((raw.targets[m, k] - ref) * HA_MEV, rel=1e-12)
    assert len(standard_targets(QM9Raw.empty())) == 0


def test_target_names_and_units():
    assert TARGETS == ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv")
    assert TARGET_UNITS == {
        "mu": "D",
        "alpha": "bohr^3",
        "homo": "meV",
        "lumo": "meV",
        "gap": "meV",
        "r2": "bohr^2",
        "zpve": "meV",
        "U0": "meV",
        "U": "meV",
        "H": "meV",
        "G": "meV",
        "Cv": "cal/(mol K)",
    }
