"""Property tests of the loader: whatever bytes a data file holds, ``load_dataset`` returns a Dataset
or raises DataFormatError with a message; never another exception (a worker would crash-loop on it).

Files are built from pieces of the real portal format (its header, real-looking rows) mutated by
hypothesis: missing or duplicated columns, garbage fields, odd quoting, wrong encodings, truncation,
gzip and JSON containers.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from atx_analysis.dataset import load_dataset
from atx_analysis.errors import DataFormatError
from devstack.paths import SAMPLE

_LINES = SAMPLE.read_bytes().splitlines()
HEADER = _LINES[0].split(b",")
ROWS = _LINES[1:50]

field = st.one_of(
    st.sampled_from([f for row in ROWS[:10] for f in row.split(b",")]),
    st.binary(max_size=20),
    st.text(max_size=20).map(str.encode),
    st.sampled_from(
        [
            b"",
            b'"',
            b'""',
            b'"a,b"',
            b"\r",
            b"NaN",
            b"-1e999",
            b"\xff\xfe",
            b"99/99/9999 99:99:99 PM +0000",
            b"POINT (abc)",
            b"POINT (-97.7 30.2)",
        ]
    ),
)


@st.composite
def csv_files(draw) -> bytes:
    header = draw(st.lists(st.sampled_from(HEADER) | st.binary(min_size=1, max_size=10), min_size=0, max_size=14))
    if draw(st.booleans()):
        header = list(HEADER)
    lines = [b",".join(header)]
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(ROWS)))
        else:
            lines.append(b",".join(draw(st.lists(field, max_size=len(header) + 2))))
    sep = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    data = draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + sep.join(lines)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def json_files(draw) -> bytes:
    keys = [h.decode().lower().replace(" ", "_") for h in HEADER]
    records = draw(
        st.lists(
            st.dictionaries(
                st.sampled_from(keys) | st.text(max_size=5),
                st.none()
                | st.text(max_size=15)
                | st.integers()
                | st.floats(allow_nan=False)
                | st.fixed_dictionaries(
                    {"type": st.just("Point"), "coordinates": st.lists(st.floats(allow_nan=False), max_size=3)}
                ),
                max_size=10,
            ),
            max_size=6,
        )
    )
    doc = draw(st.sampled_from([records, {"data": records}, records[:1] and records[0]]))
    return json.dumps(doc).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(csv_files(), json_files(), st.binary(max_size=200)), packed=st.booleans())
# regressions hypothesis found (each was an exception other than DataFormatError):
@example(data=_LINES[0] + b"\n", packed=False)  # header, no rows: IndexError
@example(
    data=_LINES[0] + b"\n" + ROWS[0].replace(b"/2026 ", b"/9999 ", 1), packed=False
)  # year 9999: OutOfBoundsDatetime
@example(data=_LINES[0] + b"\n" + ROWS[0].replace(b"11/26/2026 12:28:27 AM +0000", b"-001-01-01", 1), packed=False)
@example(data=_LINES[0] + b",Location\n" + ROWS[0] + b",x", packed=False)  # a column twice: KeyError
def test_load_dataset_returns_a_dataset_or_a_data_format_error(data, packed):
    if packed:
        data = gzip.compress(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "incidents.csv"
        path.write_bytes(data)
        try:
            ds = load_dataset(path, cache=False)
        except DataFormatError as exc:
            assert str(exc)
            return
        assert ds.rows >= 0
        info = ds.info()
        json.dumps(info)  # what GET /data serves must be JSON
        assert info["rows"] == ds.rows
