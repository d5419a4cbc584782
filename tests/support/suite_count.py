"""The number of tests this session collected when it collected the whole suite (no paths given,
nothing deselected), for tests/docs/test_readme_test_count.py: the same figure `pytest --collect-only`
would print, without the 20 s of collecting the suite a second time in a subprocess. A plugin module
(registered in tests/conftest.py) so the test imports its key from here, not from a conftest."""

from __future__ import annotations

import pytest

WHOLE_SUITE_COUNT = pytest.StashKey[int]()
_DESELECTED = pytest.StashKey[bool]()


def pytest_deselected(items):
    if items:  # -k, -m, --deselect, --lf: this session's items are not the whole suite
        items[0].config.stash[_DESELECTED] = True


def pytest_collection_finish(session):
    config = session.config
    whole = config.args_source == pytest.Config.ArgsSource.TESTPATHS and not config.stash.get(_DESELECTED, False)
    if whole:
        config.stash[WHOLE_SUITE_COUNT] = len(session.items)
