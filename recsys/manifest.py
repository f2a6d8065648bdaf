"""The ingest manifest (``_manifest/``, one Parquet file per batch): which reads of which raw files the
lake holds. A batch's manifest file is written last and is its commit (see ``recsys.ingest``).

Each row is one read of one raw file: its path, SHA-256, the digest of the column mapping that read it,
the batch, the file's size and modification time when it was listed, and a status:

- ``done``: read; skipped while its bytes and the mapping are unchanged.
- ``failed``: the read broke off (unreadable, corrupt, a parser error): the rows before the break and one
  quarantine row saying why are kept. Skipped like ``done`` (the same bytes would fail the same way);
  ``recsys ingest --reingest PATH`` reads it again, and new bytes or a new mapping do.
- ``quarantined``: read in an accepted batch but mostly quarantined: read again at each ingest.
- ``rejected``: its batch was rejected: read again at each ingest.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.lake import Lake, write_parquet_atomic
from recsys.listing import RawFile

DONE, FAILED, QUARANTINED, REJECTED = "done", "failed", "quarantined", "rejected"
SKIPPED_STATUSES = (DONE, FAILED)  # a read with one of these is not repeated for the same bytes and mapping

READ = pa.struct([("batch_id", pa.string()), ("path", pa.string())])
MANIFEST_SCHEMA = pa.schema([
    ("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string()), ("rows", pa.int64()),
    ("batch_id", pa.string()), ("ingested_at", pa.timestamp("us", tz="UTC")),
    ("quarantined", pa.int64()),  # of ``rows``
    ("mapping", pa.string()),  # mapping_digest of the mapping that read the file
    ("status", pa.string()),  # done, failed, quarantined or rejected (see the module docstring)
    ("seq", pa.int64()),  # the batch's place in the order of batches
    ("replaces", pa.list_(READ)),  # the earlier reads (batch, path) whose rows this read replaced
    ("obsolete", pa.list_(pa.string())),  # files (relative to the lake) the batch's commit deleted; on its first row
    ("mtime_ns", pa.int64()),  # the file's modification time when listed: with path and size, what lets a later
    # listing take the SHA-256 from here instead of hashing the file again (``listing.Known``)
])


@dataclass(frozen=True)
class ManifestEntry:
    """One read of one raw file, as the manifest records it."""

    path: str
    sha256: str
    batch_id: str
    status: str = DONE
    mapping: str | None = None  # None: written before the manifest recorded mappings; matches any mapping
    seq: int = 0
    replaces: tuple[tuple[str, str], ...] = ()
    obsolete: tuple[str, ...] = ()
    size: int | None = None
    mtime_ns: int | None = None  # None: written before the manifest recorded modification times

    @property
    def read(self) -> tuple[str, str]:
        """How the lake's files know this read's rows: the batch that wrote them and their ``source_file``."""
        return self.batch_id, self.path


def read_manifest(lake: Lake) -> list[ManifestEntry]:
    """Every read the manifest records, manifests written before mappings and statuses included."""
    entries = []
    files = sorted(p for p in lake.manifest.glob("*.parquet") if not p.name.startswith((".", "_"))) \
        if lake.manifest.exists() else []
    for file in files:
        for row in pq.read_table(file).to_pylist():
            entries.append(ManifestEntry(
                row["path"], row["sha256"], row["batch_id"], row.get("status") or DONE, row.get("mapping"),
                row.get("seq") or 0, tuple((r["batch_id"], r["path"]) for r in row.get("replaces") or ()),
                tuple(row.get("obsolete") or ()), row.get("size"), row.get("mtime_ns")))
    return entries


def live_reads(entries: list[ManifestEntry]) -> dict[str, list[ManifestEntry]]:
    """Per SHA-256, the reads whose rows the lake still holds (none replaced them), oldest first."""
    replaced = {read for entry in entries for read in entry.replaces}
    live: dict[str, list[ManifestEntry]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: e.seq):
        if entry.read not in replaced:
            live[entry.sha256].append(entry)
    return dict(live)


def is_settled(reads: list[ManifestEntry], digest: str) -> bool:
    """Whether the latest read of some bytes is done (or failed) under the mapping ``digest``: not read again."""
    latest = reads[-1]
    return latest.status in SKIPPED_STATUSES and latest.mapping in (None, digest)


def known_quarantined(reads: list[ManifestEntry] | None, digest: str) -> bool:
    """Whether the latest read of some bytes, under this same mapping, was an accepted batch's mostly quarantined file."""
    return bool(reads) and reads[-1].status == QUARANTINED and reads[-1].mapping == digest


def known_files(live: dict[str, list[ManifestEntry]]) -> dict[tuple[str, int, int], str]:
    """(path, size, modification time) -> SHA-256 of every live read that recorded them: a file listed again
    with the same three is taken to hold the same bytes and is not hashed again."""
    return {(e.path, e.size, e.mtime_ns): sha for sha, reads in live.items() for e in reads
            if e.size is not None and e.mtime_ns is not None}


def ingested_checksums(lake: Lake) -> set[str]:
    """SHA-256 of the raw files whose latest read is done (under whichever mapping)."""
    return {sha for sha, reads in live_reads(read_manifest(lake)).items() if reads[-1].status == DONE}


def unique_new(found: list[RawFile], live: dict[str, list[ManifestEntry]], digest: str) -> list[RawFile]:
    """Files whose bytes were never read, or not settled under this mapping; a copy under a second name counts once."""
    new: dict[str, RawFile] = {}
    for raw in found:
        reads = live.get(raw.sha256)
        if not (reads and is_settled(reads, digest)) and raw.sha256 not in new:
            new[raw.sha256] = raw
    return list(new.values())


@dataclass(frozen=True)
class BatchManifest:
    """The manifest file of one batch: its commit."""

    files: list[RawFile]
    batch_id: str
    now: dt.datetime
    mapping: str
    seq: int

    def write(self, lake: Lake, per_file: dict[str, tuple[int, int]], replaces: dict[str, set[tuple[str, str]]] | None = None,
              obsolete: list[str] | None = None, quarantined: set[str] = frozenset(), rejected: set[str] = frozenset(),
              failed: set[str] = frozenset()) -> None:
        paths = [str(f.path) for f in self.files]
        replaces = replaces or {}
        status = {p: REJECTED if p in rejected else FAILED if p in failed else QUARANTINED if p in quarantined else DONE
                  for p in paths}
        table = pa.table({
            "path": paths, "size": [f.size for f in self.files], "sha256": [f.sha256 for f in self.files],
            "rows": [per_file.get(p, (0, 0))[0] for p in paths], "batch_id": [self.batch_id] * len(paths),
            "ingested_at": [self.now] * len(paths), "quarantined": [per_file.get(p, (0, 0))[1] for p in paths],
            "mapping": [self.mapping] * len(paths), "status": [status[p] for p in paths],
            "seq": [self.seq] * len(paths),
            "replaces": [[{"batch_id": b, "path": s} for b, s in sorted(replaces.get(p, ()))] for p in paths],
            "obsolete": [sorted(obsolete or ())] + [[] for _ in paths[1:]],
            "mtime_ns": [f.mtime_ns for f in self.files],
        }, schema=MANIFEST_SCHEMA)
        write_parquet_atomic(table, lake.manifest / f"{self.batch_id}.parquet")
