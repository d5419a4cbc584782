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
