"""Two releases' PrometheusRules (a `dev` and a `demo` in one namespace, the hard case) each
evaluate the rules over their own release's series only: unscoped, each object evaluated every rule
over both releases' series (twice the work) and raised each alert from both objects. Together they
record exactly what the plain rules file records for both, checked with promtool."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from observability import rules
from observability.rules import promtool as find_promtool
from tests.deploy.manifests import one, render_objects

NAMESPACE = "class"
RELEASES = ("dev", "demo")
MONITORED = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}


def release_groups(release: str) -> list[dict]:
    rule = one(render_objects(MONITORED, name=release, namespace=NAMESPACE), "PrometheusRule")
    return rule["spec"]["groups"]


def series(
    release: str,
    depth: int,
    redis_up: int = 1,
    redis_writable: int = 1,
    failed_per_min: int = 0,
    errors_per_min: int = 0,
    refused_per_min: int = 0,
) -> list[dict]:
    """What the chart's ServiceMonitor/PodMonitor scrapes of one release: two API replicas, two workers,
    the Redis exporter; every series carries namespace and app_kubernetes_io_instance."""
    base = f'namespace="{NAMESPACE}",app_kubernetes_io_instance="{release}"'
    api = [
        f'{base},service="{release}-atx-jobqueue-api",job="{release}-atx-jobqueue-api-metrics",pod="{release}-api-{i}",instance="10.1.{i}.{len(release)}:9102"'
        for i in (1, 2)
    ]
    workers = [
        f'{base},job="{NAMESPACE}/{release}-atx-jobqueue-worker",pod="{release}-worker-{i}",instance="10.2.{i}.{len(release)}:9100"'
        for i in (1, 2)
    ]
    out = []
    for labels in api:
        out += [
            {"series": f'jobqueue_queue_depth{{{labels},queue="jobs"}}', "values": f"{depth}x20"},
            {"series": f'jobqueue_jobs_in_progress{{{labels},queue="jobs"}}', "values": "2x20"},
            {"series": f'jobqueue_oldest_job_age_seconds{{{labels},queue="jobs"}}', "values": "700x20"},
            {"series": f'jobqueue_workers_alive{{{labels},queue="jobs"}}', "values": "2x20"},
            {"series": f'jobqueue_queue_stalled{{{labels},queue="jobs"}}', "values": "0x20"},
            {"series": f"jobqueue_redis_up{{{labels}}}", "values": f"{redis_up}x20"},
            {"series": f"jobqueue_redis_writable{{{labels}}}", "values": f"{redis_writable}x20"},
            {"series": f'jobqueue_jobs_submitted_total{{{labels},operation="top_locations"}}', "values": "0+30x20"},
            {
                "series": f'jobqueue_http_requests_total{{{labels},route="/submit",method="POST",status="202"}}',
                "values": "0+30x20",
            },
            {
                "series": f'jobqueue_http_requests_total{{{labels},route="/status/<job_id>",method="GET",status="503"}}',
                "values": f"0+{errors_per_min}x20",
            },
            {
                "series": f'jobqueue_http_refused_total{{{labels},status="431",error="request_header_fields_too_large"}}',
                "values": f"0+{refused_per_min}x20",
            },
        ]
        for le, n in (("0.01", 20), ("0.1", 28), ("+Inf", 30)):
            out.append(
                {
                    "series": f'jobqueue_http_request_duration_seconds_bucket{{{labels},route="/submit",method="POST",le="{le}"}}',
                    "values": f"0+{n}x20",
                }
            )
    for i, labels in enumerate(workers):
        out += [
            {"series": f"jobqueue_worker_busy{{{labels}}}", "values": f"{i}x20"},
            {
                "series": f'jobqueue_jobs_processed_total{{{labels},operation="top_locations",outcome="complete"}}',
                "values": "0+12x20",
            },
            {
                "series": f'jobqueue_jobs_processed_total{{{labels},operation="top_locations",outcome="failed"}}',
                "values": f"0+{failed_per_min}x20",
            },
            {"series": f'jobqueue_job_retries_total{{{labels},operation="top_locations"}}', "values": "0+1x20"},
            {"series": f"jobqueue_jobs_requeued_total{{{labels}}}", "values": "0+1x20"},
        ]
        for le, n in (("1", 6), ("10", 11), ("+Inf", 12)):
            out.append(
                {
                    "series": f'jobqueue_job_duration_seconds_bucket{{{labels},operation="top_locations",le="{le}"}}',
                    "values": f"0+{n}x20",
                }
            )
    redis = f'{base},job="{release}-atx-jobqueue-redis",pod="{release}-atx-jobqueue-redis-0",instance="10.3.0.{len(release)}:9121"'
    out += [
        {"series": f"redis_memory_used_bytes{{{redis}}}", "values": f"{95 if errors_per_min else 10}x20"},
        {"series": f"redis_memory_max_bytes{{{redis}}}", "values": "100x20"},
    ]
    return out


def both_releases() -> list[dict]:
    return series("dev", 3) + series(
        "demo", 60, redis_up=0, redis_writable=0, failed_per_min=12, errors_per_min=10, refused_per_min=3
    )


def promtool_test(tmp_path, rule_files: dict[str, list[dict]], tests: list[dict]) -> subprocess.CompletedProcess:
    tool = find_promtool()
    if tool is None:
        pytest.skip("no promtool (make setup installs Debian's prometheus package)")
    for name, groups in rule_files.items():
        (tmp_path / name).write_text(yaml.safe_dump({"groups": groups}))
    suite = {
        "rule_files": sorted(rule_files),
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": both_releases(), **t} for t in tests],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(suite))
    return subprocess.run(
        [tool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(("release", "other"), [("dev", "demo"), ("demo", "dev")])
def test_a_release_records_only_its_own_series(tmp_path, release, other):
    """Alone, one release's object records every recording rule for itself and nothing for the
    other release (before: both, from each object)."""
    records = sorted(rules.recordings())
    checks = []
    for name in records:
        checks.append(
            {
                "expr": f'count({name}{{app_kubernetes_io_instance="{other}"}}) or vector(0)',
                "eval_time": "10m",
                "exp_samples": [{"labels": "{}", "value": 0}],
            }
        )
        checks.append(
            {
                "expr": f'count({name}{{app_kubernetes_io_instance="{release}"}}) > bool 0',
                "eval_time": "10m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            }
        )
    run = promtool_test(tmp_path, {"release.yml": release_groups(release)}, [{"promql_expr_test": checks}])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr


def test_each_release_alerts_for_itself_once(tmp_path):
    """demo's Redis is down (and full, refusing writes), its jobs fail, it answers 5xx and gunicorn refuses a client's
    requests; both releases' oldest jobs have waited too long: each
    release's object raises the alerts of its own release only (before: every alert from both)."""
    query = 'count by (alertname, app_kubernetes_io_instance) (ALERTS{alertstate="firing"})'
    fired = {
        "dev": [("JobQueueBacklogTooOld", "dev")],
        "demo": [
            ("JobQueueAPIErrorRatioHigh", "demo"),
            ("JobQueueAPIRefusalsHigh", "demo"),
            ("JobQueueBacklogTooOld", "demo"),
            ("JobQueueJobFailureRatioHigh", "demo"),
            ("JobQueueRedisDown", "demo"),
            ("JobQueueRedisMemoryHigh", "demo"),
            ("JobQueueRedisRefusesWrites", "demo"),
        ],
    }
    for release in RELEASES:
        samples = [
            {"labels": f'{{alertname="{name}",app_kubernetes_io_instance="{owner}"}}', "value": 1}
            for name, owner in fired[release]
        ]
        check = {"expr": query, "eval_time": "19m", "exp_samples": samples}
        run = promtool_test(tmp_path, {"release.yml": release_groups(release)}, [{"promql_expr_test": [check]}])
        assert run.returncode == 0, release + "\n" + run.stdout[-3000:] + run.stderr


def _plain_copy(groups: list[dict]) -> list[dict]:
    """The plain rules file with its recorded names prefixed plain_, so both can be loaded together."""
    text = re.sub(r"\bjobqueue:", "plain_jobqueue:", yaml.safe_dump(groups))
    return [{**g, "name": "plain." + g["name"]} for g in yaml.safe_load(text)]


def test_the_releases_together_record_what_the_plain_file_records(tmp_path):
    plain = [g for g in _plain_copy(rules.load_rules()["groups"]) if g["name"].endswith("recording")]
    files = {
        "plain.yml": plain,
        **{f"{r}.yml": [g for g in release_groups(r) if g["name"].endswith("recording")] for r in RELEASES},
    }
    checks = []
    for name in sorted(rules.recordings()):
        both = f"(plain_{name} - {name})"
        zero = {"eval_time": "10m", "exp_samples": [{"labels": "{}", "value": 0}]}
        checks += [
            {
                "expr": f"(count(plain_{name}) or vector(0)) - (count{both} or vector(0))",
                **zero,
            },  # each plain series matched
            {"expr": f"(count({name}) or vector(0)) - (count{both} or vector(0))", **zero},  # each scoped one matched
            {"expr": f"count(abs{both} > 1e-9) or vector(0)", **zero},  # to the same value
            {
                "expr": f"count(plain_{name}) > bool 0",
                "eval_time": "10m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            },
        ]
    run = promtool_test(tmp_path, files, [{"promql_expr_test": checks}])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr


def test_every_selector_of_the_file_is_scoped_and_only_the_absent_alert_is_replaced():
    source = rules.load_rules()["groups"]
    rendered = release_groups("dev")
    assert [g["name"] for g in rendered[:-1]] == [g["name"] for g in source]
    matcher = f'{{namespace="{NAMESPACE}",app_kubernetes_io_instance="dev"'
    for group, ours in zip(source, rendered[:-1]):
        theirs = [r for r in group["rules"] if r.get("alert") != "JobQueueMetricsAbsent"]
        assert [{k: v for k, v in r.items() if k != "expr"} for r in ours["rules"]] == [
            {k: v for k, v in r.items() if k != "expr"} for r in theirs
        ]
        for rule in ours["rules"]:
            names = re.findall(r"\b((?:jobqueue_|jobqueue:|redis_)[a-zA-Z0-9_:]*)(.{0,60})", rule["expr"])
            assert names, rule
            assert all(rest.startswith(matcher) for _, rest in names), rule["expr"]
    assert rendered[-1]["name"] == "atx-jobqueue.release.dev"
    (absent,) = rendered[-1]["rules"]
    assert absent["alert"] == "JobQueueMetricsAbsent"
    # the series the autoscaling query reads: namespace and release, whichever documented scrape set them
    assert (
        absent["expr"] == 'absent(jobqueue_queue_depth{namespace="' + NAMESPACE + '",app_kubernetes_io_instance="dev"})'
    )
