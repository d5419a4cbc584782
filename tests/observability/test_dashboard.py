"""The committed dashboard JSON is exactly the generator's output and every query is sound PromQL."""

from __future__ import annotations

import json
import re

from observability import dashboard, rules


def committed() -> dict:
    return json.loads(rules.DASHBOARD_FILE.read_text())


def test_committed_json_equals_generator_output():
    assert rules.DASHBOARD_FILE.read_text() == dashboard.render(), (
        "stale dashboard: run .venv/bin/python -m observability.dashboard and commit the JSON"
    )


def test_dashboard_has_a_prometheus_datasource_variable_used_by_every_panel():
    board = committed()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_panel_ids_are_unique_and_panels_do_not_overlap():
    panels = committed()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def test_dashboard_covers_what_operators_need():
    text = " ".join(p["title"].lower() for p in committed()["panels"])
    for topic in (
        "queue depth",
        "oldest",
        "operation and outcome",
        "p50 / p95 / p99",
        "in progress",
        "worker replicas",
        "busy",
        "api requests",
        "latency",
        "error ratio",
        "refused",
        "redis",
        "long polls",  # a flood of ?wait= requests at MAX_WAITERS showed on no panel
        "writable",  # Redis full answers reads: reachable alone said nothing of refused submits
    ):
        assert topic in text, topic


def grafana_to_promql(expr: str) -> str:
    """What Grafana sends for the dashboard's variables with "All" selected."""
    return expr.replace("$namespace", ".*").replace("$release", ".*").replace("$__rate_interval", "1m")


def test_every_panel_query_parses_with_promtool(promtool):
    queries = {k: grafana_to_promql(v) for k, v in dashboard.panel_queries(committed()).items()}
    assert len(queries) >= 20
    rules.check_exprs_parse(queries)


def test_check_exprs_parse_rejects_bad_promql(promtool):
    try:
        rules.check_exprs_parse({"bad": "sum(rate(jobqueue_http_requests_total[5m]"})
    except ValueError as err:
        assert "bad" in str(err)
    else:
        raise AssertionError("a broken query was accepted")


def test_every_panel_reads_recorded_or_documented_series():
    documented = rules.documented_metrics()
    recorded = set(rules.recordings())
    for title, expr in dashboard.panel_queries(committed()).items():
        assert rules.raw_metric_names(expr) <= documented, title
        assert rules.recorded_names(expr) <= recorded, title
        assert re.search(r'namespace=~"\$namespace"', expr), f"{title} ignores the namespace variable"
        assert re.search(r'app_kubernetes_io_instance=~"\$release"', expr), f"{title} mixes releases"


def test_the_docs_name_every_dashboard_variable():
    """docs/observability.md's "Variables:" sentence names each of the dashboard's variables. It
    named `datasource` and `namespace` only, while the dashboard also has `release`, which a reader
    with two releases in one namespace needs to tell them apart."""
    from devstack.paths import REPO_ROOT

    text = " ".join((REPO_ROOT / "docs" / "observability.md").read_text().split())
    sentence = text.split("Variables: ", 1)[1].split(". ", 1)[0]
    variables = {v["name"] for v in committed()["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables, variables  # the scan found them
    assert all(f"`{v}`" in sentence for v in variables), (variables, sentence)
