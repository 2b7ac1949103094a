"""The data-set registry: each data set takes exactly its options, --help and `empcn datasets` show them,
every data set lifts through the one driver (--cache-dir and --resume included) into the same caches as
before the registry (the digests of ``tests/fixtures/lift/content.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.lift.make_content import cases, content_digest
from typer.testing import CliRunner

from empcn import open_cache
from empcn.cache import cache_fingerprint
from empcn.cli import app
from empcn.data.mocap import default_source
from empcn.errors import RegistryError
from empcn.lift import datasets
from empcn.lift.spec import DatasetSpec, LiftConfig, LiftInput, Option

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lift" / "content.json"
MOCAP_SMALL = [
    "--dataset",
    "mocap",
    "--source",
    str(default_source() / "amc30"),
    "--fps",
    "30",
    "--trials",
    "train_0[1-4]",
    "--trial-split",
    "2,1,1",
    "--no-progress",
    "--workers",
    "1",
]
runner = CliRunner()


def error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize(
    "name, args, flag, owners",
    [
        ("nbody", ["--limit", "10"], "--limit", "qm9"),
        ("nbody", ["--rings", "sssr", "--max-ring", "5"], "--rings", "qm9, molecules"),
        ("nbody", ["--strict"], "--strict", "qm9, molecules"),
        ("nbody", ["--source", "x"], "--source", "qm9, mocap, molecules"),
        ("mocap", ["--max-ring", "5"], "--max-ring", "qm9, molecules"),
        ("mocap", ["--sims", "3,2,2"], "--sims", "nbody"),
        ("qm9", ["--targets", "U0"], "--targets", "molecules"),
        ("qm9", ["--split-seed", "1"], "--split-seed", "mocap"),
        ("molecules", ["--limit=10"], "--limit", "qm9"),
    ],
)
def test_an_option_of_another_data_set_is_refused_in_one_line(tmp_path, name, args, flag, owners) -> None:
    out = tmp_path / "c.h5"
    r = runner.invoke(app, ["lift", "--dataset", name, *args, "--out", str(out), "--no-progress"])
    assert r.exit_code == 2
    assert error_line(r).startswith(
        f"error: {flag} is not an option of --dataset {name}; it is an option of --dataset {owners}"
    )
    assert not out.exists() and not list(tmp_path.iterdir())


def _flags(spec: DatasetSpec) -> dict[str, str | None]:
    """Every flag ``empcn lift --dataset <spec>`` takes → a value to give it (None: a flag without a value)."""
    out: dict[str, str | None] = {}
    for option in (*spec.options, *spec.run_options):
        if option.kind is bool:
            out[option.flag] = out[f"--no-{option.name}"] = None
        else:
            out[option.flag] = spec.option_default(option).split(" ")[0] or "1"
    return out


def test_every_option_of_every_other_data_set_is_refused_in_one_line(tmp_path) -> None:
    """All data sets × every option of any data set that it does not take (both read from the registry):
    exit 2, one line naming the option, the data set and the data sets that take it; nothing written."""
    specs = {name: datasets.dataset(name) for name in datasets.DATASETS.names()}
    flags = {name: _flags(spec) for name, spec in specs.items()}
    every = {flag: value for taken in flags.values() for flag, value in taken.items()}
    checked = 0
    for name in specs:
        for flag, value in sorted(every.items()):
            if flag in flags[name]:
                continue
            owners = ", ".join(n for n in specs if flag in flags[n])
            out = tmp_path / f"{name}{flag}.h5"
            given = [flag] if value is None else [flag, value]
            r = runner.invoke(app, ["lift", "--dataset", name, *given, "--out", str(out), "--no-progress"])
            assert r.exit_code == 2, (name, flag, r.output)
            assert error_line(r).startswith(
                f"error: {flag} is not an option of --dataset {name}; it is an option of --dataset {owners} "
            ), r.output
            checked += 1
    assert checked >= 3 * len(specs) and not list(tmp_path.iterdir())  # every data set refuses some
    r = runner.invoke(app, ["lift", "--dataset", "nbody", "--limit", "10", "--out", str(tmp_path / "n.h5")])
    assert r.exit_code == 2 and error_line(r).startswith("error: --limit is not an option of --dataset nbody")


def test_other_misuse_is_one_line(tmp_path) -> None:
    r = runner.invoke(app, ["lift", "--dataset", "nbody", "--bogus", "--out", str(tmp_path / "c.h5")])
    assert r.exit_code == 2 and "--bogus is not an option of --dataset nbody" in error_line(r)
    r = runner.invoke(app, ["lift", "--dataset", "nope"])
    assert r.exit_code == 2 and "unknown data set 'nope'; known: qm9, nbody, mocap, molecules" in error_line(r)
    r = runner.invoke(app, ["lift", "--dataset", "nbody", "--sims", "3,2"])
    assert r.exit_code == 2 and "--sims" in error_line(r) and "three positive integers" in error_line(r)
    r = runner.invoke(app, ["lift", "--dataset", "qm9", "--max-ring", "2"])
    assert r.exit_code == 2 and "--max-ring" in error_line(r)
    r = runner.invoke(app, ["lift", "--dataset", "mocap", "--split-seed", "-1"])
    assert r.exit_code == 2 and "--split-seed" in error_line(r)
    r = runner.invoke(app, ["lift", "--dataset", "qm9", "extra"])
    assert r.exit_code == 2 and "extra" in error_line(r)
    r = runner.invoke(app, ["lift", "--dataset"])
    assert r.exit_code == 2 and "--dataset needs a name" in error_line(r)
    assert not list(tmp_path.iterdir())


def test_help_shows_the_data_sets_own_options_with_defaults_and_units() -> None:
    r = runner.invoke(app, ["lift", "--dataset", "mocap", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "Options of --dataset mocap:" in text and "Run options (every data set):" in text
    for shown in (
        "--split-seed INT",
        "[default: 0]",
        "--fps FLOAT",
        "Hz",
        "[default: 11,6,6]",
        "--cache-dir DIR",
        "[default: data/mocap.h5]",
        "[default: 1000 samples]",
        "the built-in CMU subject 35 walks at 30 Hz",
    ):
        assert shown in text, shown
    for absent in ("--limit", "--rings", "--strict", "--sims", "--targets"):
        assert absent not in text, absent
    qm9 = " ".join(runner.invoke(app, ["lift", "--help"]).output.split())  # the default data set
    assert "Options of --dataset qm9:" in qm9 and "[default: 8 atoms]" in qm9 and "--strict / --no-strict" in qm9
    assert "[default: 4096 samples]" in qm9 and "--split-seed" not in qm9


def test_datasets_lists_every_registered_data_set_with_its_origin_and_options() -> None:
    r = runner.invoke(app, ["datasets"])
    assert r.exit_code == 0, r.output
    for name in ("qm9", "nbody", "mocap", "molecules"):
        assert f"{name}  (built-in, empcn.lift.{name}:SPEC" in r.output
    assert "task positions" in r.output and "--initial-states" in r.output and "--split-seed" in r.output
    one = runner.invoke(app, ["datasets", "nbody"])
    assert one.exit_code == 0 and "--sims" in one.output and "--limit" not in one.output
    assert runner.invoke(app, ["datasets", "nope"]).exit_code == 2


def test_molecule_data_sets_share_one_shard_builder() -> None:
    qm9, molecules = datasets.dataset("qm9"), datasets.dataset("molecules")
    assert qm9.build_shard is molecules.build_shard
    assert [(s.name, s.task) for s in map(datasets.dataset, ("qm9", "nbody", "mocap", "molecules"))] == [
        ("qm9", "scalar"),
        ("nbody", "positions"),
        ("mocap", "positions"),
        ("molecules", "scalar"),
    ]


# ----------------------------------------------------------------------------------------------
# the same caches as before


def test_every_built_in_data_set_lifts_the_same_content_as_before(tmp_path) -> None:
    """Arrays, attributes, splits and manifests as the command line of a902347 lifted them."""
    reference = json.loads(FIXTURE.read_text())
    for name, args in cases(mocap=str(default_source() / "amc30")).items():
        entry = tmp_path / name / "cache.h5"
        r = runner.invoke(app, ["lift", *args, "--out", str(entry), "--workers", "1", "--no-progress"])
        assert r.exit_code == 0, r.output
        assert content_digest(entry) == reference[name], name


# ----------------------------------------------------------------------------------------------
# the run options work for every data set


def test_mocap_lifts_into_and_reuses_a_cache_dir(tmp_path) -> None:
    team = tmp_path / "team"
    first = runner.invoke(app, ["lift", *MOCAP_SMALL, "--cache-dir", str(team)])
    assert first.exit_code == 0 and "wrote" in first.output, first.output
    (entry,) = team.glob("mocap-*.h5")
    second = runner.invoke(app, ["lift", *MOCAP_SMALL, "--cache-dir", str(team)])
    assert second.exit_code == 0 and f"reusing {entry}" in second.output and "wrote" not in second.output
    manifest = open_cache(entry).manifest
    assert entry.name == f"mocap-{cache_fingerprint(manifest)[:16]}.h5"
    other = runner.invoke(app, ["lift", *MOCAP_SMALL, "--cache-dir", str(team), "--split-seed", "3"])
    assert other.exit_code == 0 and "wrote" in other.output
    assert len(list(team.glob("mocap-*.h5"))) == 2
    r = runner.invoke(app, ["lift", *MOCAP_SMALL, "--cache-dir", str(team), "--out", str(tmp_path / "m.h5")])
    assert r.exit_code == 2 and "--cache-dir" in error_line(r)


def test_split_seed_chooses_the_mocap_trial_split(tmp_path) -> None:
    def trials(seed: str) -> tuple[dict, list]:
        out = tmp_path / f"seed{seed}.h5"
        r = runner.invoke(app, ["lift", *MOCAP_SMALL, "--split-seed", seed, "--out", str(out)])
        assert r.exit_code == 0, r.output
        m = open_cache(out).manifest
        return m["splits"]["trials"], [m["params"]["seed"], m["splits"]["seed"]]

    zero, one = trials("0"), trials("1")
    assert zero[1] == [0, 0] and one[1] == [1, 1]
    assert zero[0] != one[0]
    assert sorted(sum(zero[0].values(), [])) == sorted(sum(one[0].values(), []))  # the same four walks


def test_resume_and_workers_for_a_positions_data_set(tmp_path) -> None:
    out = tmp_path / "n.h5"
    args = ["lift", "--dataset", "nbody", "--sims", "4,2,2", "--shard-size", "3", "--out", str(out), "--no-progress"]
    assert runner.invoke(app, [*args, "--workers", "2"]).exit_code == 0
    shards = sorted(out.with_name("n.shards").glob("shard-*.h5"))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards}
    shards[1].write_bytes(b"damaged")
    r = runner.invoke(app, [*args, "--workers", "1", "--resume"])
    assert r.exit_code == 0, r.output
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards}
    assert [after[n][0] == before[n][0] for n in before] == [True] * 3  # the damaged shard is rebuilt, same bytes
    assert after[shards[0].name][1] == before[shards[0].name][1]  # the intact ones are kept


# ----------------------------------------------------------------------------------------------
# the registry's checks


@dataclass(frozen=True)
class ToyConfig(LiftConfig):
    """A data set defined in a notebook: ``size`` triangles."""

    DATASET = "toy"
    size: int = 3

    def recorded_params(self):
        return {"size": self.size, "shard_size": self.shard_size}

    def source_info(self):
        return {"kind": "none", "name": "toy", "fingerprint": "0"}


def _toy_shard(items, config, start, stop, extra=None):
    import numpy as np

    from empcn.lift.assemble import SampleCells, complex_shard

    triangle = SampleCells(
        pos=np.eye(3), edge_index=np.array([[0, 1], [0, 2], [1, 2]]), rings=[(0, 1, 2)], ring_edge=np.array([0, 2, 1])
    )
    rows = {"id": np.arange(start, stop), **({extra: np.zeros(stop - start)} if extra else {})}
    content = complex_shard([triangle] * (stop - start), rows)
    content.attrs.update(skipped=[], summary={})
    return content


def _toy_finish(config, lifted, results, docs=None):
    import numpy as np

    from empcn.lift.pipeline import LiftedSplits

    return LiftedSplits({"train": np.arange(config.size)}, {"cells": {}}, fields=docs or {"sample/id": "(S,) index"})


@pytest.fixture
def toy_spec():
    def spec(**changes) -> DatasetSpec:
        base = dict(
            config=ToyConfig,
            summary="toy triangles",
            options=(Option("size", "Triangles.", int, minimum=1),),
            read=lambda c: LiftInput(None, c.size),
            build_shard=_toy_shard,
            finish=_toy_finish,
            fields=("sample/id",),
            task="positions",
        )
        return DatasetSpec(**{**base, **changes})

    return spec


def test_a_data_set_registered_at_run_time_lifts_through_the_command_line(toy_spec, tmp_path) -> None:
    from functools import partial

    from empcn.lift.pipeline import LiftError

    datasets.DATASETS.register("toy", toy_spec())
    try:
        r = runner.invoke(
            app, ["lift", "--dataset", "toy", "--size", "4", "--out", str(tmp_path / "t.h5"), "--no-progress"]
        )
        assert r.exit_code == 0 and "4 samples" in r.output, r.output
        m = open_cache(tmp_path / "t.h5").manifest
        assert m["task"] == "positions" and m["params"] == {"size": 4, "shard_size": 1000} and "plugin" not in m
        assert (
            m["fields"]["sample/id"] == "(S,) index" and "sample/y" not in m["fields"] and "nodes/z" not in m["fields"]
        )
        assert {"nodes/pos", "edges/length", "rings/area", "nbr/<name>/dist"} <= set(m["fields"])
        r = runner.invoke(app, ["lift", "--dataset", "toy", "--limit", "4"])
        assert r.exit_code == 2 and "--limit is not an option of --dataset toy" in error_line(r)
    finally:
        datasets.DATASETS.unregister("toy")
    config = ToyConfig(out=tmp_path / "u.h5", progress=False)
    with pytest.raises(LiftError, match="data set 'toy' wrote sample/extra, which its spec's fields do not declare"):
        datasets.lift(config, toy_spec(build_shard=partial(_toy_shard, extra="extra")))
    with pytest.raises(LiftError, match="no documentation for sample/extra"):
        datasets.lift(
            config, toy_spec(build_shard=partial(_toy_shard, extra="extra"), fields=("sample/id", "sample/extra"))
        )
    with pytest.raises(LiftError, match="documents sample/y, which its spec's fields do not declare"):
        datasets.lift(config, toy_spec(finish=partial(_toy_finish, docs={"sample/id": "i", "sample/y": "y"})))
    assert not (tmp_path / "u.h5").exists()


def test_a_spec_is_checked_when_it_is_made(toy_spec) -> None:
    assert toy_spec().name == "toy" and [o.flag for o in toy_spec().run_options][-1] == "--progress"
    with pytest.raises(ValueError, match="--width set no field of ToyConfig"):
        toy_spec(options=(Option("width", "Width.", int),))
    with pytest.raises(ValueError, match="other than the run options"):
        toy_spec(options=(Option("workers", "Workers.", int),))
    with pytest.raises(ValueError, match="not 'group/array'"):
        toy_spec(fields=("id",))
    with pytest.raises(ValueError, match="task"):
        toy_spec(task="Positions!")
    with pytest.raises(TypeError, match="LiftConfig"):
        toy_spec(config=dict)
    with pytest.raises(RegistryError, match="not a valid data set"):
        datasets.DATASETS.register("toy", object())
    datasets.DATASETS.register("toy", toy_spec())
    datasets.DATASETS.register("other", toy_spec())
    try:
        assert "toy" in datasets.DATASETS.names() and datasets.DATASETS.origin("toy").kind == "runtime"
        with pytest.raises(RegistryError, match="built in"):
            datasets.DATASETS.register("qm9", toy_spec(), replace=True)
        with pytest.raises(RegistryError, match=r"data set 'other' \(runtime\): its config says it is 'toy'"):
            datasets.dataset("other")
    finally:
        datasets.DATASETS.unregister("toy")
        datasets.DATASETS.unregister("other")


def test_run_options_are_validated_once_for_every_config(tmp_path) -> None:
    from empcn.lift.nbody import NBodyLiftConfig
    from empcn.lift.pipeline import LiftError
    from empcn.lift.qm9 import QM9LiftConfig

    assert QM9LiftConfig().out == Path("data/qm9.h5") and QM9LiftConfig().shard_size == 4096
    assert NBodyLiftConfig(out=str(tmp_path / "n.h5")).out == tmp_path / "n.h5"
    with pytest.raises(LiftError, match="qm9 lift: shard_size and workers must be positive"):
        QM9LiftConfig(workers=0)
    with pytest.raises(LiftError, match="nbody lift: strict does not apply"):
        NBodyLiftConfig(strict=True)
    with pytest.raises(LiftError, match="exclude each other"):
        QM9LiftConfig(out=tmp_path / "q.h5", cache_dir=tmp_path)
    with pytest.raises(LiftError, match="--scheduler"):
        NBodyLiftConfig(scheduler="nowhere")
