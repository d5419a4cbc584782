"""Read a file of any supported container (CSV, JSON, Parquet; gzip-compressed or not) into an
Arrow table, without interpreting the columns yet (that is :mod:`atx_analysis.normalize`).

The container is recognised from the bytes, not the file name: gzip by its magic number, Parquet
by ``PAR1``, JSON by a leading ``[`` or ``{``; anything else is read as CSV.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .datapath import not_a_file, refuse_url
from .errors import DataFormatError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
# Guards against hostile files (docs/security.md): a file, once decompressed, may be at most
# ``max_bytes`` (the service passes DATA_MAX_BYTES from its Settings; default 1 GiB, about 10x the
# full Austin export), so a gzip bomb or a runaway
# export fails with a clear error instead of exhausting the pod's memory; the header line may be at
# most MAX_HEADER_BYTES. (Checked before parsing: an exception raised from inside pyarrow's reading
# of a Python stream leaves its reader thread hanging.)
DEFAULT_MAX_BYTES = 1 << 30
MAX_HEADER_BYTES = 1 << 20


def check_size(path: Path, compressed: bool, limit: int | None = None) -> None:
    """Refuse a file larger than ``limit`` (DATA_MAX_BYTES), counting decompressed bytes for gzip
    (one streaming pass, about a second per GiB, stopping as soon as the limit is passed)."""
    limit = limit or DEFAULT_MAX_BYTES
    size = path.stat().st_size
    if compressed:
        size = 0
        try:
            with gzip.open(path, "rb") as fh:
                while size <= limit and (chunk := fh.read(1 << 20)):
                    size += len(chunk)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: looks gzip-compressed but cannot be decompressed: {exc}") from None
    if size > limit:
        what = "decompressed, more than" if compressed else f"{size} bytes, more than"
        raise DataFormatError(
            f"{path}: {what} DATA_MAX_BYTES ({limit} bytes); a decompression bomb or "
            f"a runaway export (raise DATA_MAX_BYTES if the data is real)"
        )


@dataclass
class RawData:
    table: pa.Table
    container: str  # "csv", "json" or "parquet", with "+gzip" when compressed
    skipped_lines: int  # CSV lines with the wrong number of fields, skipped and counted


def _open(path: Path, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def sniff(path: Path) -> tuple[str, bool]:
    """Return (container, gzip-compressed?) from the first bytes of the file."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    compressed = head[:2] == GZIP_MAGIC
    if compressed:
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(4096)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: looks gzip-compressed but cannot be decompressed: {exc}") from None
    else:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    if head[:4] == PARQUET_MAGIC:
        return "parquet", compressed
    if head[:4] == ZIP_MAGIC:
        raise zip_refused(path, head)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"[", b"{"):
        return "json", compressed
    return "csv", compressed


ZIP_MAGIC = b"PK\x03\x04"


def zip_refused(path: Path, head: bytes) -> DataFormatError:
    """A ZIP archive is no export the loader reads, and was refused as an undecodable CSV ("'charmap'
    codec can't decode byte 0x8f", "Empty CSV file"): a zipped download, or an Excel workbook
    (.xlsx, itself a ZIP of XML) saved instead of CSV. Say which, and what to do."""
    if b"[Content_Types].xml" in head or b"xl/" in head:
        return DataFormatError(
            f"{path}: an Excel workbook (.xlsx), not a data export: save the sheet as CSV "
            "(File > Save As > CSV UTF-8) and point DATA_PATH at that file"
        )
    return DataFormatError(
        f"{path}: a ZIP archive: unzip it and point DATA_PATH at the CSV or JSON inside "
        "(a gzip-compressed file, .csv.gz, is read as it is)"
    )


def read_raw(path: str | Path, max_bytes: int | None = None) -> RawData:
    refuse_url(path)
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty")
    container, compressed = sniff(path)
    check_size(path, compressed, max_bytes)
    reader = {"csv": _read_csv, "json": _read_json, "parquet": _read_parquet}[container]
    try:
        table, skipped = reader(path, compressed)
    except DataFormatError:
        raise
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError, OSError, EOFError, csv.Error, RecursionError) as exc:
        raise DataFormatError(f"{path}: cannot read as {container}: {exc}") from None
    return RawData(_without_filler_rows(table), container + ("+gzip" if compressed else ""), skipped)


# Encodings a CSV is read in: UTF-8 (the portal's export, with or without a BOM); UTF-16 when it
# starts with its byte-order mark (spreadsheets' "Unicode text"); else Windows-1252, what a
# spreadsheet program on Windows writes when it saves "CSV" (an address with an accent is not UTF-8
# there, and refusing the whole file for it helps nobody).
FALLBACK_ENCODING = "cp1252"
# Separators besides the comma, used only when the header line has no comma at all (a spreadsheet
# set to a European locale saves with ";"; tab-separated exports).
OTHER_DELIMITERS = ("\t", ";")
# Excel's own separator line, ``sep=;`` before the header: what a tool writes so that Excel in any
# locale splits the columns (the file was refused: "unrecognised columns [sep=, ]")
SEP_LINE = re.compile(r'"?sep=(.)"?[\r\n]*', re.I)


def _first_line(path: Path, compressed: bool, encoding: str, skip: int = 0) -> str:
    with _open(path, compressed) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="")
        for _ in range(skip):
            text.readline(MAX_HEADER_BYTES)
        return text.readline(MAX_HEADER_BYTES)


def _read_csv(path: Path, compressed: bool) -> tuple[pa.Table, int]:
    with _open(path, compressed) as fh:
        bom = fh.read(2)
    encoding = "utf-16" if bom in (b"\xff\xfe", b"\xfe\xff") else "utf-8"
    try:
        first = _first_line(path, compressed, encoding)
    except UnicodeDecodeError:
        if encoding != "utf-8":
            raise
        encoding = FALLBACK_ENCODING
        first = _first_line(path, compressed, encoding)
    if len(first) >= MAX_HEADER_BYTES and not first.endswith(("\n", "\r")):
        raise DataFormatError(f"{path}: the header line is longer than {MAX_HEADER_BYTES} bytes: not a data export")
    delimiter, skip = ",", 0
    if said := SEP_LINE.fullmatch(first):
        delimiter, skip = said.group(1), 1
        first = _first_line(path, compressed, encoding, skip)
    elif "," not in first:
        delimiter = next((d for d in OTHER_DELIMITERS if d in first), ",")
    header = next(csv.reader([first], delimiter=delimiter), [])
    if not header or not any(h.strip() for h in header):
        raise DataFormatError(f"{path}: no header line")
    try:
        return _read_csv_as(path, compressed, header, delimiter, encoding, skip)
    except pa.ArrowInvalid as exc:
        if encoding != "utf-8" or "UTF8" not in str(exc):
            raise
        # valid UTF-8 at the top, not further down: the same file saved by a spreadsheet program
        return _read_csv_as(path, compressed, header, delimiter, FALLBACK_ENCODING, skip)


# The CSV is parsed in blocks of CSV_BLOCK bytes, each on a thread of pyarrow's pool when there are
# several. A file of one block gains nothing from the pool and is read on the calling thread: after a
# threaded read from a Python stream, a process sometimes aborted at its exit ("terminate called
# without an active exception", exit 134 instead of the refusal's 2: 3 of 40 `jobqueue data fetch`
# refusals of a two-line file in the image; 0 of 40 without threads; apache/arrow#34314, #50482).
CSV_BLOCK = 16 << 20


def _read_csv_as(path: Path, compressed: bool, header: list[str], delimiter: str, encoding: str, skip: int = 0):
    skipped = 0
    threads = path.stat().st_size > CSV_BLOCK  # bytes on disk: a gzip file of one block may hold several

    def on_bad_row(row) -> str:
        nonlocal skipped
        if row.text.strip():  # a line of only spaces is blank, not malformed
            skipped += 1
        return "skip"

    with _open(path, compressed) as fh:
        table = pacsv.read_csv(
            fh,
            read_options=pacsv.ReadOptions(
                block_size=CSV_BLOCK,
                use_threads=threads,
                encoding="utf8" if encoding == "utf-8" else encoding,
                skip_rows=skip,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=on_bad_row, newlines_in_values=True
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    return table, skipped


def _without_filler_rows(table: pa.Table) -> pa.Table:
    """The rows that are no incident, whatever the format: blank ones, repeated headers and totals
    after the last incident. They were dropped from CSV only, so the same export turned into JSON
    or Parquet (a converter, or pandas' ``read_csv(dtype=str).to_parquet``) counted them as
    incidents with no date or place. A typed (non-text) column holds no header and no label."""
    return _without_totals_rows(_without_header_rows(_without_blank_rows(table)))


def _is_text(col: pa.ChunkedArray) -> bool:
    return pa.types.is_string(col.type) or pa.types.is_large_string(col.type)


_TOTALS = re.compile(r"^\s*(?:grand\s+)?totals?\b", re.I)
_NUMBER = re.compile(r"^\s*-?[\d.,]*\s*$")  # empty, or a count or sum a report put under a column


def _without_totals_rows(table: pa.Table) -> pa.Table:
    """Drop the rows after the last incident that a report or a spreadsheet's subtotal adds
    (``Total,,,,`` or ``Grand Total,5000,...``: the first field Total, Totals or Grand Total, the
    others empty or numbers): each became an incident with report id "Total" and no date, counted
    in ``rows`` and ``published_missing``. Only at the end: an incident is never dropped."""
    keep = table.num_rows
    while keep and _is_totals_row(table.slice(keep - 1, 1).to_pylist()[0], table.column_names[0]):
        keep -= 1
    return table if keep == table.num_rows else table.slice(0, keep)


def _is_totals_row(row: dict[str, Any], first: str) -> bool:
    label = row[first]
    return (
        isinstance(label, str) and bool(_TOTALS.match(label)) and all(_a_total(v) for n, v in row.items() if n != first)
    )


def _a_total(value: Any) -> bool:
    """Empty, or a count or sum (as text, or a typed number in Parquet)."""
    if isinstance(value, str):
        return bool(_NUMBER.match(value))
    return value is None or isinstance(value, (int, float))


def _without_header_rows(table: pa.Table) -> pa.Table:
    """Drop the rows that repeat the header (each field its column's name): exports joined with
    ``cat a.csv b.csv`` or appended month by month each bring theirs, and it became an incident
    with report id "Traffic Report ID", an unparseable date and invalid coordinates."""
    same = None
    for name, col in zip(table.column_names, table.columns):
        if not _is_text(col):
            return table
        equal = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(col), name.strip()), not name.strip())
        same = equal if same is None else pc.and_(same, equal)
    if same is None or not pc.any(same).as_py():
        return table
    return table.filter(pc.invert(same))


def _without_blank_rows(table: pa.Table) -> pa.Table:
    """Drop the rows with no value in any field: a spreadsheet program saving the export writes
    ``,,,,,,,,,`` lines after the last row (for every row it once formatted), and each became an
    incident with no date, place or issue, counted in ``rows`` and ``published_missing``."""
    blank = None
    for col in table.columns:
        empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(col), ""), True) if _is_text(col) else pc.is_null(col)
        blank = empty if blank is None else pc.and_(blank, empty)
    if blank is None or not pc.any(blank).as_py():
        return table
    return table.filter(pc.invert(blank))


def _flatten_location(value):
    """SODA JSON gives ``location`` as GeoJSON (``{"type": "Point", "coordinates": [lon, lat]}``)
    or, in the older API, as ``{"latitude": .., "longitude": ..}``, and the portal's JSON export of
    an old location column as ``[address, lat, lon, ...]``; turn each into WKT text."""
    if isinstance(value, list) and len(value) >= 3:  # rows.json's old location: [address, lat, lon, ...]
        lat, lon = value[1], value[2]
        return None if lat is None or lon is None else f"POINT ({lon} {lat})"
    if isinstance(value, dict):
        coords = value.get("coordinates")
        if isinstance(coords, (list, tuple)) and len(coords) >= 2:
            return f"POINT ({coords[0]} {coords[1]})"
        if "latitude" in value and "longitude" in value:
            return f"POINT ({value['longitude']} {value['latitude']})"
        return None
    return value


# JSON is read piece by piece (docs/data.md): text in chunks of JSON_CHUNK characters, each record
# decoded on its own, and every JSON_BATCH records turned into Arrow columns, so the Python objects
# of only one batch are alive at a time (decoding the whole document first took 2.5x the memory of
# the same rows as CSV).
JSON_CHUNK = 1 << 20
JSON_BATCH = 16_384
# A value still undecodable with this much text buffered is invalid, not cut by a chunk's end:
# stop there rather than read the rest of a broken file into memory looking for its end.
JSON_MAX_VALUE = 64 << 20
_SPACE = re.compile(r"[ \t\n\r]*")


class _JsonText:
    """A JSON document read from a text stream a chunk at a time: whole values are decoded with
    ``json.JSONDecoder.raw_decode`` (C speed), arrays and objects may instead be walked member by
    member, so a top-level array of records never exists as one Python list."""

    def __init__(self, text):
        self.text, self.buf, self.pos, self.done = text, "", 0, 0
        self.eof = False
        self.decoder = json.JSONDecoder()

    def _more(self) -> bool:
        """Append the next chunk (at least as much as is buffered, so a long value takes a few
        retries, not one per chunk); False at the end of the text."""
        if self.eof:
            return False
        chunk = self.text.read(max(JSON_CHUNK, len(self.buf) - self.pos))
        if not chunk:
            self.eof = True
            return False
        self.done += self.pos
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        return True

    def error(self, msg: str, pos: int | None = None) -> DataFormatError:
        return DataFormatError(f"invalid JSON: {msg} (char {self.done + (self.pos if pos is None else pos)})")

    def peek(self) -> str:
        """The next character that is not white space ("" at the end of the text)."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos : self.pos + 1]

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise self.error(f"expecting {char!r}")
        self.pos += 1

    def value(self):
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # cut by the end of the chunk, or really invalid: more text tells
                if len(self.buf) - self.pos < JSON_MAX_VALUE and self._more():
                    continue
                raise self.error(exc.msg, exc.pos) from None
            # a number at the very end of the chunk may go on in the next one
            if end < len(self.buf) or not self._more():
                self.pos = end
                return value

    def items(self):
        """The values of the array whose ``[`` was just taken, one at a time."""
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.peek() == "]":
                self.pos += 1
                return
            self.take(",")

    def members(self):
        """The keys of the object whose ``{`` was just taken; the caller reads each one's value."""
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                raise self.error("expecting a property name in double quotes")
            key = self.value()
            self.take(":")
            yield key
            if self.peek() == "}":
                self.pos += 1
                return
            self.take(",")

    def end(self) -> None:
        if self.peek():
            raise self.error("extra data after the document")


def _text(name: str, value) -> str | None:
    if isinstance(value, dict) or (isinstance(value, list) and name == "location"):
        value = _flatten_location(value)
    return None if value is None else str(value)


class _Records:
    """Records (dicts) turned into Arrow string columns a batch at a time; a column is named where
    it first appears, and is null in the records that lack it (SODA leaves out empty fields)."""

    def __init__(self) -> None:
        self.names: dict[str, None] = {}
        self.batches: list[tuple[int, dict[str, pa.Array]]] = []
        self.pending: list[dict] = []

    def add(self, record: dict) -> None:
        self.pending.append(record)
        if len(self.pending) >= JSON_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        names: dict[str, None] = {}
        for record in self.pending:
            names.update(dict.fromkeys(record))
        self.names.update(names)
        columns = {n: pa.array([_text(n, r.get(n)) for r in self.pending], type=pa.string()) for n in names}
        self.batches.append((len(self.pending), columns))
        self.pending = []

    def table(self) -> pa.Table:
        self.flush()
        if not self.names:
            return pa.table({})
        return pa.table(
            {
                name: pa.chunked_array(
                    [cols.get(name, pa.nulls(n, type=pa.string())) for n, cols in self.batches], type=pa.string()
                )
                for name in self.names
            }
        )


class _Array:
    """The elements of a ``data`` (or ``results``) array: records, or the portal export's rows,
    which become records by the columns in ``meta``. Rows met before ``meta`` are only counted:
    the file is then read again with the columns known (:func:`_read_json`), so they never wait in
    memory as Python lists."""

    def __init__(self) -> None:
        self.records, self.rows = _Records(), _Records()
        self.early_rows = 0
        self.skipped = 0  # not one value per column, once it is a rows export
        self.not_records = 0  # arrays and scalars: not records
        self.record_count = 0

    def add(self, item, columns: list | None) -> None:
        if isinstance(item, dict):
            if columns is None:
                self.records.add(item)
                self.record_count += 1
            else:
                self.skipped += 1
            return
        self.not_records += 1
        if columns is None:
            self.early_rows += 1
        else:
            self.add_row(item, columns)

    def add_row(self, row, columns: list) -> None:
        if not isinstance(row, list) or len(row) != len(columns):
            self.skipped += 1
            return
        self.rows.add({n: row[i] for i, n in enumerate(columns) if n is not None})

    def rows_table(self) -> tuple[pa.Table, int]:
        self.skipped += self.record_count  # records in a rows export are not rows: skipped, counted
        return self.rows.table(), self.skipped


class _ColumnsAfterRows(Exception):
    """A rows.json whose ``meta`` came after rows of its ``data``: read it again with these columns."""

    def __init__(self, columns: list) -> None:
        self.columns = columns


def _export_columns(meta) -> list | None:
    """The portal's *Export -> JSON* (``rows.json``: ``{"meta": {"view": {"columns": [...]}},
    "data": [[...], ...]}``, every row an array in the order of the columns): each column's
    ``fieldName`` (the SODA names, so it is read as SODA JSON), None for Socrata's own ``:sid``,
    ``:created_at``... columns, which are dropped."""
    view = meta.get("view") if isinstance(meta, dict) else None
    if not isinstance(view, dict) or not isinstance(view.get("columns"), list):
        return None
    names = [c.get("fieldName") if isinstance(c, dict) else None for c in view["columns"]]
    return [n if isinstance(n, str) and not n.startswith(":") else None for n in names]


def _read_json(path: Path, compressed: bool) -> tuple[pa.Table, int]:
    with _open(path, compressed) as fh:
        encoding = json.detect_encoding(fh.read(4))
    columns: list | None = None
    for _ in range(2):  # twice only for a rows.json with its meta last (the portal writes it first)
        with _open(path, compressed) as fh:
            doc = _JsonText(io.TextIOWrapper(fh, encoding=encoding, errors="surrogatepass", newline=""))
            try:
                table, skipped = _json_document(doc, columns)
                break
            except _ColumnsAfterRows as late:
                columns = late.columns
            except DataFormatError as exc:
                raise DataFormatError(f"{path}: {exc}") from None
    else:  # the file changed between the two readings
        raise DataFormatError(f"{path}: the rows of its data came before its meta again on a second reading")
    if table is None:
        raise DataFormatError(f"{path}: JSON must be a list of records (objects), as the SODA API returns")
    return table, skipped


def _json_document(doc: _JsonText, late_columns: list | None = None) -> tuple[pa.Table | None, int]:
    """A list of records (the SODA API's answer); an object holding one under ``data`` or
    ``results``; the portal's JSON export (rows under ``data``, their columns under ``meta``); a
    single record; or records one after another (JSON Lines). (None, 0) for any other JSON. ``late_columns``: the columns of a rows.json whose
    ``meta`` follows its ``data``, from a first reading (which raised :class:`_ColumnsAfterRows`)."""
    if doc.peek() == "[":
        doc.pos += 1
        records = _Records()
        for item in doc.items():
            if not isinstance(item, dict):
                return None, 0
            records.add(item)
        doc.end()
        return records.table(), 0
    doc.take("{")
    top: dict = {}
    arrays: dict[str, _Array] = {}
    for key in doc.members():
        top.pop(key, None)
        arrays.pop(key, None)
        if key in ("data", "results") and doc.peek() == "[":
            doc.pos += 1
            arrays[key] = array = _Array()
            columns = (_export_columns(top.get("meta")) or late_columns) if key == "data" else None
            for item in doc.items():
                array.add(item, columns)
        else:
            top[key] = doc.value()
    if not arrays and doc.peek() == "{":  # a second object: JSON Lines, the first one a record
        return _json_lines(doc, top), 0
    doc.end()
    columns = _export_columns(top.get("meta"))
    if columns is not None and "data" in arrays:
        if arrays["data"].early_rows:
            raise _ColumnsAfterRows(columns)
        return arrays["data"].rows_table()
    if {"address", "published_date"} & (set(top) | set(arrays)) or not {"data", "results"} & (set(top) | set(arrays)):
        records = _Records()  # a single record
        records.add(top)
        return records.table(), 0
    key = "data" if "data" in top or "data" in arrays else "results"
    found = arrays.get(key)
    if found is None or found.not_records:
        return None, 0
    return found.records.table(), 0


def _json_lines(doc: _JsonText, first: dict) -> pa.Table:
    """JSON Lines, a record on each line (what ``jq -c '.[]'`` makes of a SODA answer, or pandas'
    ``to_json(orient="records", lines=True)``): it was refused as "extra data after the document"."""
    records = _Records()
    records.add(first)
    while doc.peek():
        record = doc.value()
        if not isinstance(record, dict):
            raise doc.error("expecting a record (an object) on each line of JSON Lines")
        records.add(record)
    return records.table()


def _read_parquet(path: Path, compressed: bool) -> tuple[pa.Table, int]:
    if compressed:
        with _open(path, compressed) as fh:
            return pq.read_table(io.BytesIO(fh.read())), 0
    return pq.read_table(path), 0
