"""The HDF5 cache: the one module that writes and reads it (the contract between ``lift`` and ``train``).

Layout (``docs/cache-format.md`` is the full description):

* ``<name>.h5`` — the entry file: attribute ``format``/``format_version``, a JSON ``manifest``
  dataset, ``splits/<name>`` sample-index arrays, and ``shards/<k>`` HDF5 external links to
* ``<name>.shards/shard-<k>.h5`` — shard files. Each holds *groups* of ragged per-sample data stored
  CSR-style: a group has ``offsets`` (S+1,) int64 and member arrays whose first axis is
  ``offsets[-1]``; the rows ``offsets[s]:offsets[s+1]`` belong to sample ``s`` of the shard. Index
  arrays carry an ``indexes`` attribute naming the group(s) they index, so a reader can check them.

Everything is little-endian fixed-width (no pickles, no variable-length strings in data), built in
memory and written as a new temporary file renamed into place (:mod:`empcn.files`), and bytes are
reproducible: same content, same file. Files are immutable once renamed, so any number of readers
can open them at once (no HDF5 locks).

A cache is exactly its entry file and the regular files inside its shards folder: every read checks
that the manifest's shard paths stay in that folder, that each file is a regular file (never a link,
FIFO or device), and that no HDF5 object keeps its data outside its file (external storage, external
or soft links, virtual datasets) — the only exception being the entry file's own links to its shards.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import io
import json
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import h5py
import numpy as np

from empcn import files
from empcn.errors import EmpcnError
from empcn.schema import (
    EDGE_INDEX,
    NODE_GROUP,
    RING_SIZE,
    SAMPLE_GROUP,  # re-exported: the group with one row per sample
    SLOT_NODE,
)

FORMAT_NAME = "empcn-cache"
#: The format this empcn writes. 2 = 1 plus the entry file's ``manifest_sha256`` attribute.
FORMAT_VERSION = 2
#: Formats this empcn reads. Version 1 (no manifest checksum) is read with the same shard checks;
#: its manifest can only be checked structurally (``cache verify`` says so; re-lift to protect it).
READABLE_VERSIONS = (1, 2)

# Compression: gzip level 1 is deterministic, ~4x smaller than raw, and decompresses fastest of the
# standard HDF5 filters we measured (shuffle or higher levels save ~15% more space but read ~40% slower).
_COMPRESSION = {"compression": "gzip", "compression_opts": 1}
_CHUNK_ROWS_BYTES = 1 << 20  # ~1 MiB chunks


def compression_settings() -> dict[str, Any]:
    """The HDF5 filter settings shards are written with (part of a lift's identity for --resume)."""
    return dict(_COMPRESSION)


class CacheError(EmpcnError):
    """A cache that cannot be used: missing, wrong format version, failed checksum, damaged HDF5.

    The message is one line and starts with the file it concerns. Public as ``empcn.CacheError``.
    """


#: What h5py / HDF5 / JSON decoding raise on damaged files (HDF5 errors surface as RuntimeError too).
_DECODE_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError)


def _reason(exc: BaseException) -> str:
    """``exc`` as a short one-line reason."""
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text[:160]}"


@dataclass
class RaggedGroup:
    """Per-sample ragged arrays sharing one offsets vector.

    offsets: (S+1,) int64, non-decreasing, offsets[0] == 0; arrays: name -> (offsets[-1], ...) array.
    indexes: name -> tuple of group names that the array's last-axis columns index (local indices);
    a 1-D index array names one group.
    """

    offsets: np.ndarray
    arrays: dict[str, np.ndarray]
    indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class ShardContent:
    """Everything one shard file holds: groups by path (e.g. ``"nodes"``, ``"nbr/0_1"``) and attributes."""

    groups: dict[str, RaggedGroup]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(len(self.groups[SAMPLE_GROUP].offsets) - 1)

    def has(self, name: str) -> bool:
        """Whether the shard stores the field ``name`` (a schema name, ``"group/array"``: ``"nodes/z"``)."""
        group, _, array = name.rpartition("/")
        return group in self.groups and array in self.groups[group].arrays

    def array(self, name: str) -> np.ndarray:
        """The stored array of the field ``name`` (``"group/array"``), every row of the shard; KeyError if absent."""
        group, _, array = name.rpartition("/")
        return self.groups[group].arrays[array]

    def offsets(self, name: str) -> np.ndarray:
        """(S + 1,) row offsets per sample of the group holding the field ``name``."""
        return np.asarray(self.groups[name.rpartition("/")[0]].offsets, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# paths, hashing, atomic writes


def shard_dir(entry: Path) -> Path:
    """Folder beside the entry file that holds its shards: ``data/qm9.h5`` -> ``data/qm9.shards``."""
    entry = Path(entry)
    return entry.with_name(entry.stem + ".shards")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def _shard_file_problem(file: str) -> str | None:
    """Why a manifest's shard path is not ``<shards folder>/<file name>``, or None."""
    parts = file.split("/")
    if file.startswith("/") or PurePosixPath(file).is_absolute():
        return "is an absolute path"
    if ".." in parts:
        return "leaves the shards folder"
    if len(parts) != 2 or any(part in ("", ".") for part in parts) or "\\" in file or "\x00" in file:
        return "is not a file inside the shards folder"
    return None


def shards_folder(entry: Path, recorded: str | None = None) -> Path:
    """The folder holding the shards of the entry file ``entry``.

    ``<stem>.shards`` beside the entry file, looked for first beside the file a symbolic link
    ``entry`` leads to (``data/qm9.h5 → /shared/caches/qm9.h5`` reads ``/shared/caches/qm9.shards``),
    then under the folder name the manifest recorded (``recorded``): a cache renamed as a pair
    (``qm9.h5`` + ``qm9.shards`` → ``u0.h5`` + ``u0.shards``) and an entry file copied alone beside
    its original's shards both read. The shards' sha256 in the manifest decide whether they are its own.
    """
    entry = Path(entry)
    real = Path(os.path.realpath(entry))
    candidates = [shard_dir(real)]
    if recorded:
        candidates.append(real.parent / recorded)
    candidates.append(shard_dir(entry))
    if recorded:
        candidates.append(entry.parent / recorded)
    return next((c for c in candidates if c.is_dir()), candidates[0])


def shard_paths(entry: Path, manifest: Mapping[str, Any]) -> list[Path]:
    """The shard files of a checked manifest (``_check_manifest``), in order, inside :func:`shards_folder`."""
    shards = manifest.get("shards", [])
    if not shards:
        return []
    folder = shards_folder(entry, PurePosixPath(shards[0]["file"]).parts[0])
    return [folder / PurePosixPath(meta["file"]).name for meta in shards]


def check_self_contained(f: h5py.File, path: Path, entry: bool = False) -> None:
    """CacheError unless every object of the open HDF5 file ``f`` keeps its data inside the file.

    Refused before any data is read: datasets stored in external files or virtual (data mapped from
    other files), external links (an entry file's ``shards/<k>`` links excepted: for ``h5ls`` only,
    readers never follow them), soft and user-defined links (empcn writes none). A checksum covers
    only the file's own bytes, so data living elsewhere could change under an intact digest.
    """
    problems: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.HardLink):
            obj = f[name]
            if isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    problems.append(f"dataset '{name}' is virtual (its data lives in other files)")
                elif obj.id.get_create_plist().get_external_count():
                    problems.append(f"dataset '{name}' keeps its data in an external file")
        elif isinstance(link, h5py.ExternalLink):
            if not (entry and PurePosixPath(name).parent == PurePosixPath("shards")):
                problems.append(f"'{name}' is an external link to {link.filename}")
        else:
            problems.append(f"'{name}' is a {type(link).__name__.lower()} (empcn writes none)")
        return None

    f.visititems_links(visit)
    if problems:
        raise CacheError(f"{path}: {problems[0]}; a cache file must hold all its data itself")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of the regular file ``path`` (a link, FIFO or device is refused, never read)."""
    return hashlib.sha256(files.read_regular(Path(path))).hexdigest()


def file_mode() -> int:
    """The mode a new regular file gets under the process umask (0o644 under the usual 022)."""
    return files.file_mode()


def temporary_beside(path: Path) -> Path:
    """A new empty file ``.<name>.<random>.tmp`` in ``path``'s folder, mode as :func:`file_mode`
    (created new, never through a link: :func:`empcn.files.new_temporary`)."""
    fd, tmp = files.new_temporary(Path(path))
    os.close(fd)
    return tmp


def _hdf5_image(write: Any) -> bytes:
    """The bytes of an HDF5 file built in memory by ``write(h5py.File)`` (nothing touches the disk).

    The image is taken after a flush, before the file is closed: the same bytes HDF5 writes to a
    file on disk (tested against the files earlier versions wrote), so a full disk can only fail the
    plain write of these bytes afterwards, never HDF5 half-way through a file.
    """
    name = f"empcn-{uuid.uuid4().hex}.h5"  # an in-memory file's name only has to be unique in this process
    with h5py.File(name, "w", driver="core", backing_store=False, libver=("earliest", "v110")) as f:
        write(f)
        f.flush()
        return bytes(f.id.get_file_image())


def _le(array: np.ndarray) -> np.ndarray:
    """Little-endian, C-contiguous copy of ``array`` where needed (the on-disk byte order)."""
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and np.little_endian is False):
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


def _write_array(group: h5py.Group, name: str, array: np.ndarray) -> h5py.Dataset:
    array = _le(array)
    if array.size == 0 or array.nbytes < 4096:
        return group.create_dataset(name, data=array)
    row_bytes = max(1, array.nbytes // max(1, array.shape[0]))
    rows = int(min(array.shape[0], max(1, _CHUNK_ROWS_BYTES // row_bytes)))
    return group.create_dataset(name, data=array, chunks=(rows, *array.shape[1:]), **_COMPRESSION)


def _json_attr(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------------------------
# shards


def write_shard(path: Path, content: ShardContent) -> str:
    """Write ``content`` to ``path`` atomically (temporary file + rename); return its sha256."""
    path = Path(path)
    check_shard_content(content, where=str(path))

    def write(f: h5py.File) -> None:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        for key in sorted(content.attrs):
            f.attrs[key] = _json_attr(content.attrs[key])
        # Where HDF5 puts a dataset's chunks depends on when they leave its chunk cache, i.e. when
        # the dataset is closed, which is when Python frees it, unless something else still holds
        # it (a sampling profiler such as Dask's, a debugger). The flushes below fix that moment
        # where CPython's reference counting put it (one array is flushed once the next exists),
        # so the bytes depend on nothing else.
        previous = None
        for gname in sorted(content.groups):
            group = content.groups[gname]
            g = f.create_group(gname)
            _write_array(g, "offsets", np.asarray(group.offsets, dtype=np.int64)).flush()
            for aname in sorted(group.arrays):
                ds = _write_array(g, aname, group.arrays[aname])
                if previous is not None:
                    previous.flush()
                previous = ds
                if aname in group.indexes:
                    ds.attrs["indexes"] = ",".join(group.indexes[aname])
        if previous is not None:
            previous.flush()

    image = _hdf5_image(write)
    files.write_atomic(path, image)
    return hashlib.sha256(image).hexdigest()


def digest_path(shard: Path) -> Path:
    """``shard-00000.h5`` -> ``shard-00000.h5.sha256``: the lift's record of a shard's digest.

    Written beside every shard once it is renamed into place; ``lift --resume`` keeps a shard only
    if its bytes still hash to it (readers never use it: the manifest holds the digests they check).
    """
    shard = Path(shard)
    return shard.with_name(shard.name + ".sha256")


def write_digest(shard: Path, digest: str) -> None:
    """Record ``digest`` for ``shard`` (atomically, like every file of the cache)."""
    files.write_text_atomic(digest_path(shard), digest + "\n")


def recorded_digest(shard: Path) -> str | None:
    """The digest :func:`write_digest` recorded for ``shard``, or None when absent or unreadable."""
    try:
        text = files.read_regular(digest_path(shard)).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def read_shard(path: Path, sha256: str | None = None, version: int | None = None) -> ShardContent:
    """Load a whole shard into memory (the fast way to read: one sequential pass, then numpy slicing).

    ``sha256``: the digest the manifest records; the file's bytes are hashed as they are read and a
    mismatch raises CacheError (damage never reads back as data). ``version``: the entry file's
    format version, which the shard's must equal. Any HDF5 or decoding failure is a CacheError
    naming the file.
    """
    path = Path(path)
    try:
        data = files.read_regular(path)  # never a link, FIFO or device; never blocks
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise CacheError(f"{path}: sha256 mismatch (shard changed or damaged since the lift); lift it again")
        with h5py.File(io.BytesIO(data), "r") as f:
            check_self_contained(f, path)
            if f.attrs.get("format") != FORMAT_NAME:
                raise CacheError(f"{path}: not an {FORMAT_NAME} shard")
            found = int(f.attrs.get("format_version", -1))
            wanted = READABLE_VERSIONS if version is None else (version,)
            if found not in wanted:
                raise CacheError(f"{path}: shard format version {found}, expected {' or '.join(map(str, wanted))}")
            attrs = {k: json.loads(v) for k, v in f.attrs.items() if k not in ("format", "format_version")}
            groups: dict[str, RaggedGroup] = {}

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Group) and "offsets" in obj:
                    arrays, indexes = {}, {}
                    for aname, ds in obj.items():
                        if aname == "offsets" or not isinstance(ds, h5py.Dataset):
                            continue
                        arrays[aname] = ds[()]
                        if "indexes" in ds.attrs:
                            indexes[aname] = tuple(str(ds.attrs["indexes"]).split(","))
                    groups[name] = RaggedGroup(obj["offsets"][()], arrays, indexes)

            f.visititems(visit)
    except CacheError:
        raise
    except FileNotFoundError:
        raise CacheError(f"{path}: missing shard (deleted or moved?); lift it again") from None
    except files.NotRegularFile as exc:
        raise CacheError(f"{path}: {exc.what}, not a shard file (a cache holds only regular files)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheError(f"{path}: a symbolic link, not a shard file (a cache holds only regular files)") from None
        raise CacheError(f"{path}: unreadable shard ({_reason(exc)})") from None
    except _DECODE_ERRORS as exc:
        raise CacheError(f"{path}: unreadable shard ({_reason(exc)})") from None
    if SAMPLE_GROUP not in groups:
        raise CacheError(f"{path}: shard has no '{SAMPLE_GROUP}' group")
    return ShardContent(groups, attrs)


def check_shard_content(content: ShardContent, where: str) -> None:
    """Structural checks: offsets well formed, array lengths agree, indices in range, floats finite.

    Raises CacheError naming ``where`` and the first fault.
    """
    if SAMPLE_GROUP not in content.groups:
        raise CacheError(f"{where}: no '{SAMPLE_GROUP}' group")
    num = content.num_samples
    counts: dict[str, np.ndarray] = {}
    for gname, group in content.groups.items():
        off = np.asarray(group.offsets)
        if off.ndim != 1 or len(off) != num + 1 or off[0] != 0 or np.any(np.diff(off) < 0):
            raise CacheError(f"{where}: group '{gname}' has malformed offsets")
        counts[gname] = np.diff(off)
        for aname, arr in group.arrays.items():
            if arr.shape[0] != off[-1]:
                raise CacheError(f"{where}: '{gname}/{aname}' has {arr.shape[0]} rows, offsets say {int(off[-1])}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise CacheError(f"{where}: '{gname}/{aname}' holds NaN or inf")
    for gname, group in content.groups.items():
        owner = np.repeat(np.arange(num), counts[gname])
        for aname, targets in group.indexes.items():
            arr = group.arrays[aname]
            cols = arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:], dtype=np.int64)))
            if cols.shape[1] != len(targets) and len(targets) != 1:
                raise CacheError(f"{where}: '{gname}/{aname}' names {len(targets)} indexed groups")
            for c in range(cols.shape[1]):
                target = targets[c] if len(targets) > 1 else targets[0]
                if target not in counts:
                    raise CacheError(f"{where}: '{gname}/{aname}' indexes missing group '{target}'")
                limit = counts[target][owner]
                col = cols[:, c]
                if np.any(col < 0) or np.any(col >= limit):
                    raise CacheError(f"{where}: '{gname}/{aname}' has indices out of range of '{target}'")


# ----------------------------------------------------------------------------------------------
# entry file


def write_entry(
    entry: Path, manifest: dict[str, Any], splits: Mapping[str, np.ndarray], shard_files: list[str]
) -> None:
    """Write the entry file atomically: manifest JSON, split index arrays, external links to shards."""
    entry = Path(entry)

    def write(f: h5py.File) -> None:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        text = json.dumps(manifest, sort_keys=True, indent=1).encode("utf-8")
        f.attrs["manifest_sha256"] = hashlib.sha256(text).hexdigest()
        # flushed at once, whoever holds the datasets (see write_shard)
        f.create_dataset("manifest", data=np.frombuffer(text, dtype=np.uint8)).flush()
        sg = f.create_group("splits")
        for name in sorted(splits):
            _write_array(sg, name, np.asarray(splits[name], dtype=np.int64)).flush()
        links = f.create_group("shards")
        for k, rel in enumerate(shard_files):
            links[f"{k:05d}"] = h5py.ExternalLink(rel, "/")

    files.write_atomic(entry, _hdf5_image(write))


def _read_entry(entry: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Manifest and splits of an entry file, every integrity check of the entry file done.

    Checked: it is an entry file (not a folder, not a shard), its one ``format_version`` is readable
    and equals the manifest's, the manifest's sha256 (format 2), the manifest's structure.
    """
    entry = Path(entry)
    if entry.is_dir():
        raise CacheError(f"{entry}: a folder, not a cache entry file (pass the .h5 file beside the .shards folder)")
    if not entry.exists():
        raise CacheError(f"{entry}: no such cache (run `empcn lift` first)")
    try:
        data = files.read_regular(entry, follow=True)  # a link to the entry file is fine; a FIFO is not
        with h5py.File(io.BytesIO(data), "r") as f:
            check_self_contained(f, entry, entry=True)
            if f.attrs.get("format") != FORMAT_NAME:
                raise CacheError(f"{entry}: not an {FORMAT_NAME} file")
            if "manifest" not in f and "offsets" in f.get(SAMPLE_GROUP, {}):
                raise CacheError(
                    f"{entry}: a shard file, not a cache entry file (pass the .h5 file beside its .shards folder)"
                )
            version = int(f.attrs.get("format_version", -1))
            if version not in READABLE_VERSIONS:
                raise CacheError(
                    f"{entry}: cache format version {version}, this empcn reads version(s) "
                    f"{', '.join(map(str, READABLE_VERSIONS))}; lift it again"
                )
            raw = bytes(f["manifest"][()])
            if version >= 2:
                recorded = f.attrs.get("manifest_sha256")
                if not isinstance(recorded, str) or hashlib.sha256(raw).hexdigest() != recorded:
                    raise CacheError(
                        f"{entry}: manifest checksum mismatch (entry file changed or damaged); lift it again"
                    )
            manifest = json.loads(raw.decode("utf-8"))
            splits = {name: np.asarray(ds[()], dtype=np.int64) for name, ds in f["splits"].items()}
    except CacheError:
        raise
    except files.NotRegularFile as exc:
        raise CacheError(f"{entry}: {exc.what}, not a cache entry file") from None
    except _DECODE_ERRORS as exc:
        raise CacheError(f"{entry}: unreadable cache entry file ({_reason(exc)})") from None
    _check_manifest(entry, manifest, version)
    return manifest, splits


def _check_manifest(entry: Path, manifest: Any, version: int) -> None:
    """The manifest keys every reader relies on, with their types; CacheError naming the first fault."""

    def bad(what: str) -> CacheError:
        return CacheError(f"{entry}: malformed manifest ({what})")

    if not isinstance(manifest, dict):
        raise bad("not a JSON object")
    if manifest.get("format") != FORMAT_NAME:
        raise bad(f"format {manifest.get('format')!r}")
    if manifest.get("format_version") != version:
        raise CacheError(
            f"{entry}: manifest says format version {manifest.get('format_version')!r}, the file says {version}"
        )
    counts = manifest.get("counts")
    if not isinstance(counts, dict) or not isinstance(counts.get("samples"), int) or counts["samples"] < 0:
        raise bad("counts.samples")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise bad("shards is not a list")
    expected = 0
    for k, meta in enumerate(shards):
        if not isinstance(meta, dict):
            raise bad(f"shards[{k}] is not an object")
        rng = meta.get("samples")
        if (
            not isinstance(meta.get("file"), str)
            or not isinstance(meta.get("sha256"), str)
            or not isinstance(rng, list)
            or len(rng) != 2
            or not all(isinstance(v, int) for v in rng)
        ):
            raise bad(f"shards[{k}]")
        if rng[0] != expected or rng[1] < rng[0]:
            raise bad(f"shards[{k}] covers samples {rng}, expected to start at {expected}")
        problem = _shard_file_problem(meta["file"])
        if problem:
            raise CacheError(
                f"{entry}: manifest's shards[{k}] file {meta['file']!r} {problem}; a cache is its "
                "entry file and the files inside its shards folder"
            )
        expected = rng[1]
    if len({PurePosixPath(m["file"]).parts[0] for m in shards}) > 1:
        raise bad("shard files in more than one folder")
    if expected != counts["samples"]:
        raise bad(f"shards hold {expected} samples, counts say {counts['samples']}")
    targets = manifest.get("targets")
    if targets is not None:
        if not isinstance(targets, dict) or not isinstance(targets.get("names", []), list):
            raise bad("targets")


# ----------------------------------------------------------------------------------------------
# reading


class Sample(dict):
    """One sample: ``"group/array"`` keys for every stored array, plus dataset-level conveniences.

    QM9: ``pos`` (N,3) float32 Å, ``z`` (N,) uint8, ``edges`` (E,2) atom indices, ``rings`` (list of
    atom-index tuples in cyclic order), ``y`` (target name -> float, manifest units), ``id``.
    """


class Cache:
    """Read-only view of a lifted cache. ``len(cache)``, ``cache[i]``, ``cache.manifest``, ``cache.splits``.

    Shards are loaded whole on first use (an LRU of ``max_shards_in_memory``); sample access is then
    numpy slicing. Opening is cheap and safe in many processes at once; open it *after* forking.
    """

    def __init__(self, path: Path | str, max_shards_in_memory: int = 2) -> None:
        self.path = Path(path)
        self.manifest, self.splits = _read_entry(self.path)
        self.format_version = int(self.manifest["format_version"])
        self._shard_paths = shard_paths(self.path, self.manifest)
        shards = self.manifest["shards"]
        self._starts = [int(s["samples"][0]) for s in shards]
        self._stops = [int(s["samples"][1]) for s in shards]
        self._max = max(1, max_shards_in_memory)
        self._loaded: OrderedDict[int, ShardContent] = OrderedDict()
        self._targets: list[str] = list(self.manifest.get("targets", {}).get("names", []))

    # -- sizes ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.manifest["counts"]["samples"])

    @property
    def num_shards(self) -> int:
        return len(self._starts)

    def shard_range(self, k: int) -> tuple[int, int]:
        """Global sample indices [start, stop) held by shard ``k``."""
        return self._starts[k], self._stops[k]

    def shard_path(self, k: int) -> Path:
        """Shard ``k``'s file, inside the cache's shards folder (:func:`shard_paths`)."""
        return self._shard_paths[k]

    # -- access -----------------------------------------------------------------------------
    def shard(self, k: int) -> ShardContent:
        """Shard ``k`` fully in memory."""
        if k in self._loaded:
            self._loaded.move_to_end(k)
            return self._loaded[k]
        meta = self.manifest["shards"][k]
        content = read_shard(self.shard_path(k), sha256=meta["sha256"], version=self.format_version)
        if content.num_samples != self._stops[k] - self._starts[k]:
            raise CacheError(f"{self.shard_path(k)}: holds {content.num_samples} samples, manifest says otherwise")
        self._loaded[k] = content
        while len(self._loaded) > self._max:
            self._loaded.popitem(last=False)
        return content

    def locate(self, index: int) -> tuple[int, int]:
        """(shard, row within shard) of global sample ``index``."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"sample {index} out of range for a cache of {n}")
        k = bisect.bisect_right(self._starts, index) - 1
        return k, index - self._starts[k]

    def __getitem__(self, index: int) -> Sample:
        k, row = self.locate(int(index))
        return sample_from_shard(self.shard(k), row, self._targets)

    def __iter__(self) -> Iterator[Sample]:
        for k in range(self.num_shards):
            content = self.shard(k)
            for row in range(content.num_samples):
                yield sample_from_shard(content, row, self._targets)

    def close(self) -> None:
        self._loaded.clear()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r}, dataset={self.manifest.get('dataset')!r}, samples={len(self)})"


def _slicing_plan(content: ShardContent) -> list[tuple[str, np.ndarray, list[int]]]:
    """(key, array, offsets as a Python list) for every stored array; cached on the shard object."""
    plan = getattr(content, "_plan", None)
    if plan is None:
        plan = []
        for gname, group in content.groups.items():
            offsets = np.asarray(group.offsets).tolist()
            for aname, arr in group.arrays.items():
                plan.append((f"{gname}/{aname}", arr, offsets))
        content._plan = plan  # type: ignore[attr-defined]
    return plan


def _row_values(content: ShardContent) -> dict[str, list]:
    """Per-sample Python values (ids, target rows), converted once per shard."""
    rows = getattr(content, "_rows", None)
    if rows is None:
        arrays = content.groups[SAMPLE_GROUP].arrays
        rows = {}
        if "id" in arrays:
            rows["id"] = arrays["id"].tolist()
        if "y" in arrays:
            rows["y"] = arrays["y"].tolist()
        content._rows = rows  # type: ignore[attr-defined]
    return rows


def sample_from_shard(content: ShardContent, row: int, target_names: list[str] | None = None) -> Sample:
    """Slice sample ``row`` out of an in-memory shard.

    Besides the ``"group/array"`` keys, every node field is also under its array name alone (``pos``,
    ``z``, ``vel``, ``target_pos``, …), and ``edges``, ``rings``, ``id`` and ``y`` as :class:`Sample` says.
    """
    out = Sample()
    for key, arr, offsets in _slicing_plan(content):
        out[key] = arr[offsets[row] : offsets[row + 1]]
    # conveniences shared by every dataset
    if EDGE_INDEX in out:
        out["edges"] = out[EDGE_INDEX]
    if SLOT_NODE in out:
        slots = out[SLOT_NODE].tolist()
        rings, start = [], 0
        for size in out[RING_SIZE].tolist():
            rings.append(tuple(slots[start : start + size]))
            start += size
        out["rings"] = rings
    rows = _row_values(content)
    if "id" in rows:
        out["id"] = rows["id"][row]
    if "y" in rows and target_names:
        out["y"] = dict(zip(target_names, rows["y"][row]))
    prefix = f"{NODE_GROUP}/"
    for key in [k for k in out if k.startswith(prefix) and k.count("/") == 1]:
        out.setdefault(key[len(prefix) :], out[key])
    return out


def open_cache(path: Path | str) -> Cache:
    """Open a lifted cache read-only (``empcn lift`` writes it)."""
    return Cache(path)


# ----------------------------------------------------------------------------------------------
# identity


def lift_fingerprint(
    dataset: str, source_fingerprint: str, params: Mapping[str, Any], version: int = FORMAT_VERSION
) -> str:
    """A cache's identity: sha256 of (data set, source content fingerprint, every lift parameter, format version).

    Two lifts with the same fingerprint write the same cache, so a team can share it by this value
    (``empcn lift --cache-dir``). Computed, not stored: it is derived from the manifest's
    ``dataset``, ``source.fingerprint``, ``params`` and ``format_version`` (:func:`cache_fingerprint`).
    """
    blob = json.dumps(
        {"dataset": dataset, "source": source_fingerprint, "params": dict(params), "format_version": int(version)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cache_fingerprint(manifest: Mapping[str, Any]) -> str:
    """:func:`lift_fingerprint` of a cache, from its manifest."""
    return lift_fingerprint(
        str(manifest.get("dataset", "")),
        str(manifest.get("source", {}).get("fingerprint", "")),
        manifest.get("params", {}),
        int(manifest.get("format_version", -1)),
    )


# ----------------------------------------------------------------------------------------------
# verification and summary


@dataclass
class VerifyReport:
    path: Path
    problems: list[str]
    shards_checked: int
    notes: list[str] = field(default_factory=list)  # not faults: e.g. a format-1 manifest has no checksum

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_cache(path: Path | str, progress: bool = False) -> VerifyReport:
    """Check every shard's sha256 against the manifest, then its structure; collect one line per fault."""
    path = Path(path)
    problems: list[str] = []
    try:
        manifest, splits = _read_entry(path)
    except CacheError as exc:
        return VerifyReport(path, [str(exc)], 0)
    version = int(manifest["format_version"])
    notes = []
    if version < 2:
        notes.append(f"{path}: format {version}: the manifest carries no checksum (lift again to protect it)")
    shards = manifest.get("shards", [])
    total = int(manifest.get("counts", {}).get("samples", -1))
    expected_start = 0
    iterator = shards
    if progress:
        from tqdm import tqdm

        iterator = tqdm(shards, desc="verify", unit="shard")
    checked = 0
    paths = shard_paths(path, manifest)
    for k, meta in enumerate(iterator):
        spath = paths[k]
        start, stop = meta["samples"]
        if start != expected_start:
            problems.append(f"{spath}: sample range starts at {start}, expected {expected_start}")
        expected_start = stop
        what = files.describe_path(spath)
        if what == "missing":
            problems.append(f"{spath}: missing shard")
            continue
        if what is not None:  # never opened: a FIFO would block, /dev/zero never end
            problems.append(f"{spath}: {what}, not a shard file (a cache holds only regular files)")
            continue
        try:
            content = read_shard(spath, sha256=meta["sha256"], version=version)
            check_shard_content(content, str(spath))
            if content.num_samples != stop - start:
                problems.append(f"{spath}: holds {content.num_samples} samples, manifest says {stop - start}")
        except CacheError as exc:
            problems.append(str(exc))
        checked += 1
    if expected_start != total:
        problems.append(f"{path}: shards hold {expected_start} samples, manifest counts {total}")
    for name, idx in splits.items():
        if len(idx) and (idx.min() < 0 or idx.max() >= total):
            problems.append(f"{path}: split '{name}' has sample indices out of range")
        if len(np.unique(idx)) != len(idx):
            problems.append(f"{path}: split '{name}' repeats samples")
    return VerifyReport(path, problems, checked, notes)


def missing_shards(path: Path | str) -> list[Path]:
    """Shard files the manifest lists that are not on disk (a cheap check: no file is read)."""
    path = Path(path)
    manifest, _ = _read_entry(path)
    return [p for p in shard_paths(path, manifest) if files.describe_path(p) is not None]


def cache_size_bytes(path: Path | str) -> int:
    """Bytes on disk of the entry file and all its shards."""
    path = Path(path)
    manifest, _ = _read_entry(path)
    return path.stat().st_size + sum(
        p.lstat().st_size for p in shard_paths(path, manifest) if files.describe_path(p) is None
    )
