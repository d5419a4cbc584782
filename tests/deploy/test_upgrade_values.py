"""`helm upgrade` after a `git pull`: the values a newer chart added must get their defaults.

Helm's `--reuse-values` replaces the new chart's values.yaml with the previous release's values
(pkg/action/upgrade.go, reuseValues: `chart.Values = oldVals`; helm/helm#9000 "working as
expected"), so a key the new chart added is empty. `--reset-then-reuse-values` (Helm 3.14) starts from
the new chart's defaults and applies the release's own settings on top. Modelled here with the
current chart and a values.yaml that lacks keys, as the chart had before they were added."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import helm_python as helm
import yaml

from devstack.paths import REPO_ROOT
from tests.deploy.manifests import CHART, objects_of, one, pod_spec, render_chart, resolved_env

USER = {"image": {"registry": "docker.io/jdoe", "tag": "0.1.0"}}
# keys later sessions added (api.metricsPort: the API's own metrics listener; redisTimeoutSeconds)
ADDED = [("api", "metricsPort"), ("config", "redisTimeoutSeconds")]


def _merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _older_chart_values() -> dict:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for section, key in ADDED:
        del values[section][key]
    return values


def _render(chart_values: dict, values: dict, tmp_path: Path) -> list[dict]:
    chart = tmp_path / "atx-jobqueue"
    shutil.copytree(CHART, chart)
    (chart / "values.yaml").write_text(yaml.safe_dump(chart_values))
    with helm.Chart.load(str(chart)) as loaded:
        return objects_of(loaded.render(values=values, name="jobs", namespace="jdoe"))


def test_reuse_values_leaves_what_a_newer_chart_added_empty(tmp_path):
    # --reuse-values: the old chart's values with the release's settings become the chart's values
    objs = _render(_merge(_older_chart_values(), USER), {"image": {"tag": "0.2.0"}}, tmp_path)
    api = pod_spec(one(objs, "Deployment", "api"))["containers"][0]
    assert {"name": "metrics", "containerPort": None, "protocol": "TCP"} in api["ports"]
    assert one(objs, "ConfigMap", "config")["data"]["REDIS_TIMEOUT_SECONDS"] is None  # "" in the pod: exit 2


def test_reset_then_reuse_values_gives_them_their_defaults(tmp_path):
    # --reset-then-reuse-values: the new chart's defaults, the release's settings, then --set
    objs = _render(
        yaml.safe_load((CHART / "values.yaml").read_text()), _merge(USER, {"image": {"tag": "0.2.0"}}), tmp_path
    )
    api = pod_spec(one(objs, "Deployment", "api"))["containers"][0]
    assert {"name": "metrics", "containerPort": 9102, "protocol": "TCP"} in api["ports"]
    assert resolved_env(api, objs)["REDIS_TIMEOUT_SECONDS"] == "5"


def test_the_docs_upgrade_with_the_new_charts_defaults():
    docs = [REPO_ROOT / "README.md", REPO_ROOT / "helm" / "atx-jobqueue" / "README.md", REPO_ROOT / "k8s" / "README.md"]
    docs += sorted((REPO_ROOT / "docs").glob("*.md"))
    commands = [
        (doc.name, line.strip())
        for doc in docs
        for line in doc.read_text().splitlines()
        if re.search(r"\bhelm upgrade\b.*--reuse-values", line)
    ]
    assert commands == [], "use --reset-then-reuse-values (or -f with `helm get values`): " + repr(commands)


def test_restore_notes_leave_restore_mode_keeping_the_release_values():
    """NOTES said "upgrade with --set redis.restore.enabled=false": a bare --set makes Helm start
    from the chart's defaults, dropping the install's own values (registry, exposure, storage)."""
    notes = render_chart({"redis": {"restore": {"enabled": True, "file": "dump-x.rdb"}}}, name="jobs")[
        "atx-jobqueue/templates/NOTES.txt"
    ]
    assert "--reset-then-reuse-values --set redis.restore.enabled=false" in notes, notes
