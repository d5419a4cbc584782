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
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

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
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"[", b"{"):
        return "json", compressed
    return "csv", compressed


def not_a_file(path: Path) -> DataFormatError:
    """The error for a path that is no file: a folder (a volume's mount point given instead of the
    file in it) is named as one, with what it holds."""
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        held = f"; it holds {', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''}" if inside else " (empty)"
        return DataFormatError(f"{path} is a folder, not a file: give the data file's path{held}")
    return DataFormatError(f"{path}: no such file")


def read_raw(path: str | Path, max_bytes: int | None = None) -> RawData:
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
    return RawData(table, container + ("+gzip" if compressed else ""), skipped)


# Encodings a CSV is read in: UTF-8 (the portal's export, with or without a BOM); UTF-16 when it
# starts with its byte-order mark (spreadsheets' "Unicode text"); else Windows-1252, what a
# spreadsheet program on Windows writes when it saves "CSV" (an address with an accent is not UTF-8
# there, and refusing the whole file for it helps nobody).
FALLBACK_ENCODING = "cp1252"
# Separators besides the comma, used only when the header line has no comma at all (a spreadsheet
# set to a European locale saves with ";"; tab-separated exports).
OTHER_DELIMITERS = ("\t", ";")


def _first_line(path: Path, compressed: bool, encoding: str) -> str:
    with _open(path, compressed) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="")
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
    delimiter = ","
    if "," not in first:
        delimiter = next((d for d in OTHER_DELIMITERS if d in first), ",")
    header = next(csv.reader([first], delimiter=delimiter), [])
    if not header or not any(h.strip() for h in header):
        raise DataFormatError(f"{path}: no header line")
    try:
        return _read_csv_as(path, compressed, header, delimiter, encoding)
    except pa.ArrowInvalid as exc:
        if encoding != "utf-8" or "UTF8" not in str(exc):
            raise
        # valid UTF-8 at the top, not further down: the same file saved by a spreadsheet program
        return _read_csv_as(path, compressed, header, delimiter, FALLBACK_ENCODING)


def _read_csv_as(path: Path, compressed: bool, header: list[str], delimiter: str, encoding: str):
    skipped = 0

    def on_bad_row(row) -> str:
        nonlocal skipped
        skipped += 1
        return "skip"

    with _open(path, compressed) as fh:
        table = pacsv.read_csv(
            fh,
            read_options=pacsv.ReadOptions(block_size=16 << 20, encoding="utf8" if encoding == "utf-8" else encoding),
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


def _read_json(path: Path, compressed: bool) -> tuple[pa.Table, int]:
    with _open(path, compressed) as fh:
        try:
            doc = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}: invalid JSON: {exc}") from None
    skipped = 0
    if _is_rows_export(doc):
        doc, skipped = _rows_export_records(doc)
    elif isinstance(doc, dict):  # a single record, or {"data": [...]} wrappers
        doc = doc.get("data", doc.get("results", [doc])) if not {"address", "published_date"} & set(doc) else [doc]
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DataFormatError(f"{path}: JSON must be a list of records (objects), as the SODA API returns")
    names: dict[str, None] = {}
    for rec in doc:
        for k in rec:
            names.setdefault(k, None)
    columns = {}
    for name in names:
        values = []
        for rec in doc:
            v = rec.get(name)
            if isinstance(v, dict) or (isinstance(v, list) and name == "location"):
                v = _flatten_location(v)
            values.append(None if v is None else str(v))
        columns[name] = pa.array(values, type=pa.string())
    return pa.table(columns) if columns else pa.table({}), skipped


def _is_rows_export(doc) -> bool:
    """The portal's *Export -> JSON* (``/api/views/<id>/rows.json``): ``{"meta": {"view": {"columns":
    [...]}}, "data": [[...], ...]}``, every row an array in the order of the columns."""
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("data"), list):
        return False
    view = doc["meta"].get("view")
    return isinstance(view, dict) and isinstance(view.get("columns"), list)


def _rows_export_records(doc) -> tuple[list[dict], int]:
    """Records keyed by each column's ``fieldName`` (the SODA names, so it is read as SODA JSON),
    without Socrata's own ``:sid``, ``:created_at``... columns; a row that is not an array of one
    value per column is skipped and counted, as a malformed CSV line is."""
    names = [c.get("fieldName") if isinstance(c, dict) else None for c in doc["meta"]["view"]["columns"]]
    keep = [(i, n) for i, n in enumerate(names) if isinstance(n, str) and not n.startswith(":")]
    records, skipped = [], 0
    for row in doc["data"]:
        if not isinstance(row, list) or len(row) != len(names):
            skipped += 1
            continue
        records.append({n: row[i] for i, n in keep})
    return records, skipped


def _read_parquet(path: Path, compressed: bool) -> tuple[pa.Table, int]:
    if compressed:
        with _open(path, compressed) as fh:
            return pq.read_table(io.BytesIO(fh.read())), 0
    return pq.read_table(path), 0
