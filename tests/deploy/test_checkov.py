"""checkov (its own environment, via uv) on every rendered scenario and on k8s/: no failed check,
and every suppression carries a reason. One checkov run covers everything: it is slow to start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.manifests import K8S, REPO_ROOT, SCENARIOS, scenario_objects

CHECKOV = "checkov==3.3.30"
pytestmark = pytest.mark.slow


def _uv() -> str | None:
    return shutil.which("uv") or next((str(p) for p in [REPO_ROOT / ".tools" / "bin" / "uv"] if p.exists()), None)


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory):
    uv = _uv()
    if uv is None:
        pytest.skip("uv not found (make setup installs it)")
    root = tmp_path_factory.mktemp("checkov")
    for scenario in SCENARIOS:
        folder = root / "chart" / scenario
        folder.mkdir(parents=True)
        for i, obj in enumerate(scenario_objects(scenario)):
            (folder / f"{i:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml").write_text(yaml.safe_dump(obj))
    shutil.copytree(K8S, root / "k8s")
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    run = subprocess.run(
        [
            uv,
            "tool",
            "run",
            "--from",
            CHECKOV,
            "checkov",
            "-d",
            str(root),
            "--framework",
            "kubernetes",
            "--skip-download",
            "-o",
            "json",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.stdout.strip(), run.stderr[-2000:]
    report = json.loads(run.stdout)
    reports = report if isinstance(report, list) else [report]
    return {"reports": reports, "root": root}


def test_checkov_scanned_every_scenario_and_k8s(checkov_report):
    files = {
        r["file_path"]
        for rep in checkov_report["reports"]
        for r in rep["results"]["passed_checks"] + rep["results"]["failed_checks"]
    }
    for scenario in SCENARIOS:
        assert any(f"/chart/{scenario}/" in f for f in files), scenario
    assert any(f.startswith("/k8s/test/") for f in files) and any(f.startswith("/k8s/prod/") for f in files)
    assert sum(rep["summary"]["passed"] for rep in checkov_report["reports"]) > 1000


def test_no_failed_checks(checkov_report):
    failed = [
        f"{r['check_id']} {r['check_name']}: {r['resource']} ({r['file_path']})"
        for rep in checkov_report["reports"]
        for r in rep["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)


def test_every_suppression_gives_a_reason(checkov_report):
    skipped = [r for rep in checkov_report["reports"] for r in rep["results"]["skipped_checks"]]
    for r in skipped:
        reason = (r.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 4, f"{r['check_id']} on {r['resource']} is suppressed without a reason"
