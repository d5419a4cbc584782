"""`helm upgrade --reset-then-reuse-values` from the previous chart to this one, with the values
installations have: the previous chart's ci/*-values.yaml, the docs' install and upgrade commands
and typical hand-written settings. The upgrade renders the new chart's defaults with the release's
own values on top, so each case renders the previous chart and this one with the same values.

What must hold (the API server's update validation, kubernetes pkg/apis/*/validation):
- every values file that the previous chart rendered still renders (a render-time check that the
  API server would not make is a regression, not a safeguard);
- nothing changes that the API server refuses on update: a StatefulSet's spec other than replicas,
  template, updateStrategy, persistentVolumeClaimRetentionPolicy, minReadySeconds and ordinals
  (ValidateStatefulSetUpdate: "updates to statefulset spec for fields other than ... are
  forbidden"); a Deployment's or StatefulSet's selector ("field is immutable"); a Job's pod
  template; a PersistentVolumeClaim's spec other than resources.requests
  (ValidatePersistentVolumeClaimUpdate); a Service's clusterIP (ValidateServiceUpdate);
- no object appears or disappears (Helm deletes what a release no longer renders, and a claim's
  data with it);
- no pod template changes: this upgrade adds checks and per-release rules, and restarts no pod.

PREVIOUS is the chart as the eighth session left it, before the render-time checks. When a later
change means to restart pods on upgrade, say so in docs/deployment.md and move PREVIOUS forward.
"""

from __future__ import annotations

import helm_python as helm
import pytest

from tests.deploy.manifests import chart_at, objects_of, render_chart, render_objects
from tests.deploy.test_upgrade_immutability import refused_changes

PREVIOUS = "7549a1c"
POD_OWNERS = {"Deployment", "StatefulSet", "Job", "CronJob"}
# The restore Job exists only while restore mode is on. Its command gained the restore history
# (a snapshot already restored is refused), so an upgrade to this chart in restore mode is refused
# for it ("field is immutable"); docs/deployment.md says to leave restore mode first.
RESTORE_JOB = "Job demo-atx-jobqueue-redis-restore"
LEAVE_RESTORE_MODE_FIRST = "finish the restore and leave restore mode before upgrading the chart"
# The Redis pod mounts the backup claim the chart makes, and the backup pods follow it to its node
# (test_backup_volume.py): with backups on (or in restore mode) an upgrade to this chart restarts
# Redis once and changes the backup pods' template; docs/deployment.md says so.
BACKUP_CLAIM_MOUNTED = (
    "StatefulSet demo-atx-jobqueue-redis pod template",
    "CronJob demo-atx-jobqueue-redis-backup pod template",
)
RESTARTS_REDIS_ONCE = "an upgrade from a chart without this mount, restarts Redis once"

# docs/deployment.md and the chart README at PREVIOUS: each command's --set values (with the
# install's registry, which every install names)
DOCS = {
    "install with storage classes": {
        "data": {"persistence": {"storageClass": "cinder-csi"}},
        "redis": {"persistence": {"storageClass": "cinder-csi"}},
    },
    "upgrade to NodePort and Ingress": {
        "api": {
            "service": {"type": "NodePort"},
            "ingress": {"enabled": True, "className": "nginx", "host": "jdoe-atx-jobqueue.coe332.tacc.cloud"},
        }
    },
    "install with KEDA and monitoring": {
        "autoscaling": {
            "mode": "keda",
            "keda": {"serverAddress": "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"},
        },
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "redis": {"exporter": {"enabled": True}},
    },
    "upgrade with backups": {"redis": {"backup": {"enabled": True, "schedule": "17 * * * *", "keep": 48}}},
    "upgrade into restore mode": {"redis": {"restore": {"enabled": True, "file": "dump-20260101T001700Z.rdb"}}},
    "the token on": {"config": {"apiToken": {"enabled": True}}},
}

# what users write by hand (each rendered with the previous chart, which is checked below)
HANDWRITTEN = {
    "a fixed nodePort": {"api": {"service": {"type": "NodePort", "nodePort": 30080}}},
    "a LoadBalancer with a nodePort": {"api": {"service": {"type": "LoadBalancer", "nodePort": 31000}}},
    "a wildcard Ingress host with TLS": {
        "api": {"ingress": {"enabled": True, "host": "*.apps.example.org", "tls": "apps-tls"}}
    },
    "CPU as numbers": {"api": {"resources": {"requests": {"cpu": 1}, "limits": {"cpu": 2}}}},
    "CPU as decimals": {"worker": {"resources": {"requests": {"cpu": 0.25}, "limits": {"cpu": "500m"}}}},
    "limits only, above the default requests": {"worker": {"resources": {"limits": {"cpu": 4, "memory": "4Gi"}}}},
    "no limits": {"worker": {"resources": {"limits": None}}},
    "Redis memory": {"redis": {"resources": {"limits": {"memory": "1Gi"}}, "maxmemory": "700mb"}},
    "hpa from zero": {
        "autoscaling": {"mode": "hpa", "minReplicas": 0, "maxReplicas": 1, "scrapedWithoutServiceMonitor": True}
    },
    "keda bounds": {
        "autoscaling": {"mode": "keda", "minReplicas": 2, "maxReplicas": 10},
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
    "bounds unused without a scaler": {"autoscaling": {"mode": "none", "minReplicas": 5, "maxReplicas": 2}},
    "volume sizes": {"data": {"persistence": {"size": "1.5Gi"}}, "redis": {"persistence": {"size": "1500M"}}},
    "backup schedule with a time zone": {
        "redis": {"backup": {"enabled": True, "schedule": "CRON_TZ=America/Chicago 17 3 * * *", "size": "5G"}}
    },
    "backup every hour": {"redis": {"backup": {"enabled": True, "schedule": "@every 1h"}}},
    "budgets": {"api": {"pdb": {"maxUnavailable": "50%"}}, "worker": {"pdb": {"maxUnavailable": 1}}},
    "labels and annotations": {
        "commonLabels": {"course": "coe332", "example.org/term": "fall-2026"},
        "api": {"podAnnotations": {"Example.org/Owner": "jdoe"}},
        "worker": {"nodeSelector": {"kubernetes.io/arch": "amd64"}},
    },
    "no storage class named": {"data": {"persistence": {"storageClass": ""}}},
    "the exporter": {"redis": {"exporter": {"enabled": True}}},
    "a token Secret of one's own": {
        "config": {"apiToken": {"enabled": True, "existingSecret": "jobs-token", "existingSecretKey": "token"}}
    },
    "restore from a claim of one's own": {
        "redis": {
            "backup": {"existingClaim": "old-backups"},
            "restore": {"enabled": True, "file": "dump-20260101T001700Z.rdb"},
        }
    },
    "external Redis with a password Secret": {
        "redis": {"enabled": False},
        "externalRedis": {"url": "redis://redis.example:6379/0", "existingSecret": "redis-pw"},
    },
    "pull secrets and a short name": {"imagePullSecrets": [{"name": "regcred"}], "fullnameOverride": "jq"},
    "another name with a node port": {
        "nameOverride": "jq",
        "api": {"service": {"type": "NodePort", "nodePort": 30500}},
    },
    "the full dataset from the portal": {"data": {"loader": {"source": "url"}}},
    "a data claim of one's own": {"data": {"persistence": {"existingClaim": "atx-data"}}},
    "no volumes": {"data": {"persistence": {"enabled": False}}, "redis": {"persistence": {"enabled": False}}},
}

# generated at install and kept by `lookup` in a cluster; random in every offline render
GENERATED = {"redis-password", "api-token"}


@pytest.fixture(scope="module")
def previous_chart(tmp_path_factory):
    return chart_at(PREVIOUS, tmp_path_factory.mktemp("previous"))


def _cases(previous_chart) -> dict[str, dict]:
    import yaml

    cases = {
        f"ci/{path.name}": yaml.safe_load(path.read_text()) or {}
        for path in sorted((previous_chart / "ci").glob("*-values.yaml"))
    }
    return {**cases, **DOCS, **HANDWRITTEN}


def _comparable(obj: dict) -> dict:
    if obj["kind"] == "Secret":
        data = {k: v for k, v in (obj.get("data") or {}).items() if k not in GENERATED}
        return {**obj, "data": data}
    return obj


def _pod_template(obj: dict) -> dict | None:
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]
    return spec.get("template") if obj["kind"] in POD_OWNERS else None


def test_every_values_file_of_the_previous_chart_upgrades_changing_nothing_the_api_server_refuses(previous_chart):
    problems: dict[str, list[str]] = {}
    cases = _cases(previous_chart)
    assert len(cases) >= 30
    for name, values in cases.items():
        before = objects_of(render_chart(values, chart=previous_chart))
        try:
            after = render_objects(values)
        except helm.HelmError as error:  # a refusal is the finding, reported with the others
            problems[name] = [f"refused: {str(error)[-300:]}"]
            continue
        found = refused_changes(before, after)
        old = {(o["kind"], o["metadata"]["name"]): o for o in before}
        new = {(o["kind"], o["metadata"]["name"]): o for o in after}
        found += [
            f"{kind} {obj} removed"
            for kind, obj in old
            if (kind, obj) not in new and kind in {"PersistentVolumeClaim", "StatefulSet"}
        ]
        for key, was in old.items():
            now = new.get(key)
            if now is None:
                continue
            if key[0] == "Service" and was["spec"].get("clusterIP") != now["spec"].get("clusterIP"):
                found.append(f"Service {key[1]} spec.clusterIP")
            if _pod_template(_comparable(was)) != _pod_template(_comparable(now)):
                found.append(f"{key[0]} {key[1]} pod template (its pods restart)")
        found = [f for f in found if not f.startswith(RESTORE_JOB)]
        if _redis_mounts_the_backup_claim(after):
            found = [f for f in found if not f.startswith(BACKUP_CLAIM_MOUNTED)]
        if found:
            problems[name] = found
    assert problems == {}
    from tests.deploy.manifests import REPO_ROOT

    docs = " ".join((REPO_ROOT / "docs" / "deployment.md").read_text().split())
    assert LEAVE_RESTORE_MODE_FIRST in docs
    assert RESTARTS_REDIS_ONCE in docs


def _redis_mounts_the_backup_claim(objs: list[dict]) -> bool:
    return any(
        o["kind"] == "StatefulSet" and any(v["name"] == "backup" for v in o["spec"]["template"]["spec"]["volumes"])
        for o in objs
    )


def _release_objects(objs: list[dict]) -> set[tuple[str, str]]:
    """What `helm upgrade` applies: the release's objects, not its `helm test` hooks."""
    return {
        (o["kind"], o["metadata"]["name"])
        for o in objs
        if (o["metadata"].get("annotations") or {}).get("helm.sh/hook") != "test"
    }


def test_the_upgrade_neither_adds_nor_removes_an_object(previous_chart):
    """Same values, same objects: an object the new chart stops rendering is deleted by the upgrade
    (with its data, for a claim); one it starts rendering appears without the user asking. (At
    PREVIOUS, the only objects that differ are each release's PrometheusRule, now scoped to its
    own series, the CronJob of a schedule with a time zone, moved to spec.timeZone, and the
    ScaledObject's query or the HPA's metric selector, now on the release label: see below.)"""
    for name, values in _cases(previous_chart).items():
        before = _release_objects(objects_of(render_chart(values, chart=previous_chart)))
        assert before == _release_objects(render_objects(values)), name


def test_reuse_values_from_the_previous_release_renders_too(previous_chart, tmp_path):
    """`--reuse-values` (which the docs advise against, but which many upgrade scripts use) passes
    the previous release's values: the previous chart's values.yaml with the user's on top, without
    the keys this chart added. Each case that renders with `--reset-then-reuse-values` must render
    so too, or fail naming the value: the node port check read api.service.nodePortRange, added
    with it, and crashed on a fixed nodePort ("wrong type for value; expected string")."""
    import shutil

    import yaml

    from tests.deploy.manifests import CHART, with_registry
    from tests.deploy.test_upgrade_values import _merge

    chart = tmp_path / "atx-jobqueue"
    shutil.copytree(CHART, chart)
    previous_defaults = yaml.safe_load((previous_chart / "values.yaml").read_text())
    failed = {}
    for name, values in _cases(previous_chart).items():
        (chart / "values.yaml").write_text(yaml.safe_dump(_merge(previous_defaults, with_registry(values))))
        try:
            render_chart({"image": {"tag": "0.2.0"}}, chart=chart, bare=True)
        except helm.HelmError as error:
            failed[name] = str(error)[-300:]
    assert failed == {}


def _without(obj: dict, *path: str | int) -> dict:
    """A copy of ``obj`` without the value at ``path``, if it has one (to compare the rest)."""
    import copy

    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    node.pop(path[-1], None)
    return out


def _defaulted_strategy(rendered: dict | None) -> dict:
    """What the API server's defaulting (SetDefaults_Deployment) makes of a rendered spec.strategy:
    the live value, which the chart now writes out in full (docs/deployment.md, "Rollout strategy")."""
    strategy = dict(rendered or {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy["rollingUpdate"] = {
            "maxSurge": "25%",
            "maxUnavailable": "25%",
            **(strategy.get("rollingUpdate") or {}),
        }
    return strategy


def scenario_in_restore_mode(values: dict) -> bool:
    return bool(((values.get("redis") or {}).get("restore") or {}).get("enabled"))


def test_of_the_scalers_only_the_backlog_selector_changes(previous_chart):
    """The upgrade's changes, object by object: besides the PrometheusRule, the dashboards'
    ConfigMap (a panel more: its data only) and a time-zoned CronJob,
    only the backlog's selector of the scaler: KEDA's query (a value, so `--reuse-values` keeps the
    old one) and the HPA's metric selector move from `service=<release>-atx-jobqueue-api` to
    `app_kubernetes_io_instance=<release>`, which every documented scrape sets. Both fields are
    mutable (an HPA's spec is; KEDA names the HPA's metric s0-prometheus after the trigger's index
    and type, not its query, so the HPA KEDA owns keeps its metric name). The kept claims and
    Secrets gain only Argo CD's sync options (test_argocd.py), an annotation. The Deployments gain
    only their spec.strategy written out, with the values the API server had defaulted (so no
    live value changes and no pod restarts; test_server_side_apply.py says why)."""
    release = objects_of(render_chart({}))[0]["metadata"]["labels"]["app.kubernetes.io/instance"]
    changed: dict[str, set[str]] = {}
    for name, values in _cases(previous_chart).items():
        before = {(o["kind"], o["metadata"]["name"]): o for o in objects_of(render_chart(values, chart=previous_chart))}
        after = {(o["kind"], o["metadata"]["name"]): o for o in render_objects(values)}
        for key in _release_objects(list(before.values())) & _release_objects(list(after.values())):
            was, now = _comparable(before[key]), _comparable(after[key])
            if was == now:
                continue
            if key[0] in ("PersistentVolumeClaim", "Secret"):  # what Helm keeps, Argo CD now keeps too
                assert _without(now, "metadata", "annotations", "argocd.argoproj.io/sync-options") == was, name
                continue
            changed.setdefault(key[0], set()).add(name)
            if key[0] == "ConfigMap":  # the dashboard JSON Grafana's sidecar reloads: its data only
                assert key[1].endswith("-dashboards") and _without(was, "data") == _without(now, "data"), (name, key)
            if key[0] == "ScaledObject":
                path = ("spec", "triggers", 0, "metadata", "query")
                assert _without(was, *path) == _without(now, *path), name
                query = now["spec"]["triggers"][0]["metadata"]["query"]
                assert f'app_kubernetes_io_instance="{release}"' in query and "service=" not in query, query
            if key[0] == "Deployment":  # the strategy written out, with the values the live object has
                assert _without(was, "spec", "strategy") == _without(now, "spec", "strategy"), (name, key)
                assert now["spec"]["strategy"] == _defaulted_strategy(was["spec"].get("strategy")), (name, key)
            if key[0] == "StatefulSet":  # the backup claim mounted read-only, nothing else
                assert _redis_mounts_the_backup_claim([now]) and not _redis_mounts_the_backup_claim([was]), name
                assert _without(was, "spec", "template") == _without(now, "spec", "template"), (name, key)
            if key[0] == "CronJob" and name != "backup schedule with a time zone":  # placed beside Redis
                path = ("spec", "jobTemplate", "spec", "template", "spec", "affinity")
                assert _without(was, *path) == _without(now, *path), (name, key)
            if key[0] == "HorizontalPodAutoscaler":
                path = ("spec", "metrics", 0, "external", "metric", "selector")
                assert _without(was, *path) == _without(now, *path), name
                labels = now["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]
                assert labels == {"queue": "jobs", "app_kubernetes_io_instance": release}, labels
    assert set(changed) == {
        "PrometheusRule",
        "CronJob",
        "ScaledObject",
        "HorizontalPodAutoscaler",
        "Job",
        "ConfigMap",
        "Deployment",
        "StatefulSet",
    }, changed
    assert all(scenario_in_restore_mode(_cases(previous_chart)[name]) for name in changed["Job"]), changed["Job"]
    # every install with backups: the backup pods now follow the Redis pod (test_backup_volume.py)
    assert "backup schedule with a time zone" in changed["CronJob"]
    assert all(_redis_mounts_the_backup_claim(render_objects(_cases(previous_chart)[n])) for n in changed["CronJob"])
    assert changed["StatefulSet"] == changed["CronJob"] | {"upgrade into restore mode", "ci/restore-values.yaml"}
