"""The Prometheus harness itself: a real server starts, scrapes, loads the project's rules, answers."""

from __future__ import annotations

from observability import rules
from devstack.prometheus_server import static_job


def test_prometheus_scrapes_itself_and_loads_the_rules_healthy(prometheus_factory):
    prom = prometheus_factory(rule_files=[rules.RULES_FILE])
    prom.reload([static_job("prometheus", [f"127.0.0.1:{prom.port}"])])
    prom.wait_for_targets_up(1)
    prom.wait_for('up{job="prometheus"}', lambda r: len(r) == 1 and r[0]["value"][1] == "1")

    groups = {g["name"]: g for g in prom.rule_groups()}
    assert set(groups) == {g["name"] for g in rules.load_rules()["groups"]}
    loaded = [r for g in groups.values() for r in g["rules"]]
    assert len(loaded) == len(rules.all_rules())
    assert all(r["health"] in {"ok", "unknown"} for r in loaded), [r for r in loaded if r["health"] == "err"]

    # Nothing exports jobqueue metrics here, so the absent-metrics alert is pending (its `for` is 10m)
    # and evaluated by the real rule engine: proves alert state is visible through the harness.
    prom.wait_for(
        'ALERTS{alertname="JobQueueMetricsAbsent"}',
        lambda r: len(r) == 1 and r[0]["metric"]["alertstate"] == "pending",
        timeout=20,
    )
    assert prom.value("vector(42)") == 42.0
