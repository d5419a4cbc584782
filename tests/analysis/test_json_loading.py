"""JSON is read as a stream (a batch of records at a time), and gives what the CSV of the same rows
gives: every JSON form the loader documents (docs/data.md), at chunk and batch sizes that cut
values, records and numbers at every place, and with memory that does not grow with the rows."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc

import pandas as pd
import pytest

from atx_analysis import readers
from atx_analysis.errors import DataFormatError
from atx_analysis.generator import generate_frame, json_rows, write_json

from .expected import FIXTURES

ROWS = 1500


@pytest.fixture(scope="module")
def portal_rows() -> pd.DataFrame:
    return generate_frame(ROWS, seed=9)


def _dump(value) -> str:
    return json.dumps(value, indent=1)  # newlines and indentation between the tokens too


# Every JSON form the loader reads, written from the same portal rows: name -> (text, format)
def _forms(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    soda = list(json_rows(frame, "soda-json"))
    rows_export = io.StringIO()
    write_json(rows_export, frame, "rows-json")
    export = json.loads(rows_export.getvalue())
    plain = io.StringIO()
    write_json(plain, frame, "soda-json")
    return {
        "soda array": (plain.getvalue(), "soda-json"),
        "soda array, indented": (_dump(soda), "soda-json"),
        "data wrapper": (json.dumps({"count": len(soda), "data": soda}), "soda-json"),
        "results wrapper": (json.dumps({"results": soda, "next": None}), "soda-json"),
        "json lines": ("\n".join(json.dumps(record) for record in soda) + "\n", "soda-json"),
        "portal rows.json": (rows_export.getvalue(), "soda-json"),
        "portal rows.json, data before meta": (
            json.dumps({"data": export["data"], "meta": export["meta"]}),
            "soda-json",
        ),
    }


def _frame(ds) -> pd.DataFrame:
    return ds.frame.reset_index(drop=True)


def test_every_json_form_gives_the_frame_of_the_csv_of_the_same_rows(tmp_path, load, portal_rows):
    csv = tmp_path / "rows.csv"
    portal_rows.to_csv(csv, index=False, lineterminator="\n")
    reference = load(csv)
    assert reference.rows == ROWS
    for name, (text, fmt) in _forms(portal_rows).items():
        for gz in (False, True):
            path = tmp_path / f"{name.replace(' ', '_').replace(',', '')}.json{'.gz' if gz else ''}"
            path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
            ds = load(path)
            assert ds.format == fmt + ("+gzip" if gz else ""), name
            assert ds.counts == reference.counts, name
            pd.testing.assert_frame_equal(_frame(ds), _frame(reference), obj=name)


@pytest.mark.parametrize("chunk, batch", [(1, 1), (7, 3), (64, 1000)])
def test_chunk_and_batch_sizes_do_not_change_the_result(tmp_path, load, portal_rows, monkeypatch, chunk, batch):
    """The same frames and counts when the text arrives a character at a time (every value and
    number cut at its end) and records become columns a few at a time (a field that appears only in
    a later batch, as SODA leaves out empty fields)."""
    small = portal_rows.head(40)
    files = {name: (tmp_path / f"{i}.json", text) for i, (name, (text, _)) in enumerate(_forms(small).items())}
    files["eight-row soda fixture"] = (FIXTURES / "soda.json", None)
    bad_rows = tmp_path / "bad_rows.json"
    bad_rows.write_text(
        json.dumps(
            {
                "meta": {"view": {"columns": [{"fieldName": ":sid"}, {"fieldName": "address"}, {"fieldName": "n"}]}},
                "data": [[1, "A ST", 12345678901234567890], [2, "B ST"], {"address": "C ST"}, [3, "D ST", -1.5e-3]],
            }
        )
    )
    files["rows with the wrong arity"] = (bad_rows, None)
    for path, text in files.values():
        if text is not None:
            path.write_text(text)
    expected = {name: load(path, cache_mode="off") for name, (path, _) in files.items()}
    monkeypatch.setattr(readers, "JSON_CHUNK", chunk)
    monkeypatch.setattr(readers, "JSON_BATCH", batch)
    for name, (path, _) in files.items():
        ds = load(path, cache_mode="off")
        assert ds.counts == expected[name].counts, name
        pd.testing.assert_frame_equal(_frame(ds), _frame(expected[name]), obj=name)
    assert expected["rows with the wrong arity"].counts["malformed_lines_skipped"] == 2


@pytest.mark.parametrize(
    "content, says",
    [
        (b'[{"address": "A"}, 3]', "list of records"),
        (b'{"data": [{"address": "A"}, [1, 2]]}', "list of records"),
        (b'{"data": "none"}', "list of records"),
        (b'[{"address": "A"},]', "invalid JSON"),
        (b'[{"address": "A"}] [', "invalid JSON: extra data"),
        (b"[]", "no records \\(an empty list: the SODA API's answer when its query matches no incident"),
        (b'{"data": []}', "no records"),
        (b'{"address": "A"}\n{"address": "B"}\n[1]\n', "a record \\(an object\\) on each line"),
        (b'{"address": "A"}\n{"address": "B"', "invalid JSON"),
        (b'{"data": [{"address": "A"}]', "invalid JSON"),
        (b"{1: 2}", "invalid JSON"),
        (b'[{"address": "A"', "invalid JSON"),
    ],
)
def test_json_that_is_not_a_list_of_records_is_refused_with_a_clear_error(tmp_path, load, content, says):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=says):
        load(path)


def test_a_utf8_bom_and_non_ascii_text_are_read(tmp_path, load):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"address": "CAÑADA DR", "published_date": "2024-03-06"}]).encode())
    assert load(path).frame["address"].tolist() == ["CAÑADA DR"]


def _python_peak(path) -> int:
    tracemalloc.start()
    try:
        readers.read_raw(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("form", ["soda-json", "rows-json", "rows-json, meta last"])
def test_python_memory_while_reading_json_does_not_grow_with_the_rows(tmp_path, monkeypatch, form):
    """The Python objects alive while reading are one batch of records, not the whole document:
    reading four times the rows peaks at about the same Python memory (decoding the document whole
    made it grow with the rows: 4x here). A rows.json whose ``meta`` comes after its ``data`` too:
    its rows used to wait as Python lists for the columns (3.9x here); now they are read again."""
    monkeypatch.setattr(readers, "JSON_BATCH", 1000)
    monkeypatch.setattr(readers, "JSON_CHUNK", 1 << 16)  # both files many chunks long
    frame = generate_frame(16_000, seed=3)
    peaks = {}
    for rows in (4000, 16_000):
        path = tmp_path / f"{rows}.json"
        with open(path, "w") as fh:
            write_json(fh, frame.head(rows), form.split(",")[0])
        if form.endswith("meta last"):
            export = json.loads(path.read_text())
            path.write_text(json.dumps({"data": export["data"], "meta": export["meta"]}))
        peaks[rows] = _python_peak(path)
    assert peaks[16_000] < 1.5 * peaks[4000], peaks


def test_a_broken_record_in_a_long_file_fails_without_reading_the_rest_into_memory(tmp_path, load, monkeypatch):
    monkeypatch.setattr(readers, "JSON_CHUNK", 100)
    monkeypatch.setattr(readers, "JSON_MAX_VALUE", 1000)
    seen = []
    more = readers._JsonText._more

    def counted(self):
        seen.append(len(self.buf) - self.pos)
        return more(self)

    monkeypatch.setattr(readers._JsonText, "_more", counted)
    path = tmp_path / "broken.json"
    record = json.dumps({"address": "A ST", "published_date": "2024-03-06"})
    path.write_text("[" + record + ', {"address": "B ST" "published_date": 1}, ' + ", ".join([record] * 5000) + "]")
    with pytest.raises(DataFormatError, match="invalid JSON: Expecting ',' delimiter"):
        load(path)
    assert max(seen) < 3000
