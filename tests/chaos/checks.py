"""What "nothing lost, exactly one final result, the right result" means, as reusable assertions."""

from __future__ import annotations

import functools
import json
from typing import Any

from devstack.paths import SAMPLE


@functools.lru_cache(maxsize=1)
def operations():
    """The catalogue as the services see it with DIAGNOSTIC_OPERATIONS=1."""
    from jobqueue.catalogue import catalogue
    from jobqueue.settings import load_settings

    return catalogue(load_settings({"DIAGNOSTIC_OPERATIONS": "1"}))


@functools.lru_cache(maxsize=1)
def _dataset():
    from atx_analysis.dataset import load_dataset

    return load_dataset(str(SAMPLE))


@functools.lru_cache(maxsize=4096)
def _expected(spec_json: str) -> Any:
    spec = json.loads(spec_json)
    op = operations().get(spec["operation"])
    if op.name == "sleep":
        return {"slept": op.validate(spec["params"])["seconds"]}
    # through JSON, as the worker stores it (tuples become lists, keys strings)
    return json.loads(json.dumps(op.run(_dataset(), spec["params"])))


def expected_result(spec: dict[str, Any]) -> Any:
    """The result computed here, in the test process, straight from the registry."""
    return _expected(json.dumps(spec, sort_keys=True))


def assert_all_complete_and_right(docs: dict[str, dict], acked: dict[str, dict]) -> None:
    """Every acknowledged job exists, is ``complete``, and holds the result of its own input."""
    missing = [j for j in acked if j not in docs]
    assert not missing, f"{len(missing)} acknowledged jobs lost, e.g. {missing[:3]}"
    not_complete = {j: (d["status"], d.get("error")) for j, d in docs.items() if d["status"] != "complete"}
    assert not not_complete, f"{len(not_complete)} jobs not complete, e.g. {list(not_complete.items())[:3]}"
    wrong = []
    for job_id, spec in acked.items():
        doc = docs[job_id]
        if doc["operation"] != spec["operation"] or doc.get("result_ref") or doc["result"] != expected_result(spec):
            wrong.append(job_id)
    assert not wrong, (
        f"{len(wrong)} jobs hold a result that is not their own, e.g. "
        f"{[(docs[j]['operation'], docs[j]['params'], docs[j]['result']) for j in wrong[:3]]}"
    )


def reruns(docs: dict[str, dict]) -> dict[str, int]:
    """Attempts beyond the first, summed, and how many jobs had any."""
    extra = [max(0, int(d.get("attempts") or 0) - 1) for d in docs.values()]
    return {"reruns": sum(extra), "jobs_rerun": sum(1 for e in extra if e)}


def assert_one_final_announcement(counts, job_ids) -> None:
    """Each job reached a final state exactly once (the worker announces each final write)."""
    twice = {j: counts[j] for j in job_ids if counts[j] > 1}
    never = [j for j in job_ids if counts[j] == 0]
    assert not twice, f"{len(twice)} jobs got more than one final result, e.g. {list(twice.items())[:3]}"
    assert not never, f"{len(never)} jobs were never announced final, e.g. {never[:3]}"
