"""Values docs/api.md shows that the docs-run test cannot hold (it compares keys, not values): what
the API answers for them, read from the code that answers."""

from __future__ import annotations

import re

from jobqueue.catalogue import catalogue
from jobqueue.settings import load_settings

from devstack.paths import REPO_ROOT

API_MD = (REPO_ROOT / "docs" / "api.md").read_text()


def test_the_operations_example_counts_the_operations_a_default_api_lists():
    """`GET /operations`'s example said `"count": 5` while the API lists 17 (it had 5 once)."""
    block = API_MD[API_MD.index("### `GET /operations`") :]
    shown = re.search(r'"count": (\d+)\}', block)
    assert shown, "the GET /operations example has no count"
    assert int(shown.group(1)) == len(catalogue(load_settings({})).names())


def test_the_tutorials_date_route_is_shown_with_every_key_it_answers():
    """`GET /incident_count_by_date` was shown as `{"incident_count": N}`; it answers the operation's
    result, with `date` too."""
    block = API_MD[API_MD.index("### `GET /incident_count_by_date") :]
    block = block[: block.index("\n### ", 5)]
    shown = re.search(r"`(\{.*?\})`", block, re.S)
    assert shown, "the route's answer is not shown"
    keys = re.findall(r'"(\w+)":', shown.group(1))
    assert tuple(keys) == catalogue(load_settings({})).get("incident_count_by_date").result_keys


def test_the_detailed_health_row_names_every_key_of_its_queue():
    """`/healthz?detail=1`'s `queue` carries `by_lane`, which the Service table did not name."""
    from jobqueue.backlog import Backlog

    row = next(line for line in API_MD.splitlines() if line.startswith("| `GET /healthz?detail=1` |"))
    queue = Backlog("hotqueue:jobs", 1, 0, 0, 0.0, 0, 0, 30.0, {"default": 0, "plots": 0}).to_dict()
    missing = [key for key in queue if f"`{key}`" not in row]
    assert not missing, f"docs/api.md's /healthz?detail=1 row does not name {missing}"
