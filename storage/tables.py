"""The Delta tables of a store: reading (also at a past version) and the three writes.

Every write is one Delta commit: an append, a replace of the rows matching a
predicate (``replaceWhere``), or an upsert by key (``MERGE``). deltalake is
imported inside the functions: it is slow to import and a CLI that never
touches a table should not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from convoice.storage.location import Location, arrow_filesystem
from convoice.storage.schema import conform

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

TABLES = ("recordings", "clips", "speakers", "skipped", "labels", "vocabulary")
REVIEW_TABLES = ("speaker_merges", "review_contributions", "review_log")
"""Written by review pulls only (see :mod:`convoice.storage.review_state`)."""
IDENTITY_TABLES = ("speaker_changes",)
"""Written by registry consolidation (see :mod:`convoice.storage.identity`)."""

PARTITIONS: dict[str, list[str]] = {
    # One recording's clips are written, and replaced, together: with a
    # partition per recording, replacing them rewrites no other recording's files.
    "clips": ["recording_id"],
    # A MERGE rewrites every file holding a matched row; hash buckets bound
    # that to a 64th of the registry instead of all of it.
    "speakers": ["bucket"],
}
# ``vocabulary``: the words Whisper got wrong, per channel (:mod:`convoice.storage.vocabulary`).


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal for a Delta predicate."""
    return "'" + value.replace("'", "''") + "'"


class Tables:
    """The store's Delta tables under ``<root>/tables/<name>``."""

    def __init__(self, location: Location) -> None:
        self.location = location

    def uri(self, name: str) -> str:
        known = TABLES + REVIEW_TABLES + IDENTITY_TABLES
        if name not in known:
            raise ValueError(f"unknown table {name!r}; tables: {', '.join(known)}")
        return self.location.uri(f"tables/{name}")

    def _options(self) -> dict[str, str] | None:
        return self.location.storage_options or None

    def open(self, name: str, version: int | None = None) -> DeltaTable | None:
        """The Delta table ``name`` (at ``version``), or None when nothing was written yet."""
        from deltalake import DeltaTable

        uri = self.uri(name)
        if not DeltaTable.is_deltatable(uri, storage_options=self._options()):
            if version is not None:
                raise ValueError(f"table {name} has no version {version}: it does not exist yet")
            return None
        return DeltaTable(uri, version=version, storage_options=self._options())

    def version(self, name: str) -> int | None:
        """The latest version of table ``name``; None when it does not exist."""
        table = self.open(name)
        return None if table is None else int(table.version())

    def _filesystem(self, name: str) -> pafs.FileSystem | None:
        """A native Arrow filesystem rooted at the table, when one is known to work.

        deltalake's default is a Python-implemented filesystem whose reader
        threads can abort the interpreter at exit; local tables, and S3 ones
        (configured from the same storage options), use Arrow's own instead.
        """
        import pyarrow.fs as pafs

        if self.location.is_local:
            return pafs.SubTreeFileSystem(self.uri(name), pafs.LocalFileSystem())
        found = arrow_filesystem(self.uri(name), self.location.storage_options)
        return None if found is None else pafs.SubTreeFileSystem(found[1], found[0])

    def read(
        self,
        name: str,
        schema: pa.Schema,
        version: int | None = None,
        columns: list[str] | None = None,
        where: tuple[str, str] | None = None,
    ) -> pa.Table:
        """Table ``name`` (at ``version``) as Arrow with ``schema``; empty when absent.

        ``where=(column, value)`` keeps the rows whose ``column`` equals
        ``value``, and skips the files whose statistics rule it out.
        """
        wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        delta = self.open(name, version)
        if delta is None:
            return wanted.empty_table()
        present = set(delta.schema().to_arrow().names)
        dataset = delta.to_pyarrow_dataset(
            filesystem=self._filesystem(name),
            file_pruning_predicate=None
            if where is None
            else f"{where[0]} = {sql_string(where[1])}",
        )
        row_filter = None if where is None else pc.field(where[0]) == where[1]
        read_columns = [c for c in wanted.names if c in present]
        return conform(dataset.to_table(columns=read_columns, filter=row_filter), wanted)

    def batches(
        self, name: str, schema: pa.Schema, columns: list[str], rows: int = 65_536
    ) -> Iterator[pa.Table]:
        """Table ``name`` (latest version), ``columns`` of ``schema``, a slice of rows at a time.

        For a pass over a large table in bounded memory (consolidation's split
        step reads every clip's embedding this way).
        """
        wanted = pa.schema([schema.field(c) for c in columns])
        delta = self.open(name)
        if delta is None:
            return
        present = set(delta.schema().to_arrow().names)
        dataset = delta.to_pyarrow_dataset(filesystem=self._filesystem(name))
        read_columns = [c for c in wanted.names if c in present]
        held: list[pa.RecordBatch] = []  # small row groups gathered into slices of ``rows``
        for batch in dataset.to_batches(columns=read_columns, batch_size=rows):
            held.append(batch)
            if sum(b.num_rows for b in held) >= rows:
                yield conform(pa.Table.from_batches(held), wanted)
                held = []
        if any(b.num_rows for b in held):
            yield conform(pa.Table.from_batches(held), wanted)

    def distinct(self, name: str, schema: pa.Schema, columns: list[str]) -> pa.Table:
        """The distinct rows of ``columns`` of table ``name`` (latest version), as ``schema`` types.

        Deduplicated by the Delta engine itself (DataFusion, in Rust, reading only
        those columns), not by turning every file into a pyarrow fragment and every
        row into Arrow first: for the clips of a million-clip store that is about
        0.7 s of CPU instead of 4 s. Empty when the table does not exist.
        """
        wanted = pa.schema([schema.field(c) for c in columns])
        quoted = ", ".join(f'"{c}"' for c in columns)
        found = self.query(f'SELECT DISTINCT {quoted} FROM "{name}"', [name], wanted)
        if found is not None:
            return found
        if self.open(name) is None:
            return wanted.empty_table()
        rows = self.read(name, schema, columns=columns)  # written before a column existed
        return rows.group_by(columns, use_threads=False).aggregate([]).select(columns)

    def query(self, sql: str, names: list[str], wanted: pa.Schema) -> pa.Table | None:
        """``sql`` over the tables ``names`` (each registered under its name), by the Delta engine.

        Returns ``wanted``'s columns; None when a table does not exist or lacks a
        column ``wanted`` names (a store written before it: the caller reads instead).
        """
        from deltalake import QueryBuilder

        builder = QueryBuilder()
        columns: set[str] = set()
        for name in names:
            delta = self.open(name)
            if delta is None:
                return None
            columns |= set(delta.schema().to_arrow().names)
            builder = builder.register(name, delta)
        if not set(wanted.names) <= columns:
            return None
        found = builder.execute(sql)
        return conform(pa.RecordBatchReader.from_stream(found).read_all(), wanted)

    def scan(self, name: str, schema: pa.Schema) -> pa.Table:
        """Every row of table ``name`` (latest version) as ``schema``, read by the Delta engine.

        The same rows as :meth:`read` without a version or filter, read by DataFusion
        (the registry of 100k speakers: about 0.25 s of CPU instead of 0.6 s).
        """
        from deltalake import QueryBuilder

        delta = self.open(name)
        if delta is None:
            return schema.empty_table()
        found = QueryBuilder().register("t", delta).execute("SELECT * FROM t")
        return conform(pa.RecordBatchReader.from_stream(found).read_all(), schema)

    def append(self, name: str, data: pa.Table) -> None:
        """Add ``data``'s rows to table ``name`` (created on first write)."""
        from deltalake import write_deltalake

        write_deltalake(
            self.uri(name),
            data,
            mode="append",
            partition_by=PARTITIONS.get(name),
            schema_mode="merge",
            storage_options=self._options(),
        )

    def replace_where(self, name: str, data: pa.Table, predicate: str) -> None:
        """Replace the rows matching ``predicate`` by ``data``, in one commit.

        Every row of ``data`` must match ``predicate``.
        """
        from deltalake import write_deltalake

        write_deltalake(
            self.uri(name),
            data,
            mode="overwrite",
            predicate=predicate,
            partition_by=PARTITIONS.get(name),
            schema_mode="merge",
            storage_options=self._options(),
        )

    def delete(self, name: str, predicate: str) -> None:
        """Delete the rows matching ``predicate`` (nothing when the table does not exist)."""
        table = self.open(name)
        if table is not None:
            table.delete(predicate)

    def upsert(self, name: str, data: pa.Table, key: str) -> None:
        """Update the rows whose ``key`` is in ``data`` (all columns), insert the others.

        Keys must be unique in ``data``; partition columns join the match so
        that only the partitions of ``data`` are touched.
        """
        table = self.open(name)
        if table is None:
            self.append(name, data)
            return
        on = [key, *PARTITIONS.get(name, [])]
        (
            table.merge(
                source=data,
                predicate=" AND ".join(f"target.{c} = source.{c}" for c in on),
                source_alias="source",
                target_alias="target",
                merge_schema=True,
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
