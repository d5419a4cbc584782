"""The Prometheus rules parse, pass their promtool unit tests, and every alert is tested both ways."""

from __future__ import annotations

import re
import subprocess

import yaml

from observability import rules

DOC = rules.REPO_ROOT / "docs" / "observability.md"


def test_rules_file_passes_promtool_check(promtool):
    proc = subprocess.run([promtool, "check", "rules", str(rules.RULES_FILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules.all_rules())} rules found" in proc.stdout


def test_promtool_unit_tests_pass(promtool):
    proc = subprocess.run([promtool, "test", "rules", str(rules.RULES_TEST_FILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    suite = yaml.safe_load(rules.RULES_TEST_FILE.read_text())
    firing, quiet = set(), set()
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(rules.alerts())
    assert names, "no alerts found"
    assert names - firing == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a not-firing test"
    assert (firing | quiet) - names == set(), "tests for alerts that do not exist"


def test_the_required_alerts_exist():
    """The alert set issue 5 asks for: backlog growing / too old, failures, no busy worker, 5xx, Redis, slow."""
    assert {
        "JobQueueBacklogGrowing",
        "JobQueueBacklogTooOld",
        "JobQueueJobFailureRatioHigh",
        "JobQueueBacklogNoBusyWorker",
        "JobQueueAPIErrorRatioHigh",
        "JobQueueRedisDown",
        "JobQueueJobsSlow",
    } <= set(rules.alerts())


def test_alerts_have_severity_summary_and_a_runbook_entry_in_the_docs():
    headings = {re.sub(r"[^a-z0-9]", "", h.lower()) for h in re.findall(r"^#+ (.+)$", DOC.read_text(), re.M)}
    for name, alert in rules.alerts().items():
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        anchor = alert["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == name.lower(), name
        assert anchor in headings, f"docs/observability.md has no section for {name}"


def test_rules_read_only_documented_metrics_and_existing_recordings():
    documented = rules.documented_metrics()
    recorded = set(rules.recordings())
    assert len(documented) >= 10  # the table parsed
    for rule in rules.all_rules():
        assert rules.raw_metric_names(rule["expr"]) <= documented, rule
        assert rules.recorded_names(rule["expr"]) <= recorded, rule


def test_recording_rule_names_follow_the_level_metric_operation_convention():
    for name in rules.recordings():
        assert re.fullmatch(r"jobqueue:[a-z0-9_]+:[a-z0-9_]+", name), name
