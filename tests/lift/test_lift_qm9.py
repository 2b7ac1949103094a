"""End-to-end QM9 lift: cache contents, reproducibility, recovery, corruption, bad input, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import with_unparsable_smiles
from typer.testing import CliRunner

from empcn import cache as cf
from empcn import geometry, open_cache
from empcn.cli import app
from empcn.data import qm9 as qm9_source
from empcn.lift import pipeline
from empcn.lift.qm9 import QM9LiftConfig, lift_qm9

FIXTURES = Path(__file__).parent.parent / "fixtures" / "qm9"
runner = CliRunner()


def test_cache_holds_every_molecule_with_its_cells(qm9_cache):
    cache = open_cache(qm9_cache)
    raw, skipped = qm9_source.read_qm9(None, limit=300)
    assert len(cache) + len(cache.manifest["skipped"]) == 300 and not skipped
    assert cache.num_shards == 3
    for i in (0, 17, 150, len(cache) - 1):
        s = cache[i]
        m = int(np.flatnonzero(raw.ids == s["id"])[0])
        a, b = raw.offsets[m], raw.offsets[m + 1]
        np.testing.assert_array_equal(s["z"], raw.z[a:b])
        np.testing.assert_allclose(s["pos"], raw.pos[a:b], atol=1e-6)
        # every atom is in a bond, every hydrogen in exactly one
        deg = np.bincount(s["edges"].ravel(), minlength=len(s["z"]))
        assert np.all(deg >= 1) or len(s["z"]) == 1
        assert np.all(deg[s["z"] == 1] == 1)
        for ring in s["rings"]:
            assert 3 <= len(ring) <= 8 and all(s["z"][v] != 1 for v in ring)
        assert set(s["y"]) == set(qm9_source.TARGETS)
    m = cache.manifest
    assert m["targets"]["units"]["U0"] == "meV" and m["params"]["max_ring"] == 8
    assert sum(m["splits"]["counts"].values()) == len(cache)


def test_stored_invariants_equal_torch_recomputation(qm9_cache):
    """One definition: train recomputes the invariants from positions and gets the stored values."""
    cache = open_cache(qm9_cache)
    shard = cache.shard(1)
    g = shard.groups
    for row in range(0, shard.num_samples, 7):
        s = cf.sample_from_shard(shard, row)
        pos = torch.from_numpy(s["pos"].astype(np.float64))
        edges = torch.from_numpy(s["edges"].astype(np.int64))
        np.testing.assert_allclose(geometry.edge_lengths(pos, edges).numpy(), s["edges/length"], rtol=1e-6)
        sizes = s["rings/size"]
        ring_of = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))
        ring = geometry.ring_geometry(pos, torch.from_numpy(s["ring_slots/node"].astype(np.int64)), ring_of, len(sizes))
        np.testing.assert_allclose(ring.area.numpy(), s["rings/area"], rtol=1e-5)
        np.testing.assert_allclose(ring.perimeter.numpy(), s["rings/perimeter"], rtol=1e-6)
        np.testing.assert_allclose(ring.radius.numpy(), s["rings/radius"], rtol=1e-6)
        bary = geometry.cell_barycentres(pos, edges, ring)
        for name, ranks in (("1_1_lower", (1, 1)), ("2_0", (2, 0)), ("0_1", (0, 1))):
            idx = torch.from_numpy(s[f"nbr/{name}/index"].astype(np.int64))
            d = geometry.pair_distances(bary[ranks[0]], bary[ranks[1]], idx)
            np.testing.assert_allclose(d.numpy(), s[f"nbr/{name}/dist"], rtol=1e-5, atol=1e-6)
    assert g["rings"].arrays["size"].sum() == len(g["ring_slots"].arrays["node"])


def test_benzene_ring_area_is_a_regular_hexagon(qm9_cache):
    """Benzene (QM9 id 214) has one 6-ring, nearly regular: area ≈ 3√3/2·a² with a = mean C–C bond."""
    cache = open_cache(qm9_cache)
    s = next(s for s in cache if s["id"] == 214)
    assert len(s["rings"]) == 1 and len(s["rings"][0]) == 6
    a = s["rings/perimeter"][0] / 6
    assert s["rings/area"][0] == pytest.approx(1.5 * np.sqrt(3) * a * a, rel=1e-3)
    assert s["rings/radius"][0] == pytest.approx(a, rel=1e-3)


def test_worker_count_does_not_change_bytes(tmp_path):
    one = lift_qm9(QM9LiftConfig(out=tmp_path / "a" / "q.h5", limit=200, shard_size=64, workers=1, progress=False))
    two = lift_qm9(QM9LiftConfig(out=tmp_path / "b" / "q.h5", limit=200, shard_size=64, workers=2, progress=False))
    assert one.read_bytes() == two.read_bytes()
    for k in range(4):
        name = cf.shard_name(k)
        assert (cf.shard_dir(one) / name).read_bytes() == (cf.shard_dir(two) / name).read_bytes()


def test_interrupted_lift_leaves_no_cache_and_resume_recovers(tmp_path, monkeypatch):
    out = tmp_path / "q.h5"
    cfg = QM9LiftConfig(out=out, limit=200, shard_size=64, workers=1, progress=False)
    clean = lift_qm9(
        QM9LiftConfig(out=tmp_path / "clean" / "q.h5", limit=200, shard_size=64, workers=1, progress=False)
    )
    real_write = cf.write_shard
    calls = {"n": 0}

    def dying_write(path, content):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_write(path, content)

    monkeypatch.setattr(cf, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        lift_qm9(cfg)
    assert not out.exists(), "an interrupted lift must not leave an entry file"
    leftovers = sorted(p.name for p in cf.shard_dir(out).iterdir())
    done = [cf.shard_name(0), cf.shard_name(1)]
    expected = sorted(done + [cf.digest_path(cf.shard_dir(out) / n).name for n in done])
    assert leftovers == expected, leftovers  # shards with their digests, no temporary files
    monkeypatch.setattr(cf, "write_shard", real_write)

    written = []
    monkeypatch.setattr(cf, "write_shard", lambda p, c: written.append(Path(p).name) or real_write(p, c))
    lift_qm9(QM9LiftConfig(out=out, limit=200, shard_size=64, workers=1, progress=False, resume=True))
    assert written == [cf.shard_name(2), cf.shard_name(3)]  # verified shards kept, the rest redone
    assert out.read_bytes() == clean.read_bytes()
    assert cf.verify_cache(out).ok


def test_resume_redoes_a_corrupted_shard(tmp_path):
    cfg = QM9LiftConfig(out=tmp_path / "q.h5", limit=100, shard_size=50, workers=1, progress=False)
    lift_qm9(cfg)
    shard = cf.shard_dir(cfg.out) / cf.shard_name(1)
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 2])  # truncated, as a crash mid-copy would leave it
    lift_qm9(QM9LiftConfig(**{**cfg.__dict__, "resume": True}))
    assert shard.read_bytes() == good


def test_cli_verify_detects_corruption(tmp_path):
    out = tmp_path / "q.h5"
    res = runner.invoke(
        app,
        [
            "lift",
            "--dataset",
            "qm9",
            "--limit",
            "60",
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            "--shard-size",
            "30",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output
    ok = runner.invoke(app, ["cache", "verify", str(out)])
    assert ok.exit_code == 0 and "ok" in ok.output
    info = runner.invoke(app, ["cache", "info", str(out)])
    assert info.exit_code == 0 and "samples     60" in info.output and "rank 2" in info.output
    shard = cf.shard_dir(out) / cf.shard_name(1)
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0x01
    shard.write_bytes(bytes(data))
    bad = runner.invoke(app, ["cache", "verify", str(out)])
    assert bad.exit_code == 1 and "sha256 mismatch" in bad.output


def test_cli_missing_source_is_one_line_error(tmp_path):
    res = runner.invoke(
        app, ["lift", "--dataset", "qm9", "--source", str(tmp_path / "nope.tar.bz2"), "--out", str(tmp_path / "x.h5")]
    )
    assert res.exit_code == 2
    lines = [l for l in res.output.strip().splitlines() if l]
    assert len(lines) == 1 and "nope.tar.bz2" in lines[0] and "Traceback" not in res.output
    assert not (tmp_path / "x.h5").exists()


def test_bad_smiles_is_skipped_with_reason_or_stops_in_strict_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(qm9_source, "read_qm9", with_unparsable_smiles(qm9_source.read_qm9))
    out = lift_qm9(QM9LiftConfig(out=tmp_path / "q.h5", limit=20, workers=1, progress=False))
    m = open_cache(out).manifest
    assert len(open_cache(out)) == 19
    assert m["skipped"] == [{"id": 4, "reason": m["skipped"][0]["reason"]}] and "C1CC((" in m["skipped"][0]["reason"]
    with pytest.raises(pipeline.LiftError, match="molecule 4"):
        lift_qm9(QM9LiftConfig(out=tmp_path / "s.h5", limit=20, workers=1, progress=False, strict=True))
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.skipif(not FIXTURES.exists(), reason="raw-format fixtures not present")
def test_raw_xyz_and_csv_sources_give_the_same_samples(tmp_path):
    raw_out = lift_qm9(QM9LiftConfig(source=FIXTURES, out=tmp_path / "raw.h5", workers=1, progress=False))
    raw_cache = open_cache(raw_out)
    ids = [s["id"] for s in raw_cache]
    csv_cache = open_cache(lift_qm9(QM9LiftConfig(out=tmp_path / "csv.h5", limit=max(ids), workers=1, progress=False)))
    by_id = {s["id"]: s for s in csv_cache}
    for s in raw_cache:
        t = by_id[s["id"]]
        assert s.keys() == t.keys()
        for key in s:
            if key == "rings":
                assert s[key] == t[key]
            elif key == "y":
                assert s[key] == pytest.approx(t[key], rel=1e-9)
            elif key not in ("sample/y",):
                np.testing.assert_array_equal(s[key], t[key], err_msg=key)


def test_lift_stage_is_separate_from_training_imports():
    """Importing the cache reader and the package must not pull in RDKit (only the lift does)."""
    code = "import sys, empcn, empcn.cache; print(json.dumps(['rdkit' in sys.modules, 'networkx' in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False]


def _cells_of(z, pos, smiles):
    from empcn.lift.assemble import complex_shard
    from empcn.lift.molecule import CellOptions, MoleculeInput, molecule_cells

    cells, _ = molecule_cells(MoleculeInput(0, z, pos, smiles=smiles), CellOptions())
    return cf.sample_from_shard(complex_shard([cells], {"id": np.zeros(1, np.int64)}), 0)


def test_cells_and_invariants_follow_an_atom_relabelling():
    """Shuffling the XYZ order (heavy atoms keep their SMILES order) relabels the cells, nothing more."""
    raw, _ = qm9_source.read_qm9(None, limit=300)
    rng = np.random.default_rng(0)
    ring_molecules = [m for m in range(len(raw.ids)) if "1" in raw.smiles[m]][:15]
    assert len(ring_molecules) == 15
    for m in ring_molecules:
        a, b = raw.offsets[m], raw.offsets[m + 1]
        z, pos = raw.z[a:b], raw.pos[a:b]
        heavy, hydro = np.flatnonzero(z != 1), np.flatnonzero(z == 1)
        # a permutation that keeps the heavy atoms' relative order but moves atoms around
        slots = np.sort(rng.permutation(len(z))[: len(heavy)])
        perm = np.empty(len(z), dtype=np.int64)  # new position -> old atom
        perm[slots] = heavy
        perm[np.setdiff1d(np.arange(len(z)), slots)] = rng.permutation(hydro)
        old_to_new = np.argsort(perm)
        s, t = _cells_of(z, pos, raw.smiles[m]), _cells_of(z[perm], pos[perm], raw.smiles[m])
        relabel = lambda pairs: {tuple(sorted(old_to_new[list(p)])) for p in pairs}  # noqa: E731
        assert relabel(s["edges"]) == {tuple(e) for e in t["edges"].tolist()}
        ring_sets = lambda rings: sorted(sorted(r) for r in rings)  # noqa: E731
        assert ring_sets([old_to_new[list(r)] for r in s["rings"]]) == ring_sets(t["rings"])
        np.testing.assert_allclose(np.sort(s["edges/length"]), np.sort(t["edges/length"]), rtol=1e-6)
        np.testing.assert_allclose(np.sort(s["rings/area"]), np.sort(t["rings/area"]), rtol=1e-5)
        for name in ("1_1_lower", "2_0", "2_2_lower"):
            np.testing.assert_allclose(np.sort(s[f"nbr/{name}/dist"]), np.sort(t[f"nbr/{name}/dist"]), rtol=1e-5)


def _read_everything(path: str) -> float:
    cache = open_cache(path)
    return float(sum(float(s["pos"].sum()) + len(s["rings"]) for s in cache))


def test_many_readers_at_once(qm9_cache):
    """Immutable files opened without locks: several processes read the same cache concurrently."""
    import multiprocessing as mp

    expected = _read_everything(str(qm9_cache))
    with mp.get_context("fork").Pool(3) as pool:
        results = pool.map(_read_everything, [str(qm9_cache)] * 3)
    assert results == [expected] * 3
