"""Every place that says what REDIS_TIMEOUT_SECONDS does to a hung Redis also says that a submit
already sent to it is answered 504 (it may be stored), not only the 503 that means "nothing stored,
submit again". The chart's `## @param` line (and so its README and docs/deployment.md tables, which
are generated from it) said only "503" after submits began answering 504: an operator reading it
would tell users to resubmit, and could get two jobs."""

from __future__ import annotations

from devstack.paths import REPO_ROOT

SOURCES = ["README.md", *sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "docs").glob("*.md"))]
SOURCES += ["helm/atx-jobqueue/values.yaml", "helm/atx-jobqueue/README.md"]


def test_each_description_of_the_redis_bound_that_says_503_also_says_504():
    stale, seen = [], 0
    for name in SOURCES:
        for number, line in enumerate((REPO_ROOT / name).read_text().splitlines(), 1):
            if ("REDIS_TIMEOUT_SECONDS" in line or "redisTimeoutSeconds" in line) and "503" in line:
                seen += 1
                if "504" not in line:
                    stale.append(f"{name}:{number}: {line.strip()[:160]}")
    assert seen >= 5, seen  # the scan found the descriptions (README, api.md, the chart's three)
    assert not stale, "says 503 without the submit's 504:\n" + "\n".join(stale)
