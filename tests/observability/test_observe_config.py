"""`make observe`'s Prometheus config is valid and loads the chart's rules file."""

from __future__ import annotations

import subprocess

import yaml

from observability import rules

CONFIG = rules.REPO_ROOT / "observability" / "prometheus.yml"


def test_observe_config_is_valid_for_promtool(promtool):
    proc = subprocess.run([promtool, "check", "config", str(CONFIG)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_observe_config_loads_the_one_rules_file():
    config = yaml.safe_load(CONFIG.read_text())
    assert [(CONFIG.parent / p).resolve() for p in config["rule_files"]] == [rules.RULES_FILE]
    assert {job["job_name"] for job in config["scrape_configs"]} >= {"atx-jobqueue-api", "atx-jobqueue-worker"}


def test_observe_labels_api_and_workers_with_the_release_the_backlog_alert_joins_on():
    """Locally as in a cluster, API and worker series carry app_kubernetes_io_instance: the
    backlog alert's `on (namespace, app_kubernetes_io_instance)` pairs them."""
    config = yaml.safe_load(CONFIG.read_text())
    releases = {}
    for job in config["scrape_configs"]:
        if job["job_name"] in ("atx-jobqueue-api", "atx-jobqueue-worker"):
            (rule,) = [
                r for r in job.get("relabel_configs", []) if r.get("target_label") == "app_kubernetes_io_instance"
            ]
            releases[job["job_name"]] = rule["replacement"]
    assert len(releases) == 2 and len(set(releases.values())) == 1, releases
