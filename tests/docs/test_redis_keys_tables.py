"""The Redis key tables of docs/operations.md and docs/delivery.md agree with jobqueue/keys.py.

Every key name lives in keys.py. operations.md's table is the full list an operator reads before
looking inside Redis; delivery.md's said "All names come from keys.py" while it lacked the
worker's ACL record, the API's jobs-db record and the idempotency keys. Both are read here: the
full one must name every constant of keys.py, and neither may name a key keys.py does not make."""

from __future__ import annotations

import re

from jobqueue import keys

from devstack.paths import REPO_ROOT

NAMES = {value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)}
# What delivery.md's table may leave to operations.md's: the API's own counters and probe.
NOT_DELIVERY = {keys.RATE_PREFIX, keys.WRONG_TOKENS_PREFIX, keys.WRITE_PROBE}


def table_keys(doc: str) -> list[str]:
    text = (REPO_ROOT / "docs" / doc).read_text()
    table = text[text.index("| key | db | type | what |") :]
    return re.findall(r"^\| `([^`]+)` \|", table[: table.index("\n\n")], re.M)


def made_by(row: str) -> str | None:
    """The keys.py name a row's key is (`job:<id>` is JOB_PREFIX's), else None."""
    return next((n for n in NAMES if row == n or (row.startswith(n) and row[len(n) :].startswith("<"))), None)


def test_operations_lists_every_key_keys_py_makes():
    rows = table_keys("operations.md")
    assert not [r for r in rows if made_by(r) is None], "operations.md names keys keys.py does not make"
    missing = sorted(NAMES - {made_by(r) for r in rows})
    assert not missing, f"docs/operations.md's Redis key table lacks {missing}"


def test_delivery_lists_every_key_the_queue_and_workers_use():
    rows = table_keys("delivery.md")
    assert not [r for r in rows if made_by(r) is None], "delivery.md names keys keys.py does not make"
    missing = sorted(NAMES - NOT_DELIVERY - {made_by(r) for r in rows})
    assert not missing, f"docs/delivery.md's Redis key table lacks {missing}"


def test_a_row_is_matched_by_its_prefix_only():
    assert made_by("job:<id>") == "job:"
    assert made_by("jobs:by-status:<status>") == "jobs:by-status:"
    assert made_by("job:x") is None and made_by("nosuch:<id>") is None
