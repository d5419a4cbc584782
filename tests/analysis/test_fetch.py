"""`jobqueue data fetch` against a local HTTP server serving fixtures (no outside network)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from atx_analysis.fetch import EXPORT_PATH, SODA_PATH, FetchError, fetch

from .expected import FIXTURES
from .support import jq

SODA_RECORDS = json.loads((FIXTURES / "soda.json").read_text())


class PortalStub(BaseHTTPRequestHandler):
    requests_seen: list[str] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        self.requests_seen.append(self.path)
        url = urlparse(self.path)
        if self.path in (EXPORT_PATH, "/mirror/rows.csv"):
            body, ctype = (FIXTURES / "portal10.csv").read_bytes(), "text/csv"
        elif self.path == "/broken.csv":
            body, ctype = b"this,is\nnot,traffic data\n", "text/csv"
        elif url.path == SODA_PATH:
            q = parse_qs(url.query)
            limit, offset = int(q["$limit"][0]), int(q["$offset"][0])
            body, ctype = json.dumps(SODA_RECORDS[offset : offset + limit]).encode(), "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def portal():
    server = ThreadingHTTPServer(("127.0.0.1", 0), PortalStub)
    PortalStub.requests_seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_export(portal, tmp_path):
    out = fetch(tmp_path / "full" / "x.csv", base_url=portal)
    assert out.read_bytes() == (FIXTURES / "portal10.csv").read_bytes()
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]


def test_fetch_soda_pages(portal, tmp_path):
    out = fetch(tmp_path / "x.json", source="soda", base_url=portal, page_size=3)
    assert json.loads(out.read_text()) == SODA_RECORDS
    assert len(PortalStub.requests_seen) == 3  # 3 + 3 + 2 records


def test_fetch_cli_loads_what_it_downloaded(portal, tmp_path, inproc):
    r = jq(
        "data",
        "fetch",
        "--base-url",
        portal,
        "--output",
        tmp_path / "d.csv",
        env={"DATA_CACHE_DIR": str(tmp_path / "c")},
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["rows"] == 8 and info["format"] == "portal-csv"
    code, out, err = inproc(
        "data", "fetch", "--source", "soda", "--page-size", 5, "--base-url", portal, "--output", tmp_path / "d.json"
    )
    assert code == 0, err
    assert json.loads(out)["format"] == "soda-json"


def test_fetch_failure_leaves_no_file(tmp_path, inproc, monkeypatch):
    from jobqueue import http

    # the refused connection is still tried again as often as a flaky portal's is, only without the
    # 1 + 2 + 4 + 8 s of backoff between the tries (15 s a download, half a minute of this test): what
    # is checked here is what a failure leaves behind and the exit code, not how long it waited
    made = []

    def without_backoff(**options):
        made.append(options)
        return original(**{**options, "backoff": 0})

    original = http.retrying_session
    monkeypatch.setattr(http, "retrying_session", without_backoff)
    target = tmp_path / "x.csv"
    with pytest.raises(FetchError):
        fetch(target, base_url="http://127.0.0.1:9", timeout=2)
    assert not target.exists() and not list(tmp_path.iterdir())
    code, _, err = inproc("data", "fetch", "--base-url", "http://127.0.0.1:9", "--timeout", 2, "--output", target)
    assert code == 3 and "download" in err  # exit 3: service unreachable
    assert len(made) == 2  # both downloads went through the retrying session


def test_fetch_cli_checks_a_download_before_it_replaces_the_file(portal, tmp_path, inproc):
    """What the chart's loader relies on: a wrong download never reaches the workers' file."""
    target = tmp_path / "d.csv"
    target.write_bytes((FIXTURES / "portal10.csv").read_bytes())
    before = target.read_bytes()
    code, _, err = inproc("data", "fetch", "--url", f"{portal}/broken.csv", "--output", target)
    assert code == 2 and "not a usable dataset" in err and "left as it was" in err
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_fetch_cli_refuses_a_file_with_no_readable_row(tmp_path, inproc):
    """The data-shell's `jobqueue data fetch --from` with a file none of whose lines the loader can
    read (a header naming a column more than the lines have, or a header only) exited 0 and put a
    dataset of 0 rows in place of a good one; the docs say a file it cannot read exits 2 and leaves
    the dataset as it was."""
    target = tmp_path / "traffic_incidents.csv"
    target.write_bytes((FIXTURES / "portal10.csv").read_bytes())
    before = target.read_bytes()
    header = (FIXTURES / "portal10.csv").read_text().splitlines()[0]
    line = (FIXTURES / "portal10.csv").read_text().splitlines()[1]
    shifted = tmp_path / "shifted.csv"
    shifted.write_text(header + ",Extra\n" + line + "\n" + line + "\n")  # one column more than the lines
    header_only = tmp_path / "header-only.csv"
    header_only.write_text(header + "\n")
    for bad, says in ((shifted, "none of the file's 2 data lines could be read"), (header_only, "header only")):
        code, out, err = inproc("data", "fetch", "--from", bad, "--output", target)
        assert code == 2, (bad.name, out, err)
        assert "not a usable dataset" in err and says in err and "left as it was" in err, err
        assert target.read_bytes() == before


def test_fetch_cli_url_from_and_keep_existing(portal, tmp_path, inproc):
    mirrored = tmp_path / "mirror.csv"
    code, out, err = inproc("data", "fetch", "--url", f"{portal}/mirror/rows.csv", "--output", mirrored)
    assert code == 0, err
    assert mirrored.read_bytes() == (FIXTURES / "portal10.csv").read_bytes()
    assert PortalStub.requests_seen == ["/mirror/rows.csv"]
    assert mirrored.stat().st_mode & 0o777 == 0o644  # readable by pods that run as another user

    copied = tmp_path / "copied.csv"
    code, out, err = inproc("data", "fetch", "--from", FIXTURES / "portal10.csv", "--output", copied)
    assert code == 0, err
    assert copied.read_bytes() == (FIXTURES / "portal10.csv").read_bytes() and json.loads(out)["rows"] == 8
    # the loader's log line names the file the readers get, not the temporary one it was checked in
    assert json.loads(out)["path"] == str(copied), out

    copied.write_text("edited by hand\n")
    code, out, err = inproc(
        "data", "fetch", "--url", f"{portal}/mirror/rows.csv", "--output", copied, "--keep-existing"
    )
    assert code == 0 and json.loads(out)["kept"] is True
    assert copied.read_text() == "edited by hand\n" and len(PortalStub.requests_seen) == 1

    code, _, err = inproc("data", "fetch", "--source", "soda", "--url", portal, "--output", tmp_path / "s.json")
    assert code == 2 and "--url" in err
    code, _, err = inproc("data", "fetch", "--from", tmp_path / "nope.csv", "--output", tmp_path / "n.csv")
    assert code == 2 and "no such file" in err
