"""docs/api.md's error table names every error the API's own code answers with.

A client branches on ``error``; a code the table does not list is one it cannot plan for (the
table lacked 415 ``unsupported_media_type``, 408 ``request_timeout``, 429 ``rate_limited`` and
others). The codes are read from the source: every ``ApiError(...)`` / ``error_response(...)``
call with a literal status and code, and every ``"error": "..."`` written into a body."""

from __future__ import annotations

import ast
import re

from devstack.paths import REPO_ROOT

API_SRC = REPO_ROOT / "services" / "api" / "jobqueue_api"
ROW = re.compile(r"^\|\s*(\d{3})\s*\|(.*?)\|", re.M)


def _answered() -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for path in API_SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
                "ApiError",
                "error_response",
            }:
                args = [a.value for a in node.args[:2] if isinstance(a, ast.Constant)]
                if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
                    found.add((args[0], args[1]))
    return found


def _written_into_a_body() -> set[str]:
    """Codes written as a literal ``{"error": "..."}`` (e.g. /readyz's 503 body, made with jsonify:
    the scan above missed it, and the table lacked ``not_ready``)."""
    found: set[str] = set()
    for path in API_SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "error"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        found.add(value.value)
    return found


def _documented() -> set[tuple[int, str]]:
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    table = text[text.index("| status | `error` | when |") :]
    table = table[: table.index("\n\n")]
    return {(int(status), code) for status, cell in ROW.findall(table) for code in re.findall(r"`([a-z_]+)`", cell)}


def test_every_error_code_the_api_answers_is_in_the_docs_table():
    answered = _answered()
    assert len(answered) > 15, answered  # the scan found the calls
    missing = sorted(answered - _documented())
    assert not missing, f"docs/api.md's error table lacks {missing}"


def test_the_table_says_when_a_broken_body_is_invalid_body():
    """A chunked body with a bad chunk size, or cut short, that the API reads is
    `400 invalid_body` "the request body is malformed or incomplete: ..." (submission.py); the
    table gave that code only for JSON that is not an object, and its `invalid_chunk` row covers
    only bodies the API answers without reading, so a reader who got it found no row that fit."""
    source = (API_SRC / "submission.py").read_text()
    assert 'ApiError(400, "invalid_body", f"the request body is malformed or incomplete' in source
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 400 | `invalid_body` |"))
    assert "malformed or incomplete" in row and "chunk" in row and "ended before the body did" in row, row


def test_every_error_code_written_into_a_body_is_in_the_docs_table():
    written = _written_into_a_body()
    assert "not_ready" in written, written  # the scan found /readyz's
    missing = sorted(written - {code for _, code in _documented()})
    assert not missing, f"docs/api.md's error table lacks {missing}"
