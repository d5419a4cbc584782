"""Huge or hostile data files fail with a clear DataFormatError, within a memory ceiling and a time
limit, instead of exhausting memory (a worker pod would be OOM-killed and restarted forever).

Each load runs in a child process with an address-space limit (RLIMIT_AS), so an exhaustion shows
up as a failed test, not as a dead test runner.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devstack.paths import SAMPLE
from tests.fuzz import hostile_files as hf

pytestmark = pytest.mark.slow

MEMORY_CEILING = 3 << 30  # bytes of address space the loading process may use
TIME_LIMIT = 120

_CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({ceiling}, {ceiling}))
    from atx_analysis.dataset import load_dataset
    from atx_analysis.errors import DataFormatError
    try:
        ds = load_dataset(sys.argv[1], cache=False)
        print(json.dumps({{"outcome": "loaded", "rows": ds.rows}}))
    except DataFormatError as exc:
        print(json.dumps({{"outcome": "DataFormatError", "message": str(exc)[:500]}}))
    except BaseException as exc:
        print(json.dumps({{"outcome": type(exc).__name__, "message": str(exc)[:500]}}))
""")


def load_in_child(path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(ceiling=MEMORY_CEILING), str(path)],
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"outcome": f"crashed (exit {proc.returncode})", "message": proc.stderr[-1000:]}
    return json.loads(lines[-1])


def test_the_sample_loads_under_the_same_ceiling():
    """The control: the ceiling is not so tight that honest data fails."""
    sample = SAMPLE
    assert load_in_child(sample)["outcome"] == "loaded"


@pytest.mark.parametrize(
    "make",
    [hf.one_huge_line, hf.header_then_huge_line, hf.million_columns, hf.gzip_bomb, hf.json_bomb],
    ids=lambda f: f.__name__,
)
def test_hostile_file_fails_clearly(tmp_path, make):
    path = make(tmp_path / f"{make.__name__}.csv")
    result = load_in_child(path)
    assert result["outcome"] == "DataFormatError", result
    assert str(path.name) in result["message"] or "limit" in result["message"].lower(), result


def test_the_size_limit_is_configurable_and_named(tmp_path):
    """DATA_MAX_BYTES (``max_bytes``, from Settings) applies to plain files by size and to gzip files
    by decompressed size."""
    import gzip

    from atx_analysis.dataset import load_dataset
    from atx_analysis.errors import DataFormatError

    sample = SAMPLE
    packed = tmp_path / "sample.csv.gz"
    packed.write_bytes(gzip.compress(sample.read_bytes()))
    limit = packed.stat().st_size + 10  # fits packed, not unpacked
    for path in (sample, packed):
        with pytest.raises(DataFormatError, match="DATA_MAX_BYTES"):
            load_dataset(path, cache=False, max_bytes=limit)
    limit = sample.stat().st_size
    assert load_dataset(packed, cache=False, max_bytes=limit).rows == load_dataset(sample, cache=False).rows > 0
