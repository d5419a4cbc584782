"""Build the atx-jobqueue Grafana dashboard as code (grafana-foundation-sdk) and write its JSON.

The JSON under helm/atx-jobqueue/files/grafana/ is generated, never edited by hand: change the
panels here and run ``.venv/bin/python -m observability.dashboard`` (a test fails when the committed
file and this generator disagree). Panels read the recording rules of
helm/atx-jobqueue/files/prometheus/rules.yml, so dashboard, alerts and autoscaler agree on
what "queue depth" or "failure ratio" means; every query is also checked by promtool and, in the
end-to-end test, against a live Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m

from observability.rules import DASHBOARD_FILE

UID = "atx-jobqueue"
TITLE = "atx-jobqueue"
DATASOURCE = dash_m.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every query filters on the namespace and release variables; "All" is ".*", which also matches
# series without the label (a Prometheus that does not set it). The release is the pods'
# app.kubernetes.io/instance, which the chart's monitors copy to app_kubernetes_io_instance: two
# releases in one namespace (a dev and a demo) use the same queue name, and summed they mix.
NS = 'namespace=~"$namespace", app_kubernetes_io_instance=~"$release"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    mappings: dict[str, str] = field(default_factory=dict)
    stacked: bool = False


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: tuple[PanelSpec, ...]


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


ROWS: tuple[RowSpec, ...] = (
    RowSpec(
        "Queue",
        (
            PanelSpec(
                "Jobs waiting",
                "Job ids in the queue, not yet claimed by a worker (jobqueue_queue_depth).",
                (q(f"sum(jobqueue:queue_depth:max{{{NS}}})", "waiting"),),
                kind="stat",
                width=6,
                height=4,
                thresholds=((None, "green"), (50, "orange"), (500, "red")),
            ),
            PanelSpec(
                "Oldest waiting job",
                "Age of the oldest job still waiting. JobQueueBacklogTooOld fires above 10 minutes.",
                (q(f"max(jobqueue:oldest_job_age_seconds:max{{{NS}}})", "oldest"),),
                unit="s",
                kind="stat",
                width=6,
                height=4,
                thresholds=((None, "green"), (60, "orange"), (600, "red")),
            ),
            PanelSpec(
                "Jobs in progress",
                "Job ids claimed by workers (in their processing lists).",
                (q(f"sum(jobqueue:jobs_in_progress:max{{{NS}}})", "in progress"),),
                kind="stat",
                width=6,
                height=4,
            ),
            PanelSpec(
                "Redis",
                "Whether the API could read Redis at its last scrape (minimum over API replicas' view).",
                (q(f"min(jobqueue:redis_up:max{{{NS}}})", "redis"),),
                kind="stat",
                width=6,
                height=4,
                thresholds=((None, "red"), (1, "green")),
                mappings={"0": "DOWN", "1": "UP"},
            ),
            PanelSpec(
                "Queue depth and jobs in progress",
                "Waiting and claimed job ids per queue. Backlog = waiting + claimed is the metric the worker "
                "autoscaler sizes for.",
                (
                    q(f"sum by (queue) (jobqueue:queue_depth:max{{{NS}}})", "waiting {{queue}}"),
                    q(f"sum by (queue) (jobqueue:jobs_in_progress:max{{{NS}}})", "in progress {{queue}}"),
                    q(f"sum by (queue) (jobqueue:backlog:max{{{NS}}})", "backlog {{queue}}"),
                ),
            ),
            PanelSpec(
                "Oldest waiting job age",
                "How long the oldest waiting job has waited, per queue.",
                (q(f"max by (queue) (jobqueue:oldest_job_age_seconds:max{{{NS}}})", "{{queue}}"),),
                unit="s",
                thresholds=((None, "green"), (600, "red")),
            ),
        ),
    ),
    RowSpec(
        "Jobs",
        (
            PanelSpec(
                "Jobs per second by operation and outcome",
                "Finished attempts per second (5m rate): complete, failed, retried (will run again), cached "
                "(answered from a stored result).",
                (
                    q(
                        f"sum by (operation, outcome) (jobqueue:jobs_processed:rate5m{{{NS}}})",
                        "{{operation}} {{outcome}}",
                    ),
                ),
                unit="ops",
                stacked=True,
            ),
            PanelSpec(
                "Jobs submitted per second by operation",
                "Jobs accepted by the API (202) per second (5m rate).",
                (q(f"sum by (operation) (jobqueue:jobs_submitted:rate5m{{{NS}}})", "{{operation}}"),),
                unit="ops",
                stacked=True,
            ),
            PanelSpec(
                "Job duration p50 / p95 / p99 by operation",
                "Run time of one attempt. JobQueueJobsSlow fires when p95 stays above 60 s.",
                (
                    q(f"max by (operation) (jobqueue:job_duration_seconds:p50_5m{{{NS}}})", "p50 {{operation}}"),
                    q(f"max by (operation) (jobqueue:job_duration_seconds:p95_5m{{{NS}}})", "p95 {{operation}}"),
                    q(f"max by (operation) (jobqueue:job_duration_seconds:p99_5m{{{NS}}})", "p99 {{operation}}"),
                ),
                unit="s",
            ),
            PanelSpec(
                "Job failure ratio",
                "Failed / finished attempts (5m). JobQueueJobFailureRatioHigh fires above 10%.",
                (q(f"max(jobqueue:job_failure_ratio:rate5m{{{NS}}})", "failed / finished"),),
                unit="percentunit",
                thresholds=((None, "green"), (0.1, "red")),
            ),
        ),
    ),
    RowSpec(
        "Workers",
        (
            PanelSpec(
                "Worker replicas and busy workers",
                "Worker pods scraped, workers with a live heartbeat (seen by the API) and workers running a job now.",
                (
                    q(f"sum(jobqueue:worker_replicas:count{{{NS}}})", "replicas (scraped)"),
                    q(f"sum(jobqueue:workers_alive:max{{{NS}}})", "alive (heartbeat)"),
                    q(f"sum(jobqueue:workers_busy:sum{{{NS}}})", "busy"),
                ),
                width=8,
            ),
            PanelSpec(
                "Backlog per worker replica",
                "Waiting + running jobs per worker replica: what KEDA / the HPA compare with autoscaling.threshold. "
                "Above it (and below maxReplicas) more workers are on their way; see docs/autoscaling.md.",
                (
                    q(
                        f"sum(jobqueue:backlog:max{{{NS}}}) / clamp_min(sum(jobqueue:worker_replicas:count{{{NS}}}) "
                        f"or vector(0), 1)",
                        "backlog / replica",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "Retries and requeues per second",
                "Attempts scheduled again after a transient error, and job ids taken back from dead workers.",
                (
                    q(f"sum(jobqueue:job_retries:rate5m{{{NS}}}) or vector(0)", "retries"),
                    q(f"sum(jobqueue:jobs_requeued:rate5m{{{NS}}}) or vector(0)", "requeued"),
                ),
                unit="ops",
                width=8,
            ),
        ),
    ),
    RowSpec(
        "API",
        (
            PanelSpec(
                "API requests per second by route and status",
                "Requests answered per second (5m rate).",
                (q(f"sum by (route, status) (jobqueue:http_requests:rate5m{{{NS}}})", "{{route}} {{status}}"),),
                unit="reqps",
                stacked=True,
            ),
            PanelSpec(
                "API latency p50 / p95 / p99 by route",
                "Request latency per route (5m).",
                (
                    q(f"max by (route) (jobqueue:http_request_duration_seconds:p50_5m{{{NS}}})", "p50 {{route}}"),
                    q(f"max by (route) (jobqueue:http_request_duration_seconds:p95_5m{{{NS}}})", "p95 {{route}}"),
                    q(f"max by (route) (jobqueue:http_request_duration_seconds:p99_5m{{{NS}}})", "p99 {{route}}"),
                ),
                unit="s",
            ),
            PanelSpec(
                "API 5xx error ratio",
                "5xx answers / all answers (5m). JobQueueAPIErrorRatioHigh fires above 5%.",
                (q(f"max(jobqueue:http_5xx_ratio:rate5m{{{NS}}})", "5xx / all"),),
                unit="percentunit",
                thresholds=((None, "green"), (0.05, "red")),
            ),
            PanelSpec(
                "API requests refused by the HTTP server, by status and error",
                "Requests gunicorn refused before the application saw them, per minute (5m rate): malformed or "
                "smuggling-shaped, or a request line or headers over its limits (docs/api.md's rows marked "
                "gunicorn); not in the panels above. JobQueueAPIRefusalsHigh fires when one kind stays above 1 a "
                "minute for 10 minutes. Every kind is 0 from the API's start, so an empty panel means not scraped.",
                (
                    q(f"sum by (status, error) (jobqueue:http_refused:rate5m{{{NS}}}) * 60", "{{status}} {{error}}"),
                    q(f"sum(jobqueue:http_refused:rate5m{{{NS}}}) * 60", "all refused"),
                ),
                unit="reqpm",
                thresholds=((None, "green"), (1, "orange")),
            ),
            PanelSpec(
                "Long polls waiting, and answered at once at MAX_WAITERS",
                "?wait= requests (status polls and waiting submits) waiting now, summed over the API processes, "
                "and those answered at once per minute because their process already held MAX_WAITERS (5m rate). "
                "A flood of long polls shows here first: refused ones come back as plain polls, so requests per "
                "second climb with them.",
                (
                    q(f"sum(jobqueue_api_long_polls{{{NS}}})", "waiting"),
                    q(f"sum(rate(jobqueue_api_long_polls_refused_total{{{NS}}}[5m])) * 60", "answered at once / min"),
                ),
                unit="short",
            ),
        ),
    ),
    RowSpec(
        "Redis",
        (
            PanelSpec(
                "Redis reachable and writable, per API replica",
                "reachable: 1 when the replica read Redis at its last scrape; JobQueueRedisDown fires when no "
                "replica can. writable: 1 when Redis took the replica's small write, 0 when it refuses writes "
                "(full at maxmemory, MISCONF); JobQueueRedisRefusesWrites fires after 2 minutes, no exporter needed.",
                (
                    q(f"jobqueue_redis_up{{{NS}}}", "reachable {{instance}}"),
                    q(f"jobqueue_redis_writable{{{NS}}}", "writable {{instance}}"),
                ),
                width=8,
                thresholds=((None, "red"), (1, "green")),
                mappings={"0": "NO", "1": "YES"},
            ),
            PanelSpec(
                "Redis memory",
                "Used and maxmemory, from the redis_exporter sidecar (redis.exporter.enabled). Redis runs with "
                "noeviction: when full, submissions fail. JobQueueRedisMemoryHigh fires above 90%.",
                (
                    q(f"max by (pod) (redis_memory_used_bytes{{{NS}}})", "used {{pod}}"),
                    q(f"max by (pod) (redis_memory_max_bytes{{{NS}}})", "maxmemory {{pod}}"),
                ),
                unit="bytes",
                width=8,
            ),
            PanelSpec(
                "Redis clients and commands",
                "Connected clients and commands per second (redis_exporter).",
                (
                    q(f"sum(redis_connected_clients{{{NS}}})", "clients"),
                    q(f"sum(rate(redis_commands_processed_total{{{NS}}}[$__rate_interval]))", "commands/s"),
                ),
                width=8,
            ),
        ),
    ),
)


def _target(query: Query, ref: str) -> prom_b.Dataquery:
    return prom_b.Dataquery().expr(query.expr).legend_format(query.legend or "__auto").ref_id(ref).range()


def _thresholds(spec: PanelSpec) -> dash_b.ThresholdsConfig:
    steps = [dash_m.Threshold(value=value, color=color) for value, color in spec.thresholds]
    return dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE).steps(steps)


def _panel(spec: PanelSpec, panel_id: int):
    if spec.kind == "stat":
        panel = (
            stat_b.Panel()
            .graph_mode(common_m.BigValueGraphMode.AREA)
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
    else:
        panel = (
            ts_b.Panel()
            .line_width(1)
            .fill_opacity(10)
            .legend(
                common_b.VizLegendOptions()
                .display_mode(common_m.LegendDisplayMode.LIST)
                .placement(common_m.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
        )
        if spec.stacked:
            panel = panel.stacking(common_b.StackingConfig().mode(common_m.StackingMode.NORMAL))
        if len(spec.thresholds) > 1:
            panel = panel.thresholds_style(
                common_b.GraphThresholdsStyleConfig().mode(common_m.GraphTresholdsStyleMode.LINE)
            )
    panel = (
        panel.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
        .thresholds(_thresholds(spec))
    )
    if spec.mappings:
        options = {
            value: dash_m.ValueMappingResult(text=text, index=i)
            for i, (value, text) in enumerate(spec.mappings.items())
        }
        panel = panel.mappings([dash_m.ValueMap(options=options)])
    for i, query in enumerate(spec.queries):
        panel = panel.with_target(_target(query, chr(ord("A") + i)))
    return panel


def _filter_variable(name: str, label: str, query: str) -> dash_b.QueryVariable:
    """A multi-select filter over one label's values ("All" matches every value, so a panel's
    ``=~"$name"`` keeps every series)."""
    return (
        dash_b.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def build() -> dict:
    """The dashboard as the JSON-ready dict Grafana imports."""
    builder = (
        dash_b.Dashboard(TITLE)
        .uid(UID)
        .description("atx-jobqueue: queue, jobs, workers, API and Redis. Generated by observability/dashboard.py.")
        .tags(["atx-jobqueue"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .with_variable(dash_b.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(_filter_variable("namespace", "Namespace", "label_values(jobqueue_redis_up, namespace)"))
        .with_variable(
            _filter_variable(
                "release",
                "Release",
                'label_values(jobqueue_redis_up{namespace=~"$namespace"}, app_kubernetes_io_instance)',
            )
        )
    )
    panel_id = 0
    for row in ROWS:
        panel_id += 1
        builder = builder.with_row(dash_b.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            builder = builder.with_panel(_panel(spec, panel_id))
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def panel_queries(board: dict) -> dict[str, str]:
    """Every panel query of a dashboard JSON, keyed "<panel title> [<refId>]"."""
    out = {}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out[f"{panel['title']} [{target['refId']}]"] = target["expr"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DASHBOARD_FILE, help="the dashboard JSON to write or check")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generator")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = args.output.exists() and args.output.read_text() == text
        print(f"{args.output}: {'up to date' if same else 'STALE, regenerate with python -m observability.dashboard'}")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    from jobqueue import pipe

    sys.exit(pipe.run(main))
