"""The chart lints strictly, renders every ci/ scenario, and renders what each scenario promises."""

from __future__ import annotations

import re
import shutil

import helm_python as helm
import pytest
import yaml

from tests.deploy.manifests import (
    CHART,
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    SCENARIOS,
    WORKLOADS,
    containers,
    find,
    one,
    pod_spec,
    render_chart,
    render_objects,
    run_with_kubectl,
    scenario_objects,
    scenario_values,
)

CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ClusterTriggerAuthentication",
    "IngressClass",
}
LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def test_every_required_scenario_exists():
    assert {"default", "keda", "hpa", "class-cluster", "persistence-off", "monitoring-on"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario):
    report = helm.lint(str(CHART), scenario_values(scenario), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], (problems, report["errors"])


@pytest.mark.parametrize(
    ("values", "annotations"),
    [
        ({}, {"grafana_folder": "atx-jobqueue"}),
        ({"folder": "Traffic/COE 332"}, {"grafana_folder": "Traffic/COE 332"}),
        (
            {"folderAnnotation": "k8s-sidecar-target-directory", "folder": "/tmp/dashboards/traffic"},
            {"k8s-sidecar-target-directory": "/tmp/dashboards/traffic"},
        ),
        ({"folder": ""}, None),
    ],
)
def test_dashboard_folder_annotation_follows_the_sidecar_key(values, annotations):
    """The grafana chart's sidecar reads the folder from the annotation its folderAnnotation names
    (null by default there and in kube-prometheus-stack: docs/observability.md); the key is a value."""
    objs = render_objects({"metrics": {"grafanaDashboard": {"enabled": True, **values}}})
    (dashboards,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboards")]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["metadata"].get("annotations") == annotations


def test_observability_doc_names_the_sidecar_settings_the_dashboard_needs():
    text = (REPO_ROOT / "docs" / "observability.md").read_text()
    for setting in ("searchNamespace", "folderAnnotation", "foldersFromFilesStructure", "labelValue"):
        assert f"{setting}`" in text, setting


def test_helm_lint_has_nothing_left_to_recommend():
    """`helm lint` reported "icon is recommended" (INFO, so --strict passed with it): Chart.yaml now
    has an icon, an inline SVG, which lint's URL check accepts (an invalid one is an ERROR)."""
    import base64

    report = helm.lint(str(CHART), scenario_values("default"), strict=True, namespace=NAMESPACE)
    assert report["messages"] == [] and not report["errors"], report
    icon = yaml.safe_load((CHART / "Chart.yaml").read_text())["icon"]
    prefix = "data:image/svg+xml;base64,"
    assert icon.startswith(prefix)
    svg = base64.b64decode(icon.removeprefix(prefix), validate=True).decode()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and svg.endswith("</svg>")


def test_scenarios_pass_the_values_schema(scenario):
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(scenario_values(scenario))


def test_every_object_is_labelled_and_namespaced(objects):
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        for key in LABELS:
            assert labels.get(key), f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"
        assert obj["metadata"]["namespace"] == NAMESPACE
        assert len(obj["metadata"]["name"]) <= 63


def test_default_install_needs_no_crd_and_nothing_cluster_scoped():
    for obj in scenario_objects("default"):
        assert not obj["apiVersion"].startswith(CRD_GROUPS), obj["kind"]
        assert obj["kind"] not in CLUSTER_SCOPED


def test_workload_selectors_match_their_pod_labels(objects):
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            selector = obj["spec"]["selector"]["matchLabels"]
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items()


def test_services_select_pods_that_exist(objects):
    pods = [o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    for svc in find(objects, "Service"):
        selector = svc["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods), svc["metadata"]["name"]


def test_pods_are_locked_down(objects):
    """runAsNonRoot with a numeric uid, seccomp RuntimeDefault, no capabilities, no escalation,
    read-only root filesystem: for every pod the chart can create."""
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(obj)
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and isinstance(ctx["runAsUser"], int) and ctx["runAsUser"] >= 10000
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in containers(obj):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert c["resources"]["limits"] and c["resources"]["requests"], c["name"]


def test_api_and_worker_pods_roll_when_config_changes():
    def checksums(values):
        objs = render_objects(values)
        return {
            c: one(objs, "Deployment", c)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for c in ("api", "worker")
        }

    before = checksums({"redis": {"auth": {"existingSecret": "fixed"}}})
    after = checksums({"redis": {"auth": {"existingSecret": "fixed"}}, "config": {"jobTimeoutSeconds": 30}})
    assert before["api"] != after["api"] and before["worker"] != after["worker"]


# ---- autoscaling ----------------------------------------------------------------------------


def test_keda_scales_the_worker_deployment_on_the_max_backlog():
    objs = scenario_objects("keda")
    scaled = one(objs, "ScaledObject")
    worker = one(objs, "Deployment", "worker")
    values = scenario_values("keda")["autoscaling"]
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": worker["metadata"]["name"],
    }
    assert scaled["spec"]["minReplicaCount"] == values["minReplicas"] == 0
    assert scaled["spec"]["maxReplicaCount"] == values["maxReplicas"]
    assert "replicas" not in worker["spec"], "a replica count would fight the autoscaler on every upgrade"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert "max(jobqueue_queue_depth{" in query and "max(jobqueue_jobs_in_progress{" in query
    assert f'namespace="{NAMESPACE}"' in query and 'queue="jobs"' in query and "{{" not in query
    assert float(trigger["metadata"]["threshold"]) == values["threshold"]
    assert float(trigger["metadata"]["activationThreshold"]) == values["activationThreshold"]


def test_hpa_scales_on_the_external_backlog_metric():
    objs = scenario_objects("hpa")
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(objs, "Deployment", "worker")["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 1
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "jobqueue_backlog"
    assert metric["external"]["target"]["type"] == "AverageValue"
    adapter = yaml.safe_load((CHART.parent / "prometheus-adapter-values.yaml").read_text())
    names = [rule["name"]["as"] for rule in adapter["rules"]["external"]]
    assert "jobqueue_backlog" in names, "the shipped prometheus-adapter rule must serve the metric the HPA reads"


def test_hpa_mode_with_the_default_minimum_starts_at_one_replica():
    hpa = one(
        render_objects({"autoscaling": {"mode": "hpa"}, "metrics": {"serviceMonitor": {"enabled": True}}}),
        "HorizontalPodAutoscaler",
    )
    assert hpa["spec"]["minReplicas"] == 1  # an HPA cannot scale to zero


def test_without_autoscaling_the_worker_count_is_fixed():
    worker = one(scenario_objects("default"), "Deployment", "worker")
    assert worker["spec"]["replicas"] == 2
    assert not find(scenario_objects("default"), "ScaledObject") and not find(
        scenario_objects("default"), "HorizontalPodAutoscaler"
    )


# ---- data -----------------------------------------------------------------------------------


def test_data_volume_is_made_and_filled_before_workers_and_mounted_read_only():
    objs = scenario_objects("class-cluster")
    pvc = [
        p
        for p in find(objs, "PersistentVolumeClaim")
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == "data"
    ][0]
    assert pvc["spec"]["storageClassName"] == "cinder-csi" and pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    # a release object kept on uninstall, never a hook (tests/deploy/test_lifecycle.py says why)
    assert "helm.sh/hook" not in pvc["metadata"]["annotations"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not find(objs, "Job"), "the loader is the API pod's init container, not a Job"
    for component, init in (("api", "load-data"), ("worker", "wait-for-data")):  # both load DATA_PATH
        deployment = one(objs, "Deployment", component)
        spec = pod_spec(deployment)
        (claim,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert claim["persistentVolumeClaim"] == {
            "claimName": pvc["metadata"]["name"],
            "readOnly": component == "worker",
        }
        for c in containers(deployment):
            mounts = [m for m in c["volumeMounts"] if m["name"] == claim["name"]]
            assert mounts and all(m.get("readOnly") for m in mounts) == (c["name"] != "load-data")
        assert [c["name"] for c in spec["initContainers"]] == [init]
        # ReadWriteOnce: every pod that reads the volume shares the node of the first one
        term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchExpressions"] == [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": ["api", "worker"]}
        ]
        assert (
            term["labelSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_shared_volume_lets_pods_spread():
    for component in ("api", "worker"):
        assert "affinity" not in pod_spec(one(scenario_objects("exposed"), "Deployment", component))


def test_persistence_off_uses_the_sample_in_the_image():
    objs = scenario_objects("persistence-off")
    assert not find(objs, "PersistentVolumeClaim") and not find(objs, "Job")
    config = [c for c in find(objs, "ConfigMap") if c["metadata"]["labels"]["app.kubernetes.io/component"] == "config"][
        0
    ]
    assert config["data"]["DATA_PATH"] == "/app/data/traffic_incidents_sample.csv"
    sts = one(objs, "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    assert any(v["name"] == "data" and "emptyDir" in v for v in pod_spec(sts)["volumes"])


# ---- Redis ----------------------------------------------------------------------------------


def test_redis_is_the_official_image_with_aof_and_a_password():
    objs = scenario_objects("default")
    sts = one(objs, "StatefulSet", "redis")
    (redis,) = [c for c in containers(sts) if c["name"] == "redis"]
    assert redis["image"].startswith("redis:7")
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = [c for c in find(objs, "ConfigMap", "redis")][0]["data"]["redis.conf"]
    assert "appendonly yes" in conf and "include /run/redis/auth.conf" in conf
    assert "requirepass" in redis["command"][-1]
    secret = one(objs, "Secret", "redis")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(secret["data"]["redis-password"]) >= 32
    (headless,) = [s for s in find(objs, "Service", "redis") if s["spec"].get("clusterIP") == "None"]
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]


@pytest.mark.parametrize(
    ("redis", "says"),
    [
        ({"resources": {"limits": {"memory": "256Mi"}}}, r"maxmemory \(350mb\) is not below .*256Mi.* e\.g\. 179mb"),
        ({"maxmemory": "512mb"}, r"not below redis\.resources\.limits\.memory \(512Mi\)"),
        ({"resources": {"limits": {"memory": "1G"}}, "maxmemory": "1gb"}, r"not below"),  # 1gb is 1024^3
        ({"maxmemory": ""}, r"maxmemory is empty"),
        ({"maxmemory": "0"}, r"maxmemory is empty \(or 0"),  # Redis: 0 is no limit
        ({"resources": {"limits": {"memory": "512m"}}}, r"not a memory quantity"),  # 0.512 bytes
    ],
)
def test_redis_maxmemory_must_be_below_its_memory_limit(redis, says):
    """A memory limit lowered to fit a class quota (256Mi) under the default maxmemory (350mb) rendered:
    Redis then grows past its limit, is OOM-killed, reloads its AOF to the same size and is killed
    again, where it should refuse writes (noeviction; the API answers 503)."""
    with pytest.raises(helm.HelmError, match=says):
        render_chart({"redis": redis})


@pytest.mark.parametrize(
    "redis",
    [
        {},
        {"resources": {"limits": {"memory": "256Mi"}}, "maxmemory": "179mb"},
        {"resources": {"limits": {"memory": "1G"}}, "maxmemory": "900m"},
        {"resources": {"limits": {"memory": "1.5Gi"}}, "maxmemory": "1gb"},
    ],
)
def test_a_maxmemory_below_the_limit_renders(redis):
    render_chart({"redis": redis})


@pytest.mark.parametrize(
    ("maxmemory", "conf"),
    [("350M", "350M"), ("300MB", "300MB"), ("300Mb", "300Mb"), (300000000, "300000000"), (300000000.0, "300000000")],
)
def test_maxmemory_in_every_form_redis_reads_renders(maxmemory, conf):
    """Redis reads its memory units in any letter case (350M, 300Mb) and a plain byte count; the
    schema refused them ("does not match pattern", "got number, want string": what --set gives for
    300000000), though the chart's own check converts them. The redis.conf line is written as given
    (a byte count in full, never 3e+08)."""
    rendered = render_objects({"redis": {"maxmemory": maxmemory}})
    (config,) = [o for o in rendered if o["kind"] == "ConfigMap" and "redis.conf" in o.get("data", {})]
    assert f"\nmaxmemory {conf}\n" in config["data"]["redis.conf"]


@pytest.mark.parametrize("maxmemory", ["600M", 600000000, "512MB"])
def test_maxmemory_in_any_form_is_held_below_the_limit(maxmemory):
    with pytest.raises(helm.HelmError, match=r"not below redis\.resources\.limits\.memory \(512Mi\)"):
        render_chart({"redis": {"maxmemory": maxmemory}})


@pytest.mark.parametrize("where", ["config", "api"])
def test_script_name_in_extra_env_is_refused_at_render(where):
    """docs/ui.md: the chart serves the API at / of its own host, and a SCRIPT_NAME in extraEnv makes
    gunicorn answer every path outside the prefix, /healthz and /readyz included, with its HTML 500:
    the API pods' probes fail and they restart for ever. It rendered; the chart already refuses the
    same wish as api.ingress.path at render. Now refused, naming the value and what to do."""
    values = {where: {"extraEnv": [{"name": "SCRIPT_NAME", "value": "/class/jq"}]}}
    with pytest.raises(helm.HelmError, match=rf"SCRIPT_NAME in {where}\.extraEnv .*probes.*own host"):
        render_chart(values)
    render_chart({where: {"extraEnv": [{"name": "LOG_FORMAT_EXTRA", "value": "x"}]}})  # other names render


def test_every_app_pod_gets_the_redis_password_from_the_secret(objects):
    secrets = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    for component in ("api", "worker"):
        (main,) = [c for c in containers(one(objects, "Deployment", component)) if c["name"] == component]
        refs = [e["valueFrom"]["secretKeyRef"] for e in main.get("env", []) if e["name"] == "REDIS_PASSWORD"]
        assert len(refs) == 1
        # the generated Secret, or the existing one the scenario names
        assert refs[0]["name"] in secrets or refs[0]["name"] == "shared-redis"


def test_existing_secret_replaces_the_generated_one():
    objs = render_objects({"redis": {"auth": {"existingSecret": "my-redis", "existingSecretKey": "pw"}}})
    assert not find(objs, "Secret")
    env = {e["name"]: e for c in containers(one(objs, "Deployment", "api")) for e in c.get("env", [])}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": "pw"}


def test_only_api_worker_and_backup_pods_reach_redis():
    objs = scenario_objects("monitoring-on")
    policy = [p for p in find(objs, "NetworkPolicy", "redis")][0]
    pods = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: (
            o["spec"]["template"]["metadata"]["labels"]
            if o["kind"] != "CronJob"
            else o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        )
        for o in objs
        if o["kind"] in ("Deployment", "Job", "CronJob")
    }
    pods["test"] = one(objs, "Pod")["metadata"]["labels"]
    redis_rule = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "redis"][0]

    def allowed(labels):
        return any(peer["podSelector"]["matchLabels"].items() <= labels.items() for peer in redis_rule["from"])

    assert allowed(pods["api"]) and allowed(pods["worker"]) and allowed(pods["redis-backup"])
    assert not allowed(pods["test"])
    other_release = dict(pods["api"], **{"app.kubernetes.io/instance": "someone-else"})
    assert not allowed(other_release)
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= one(objs, "StatefulSet")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_every_pod_is_covered_by_a_network_policy(objects):
    policies = [p["spec"]["podSelector"]["matchLabels"] for p in find(objects, "NetworkPolicy")]
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        labels = (
            obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
            if obj["kind"] == "CronJob"
            else obj["metadata"]["labels"]
            if obj["kind"] == "Pod"
            else obj["spec"]["template"]["metadata"]["labels"]
        )
        assert any(sel.items() <= labels.items() for sel in policies), obj["metadata"]["name"]


def test_backup_cronjob_writes_to_the_backup_volume():
    objs = scenario_objects("monitoring-on")
    cron = one(objs, "CronJob")
    spec = pod_spec(cron)
    claim = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    backup_pvc = [p["metadata"]["name"] for p in find(objs, "PersistentVolumeClaim", "redis-backup")]
    assert claim == backup_pvc
    assert (
        backup_pvc
        and one(objs, "PersistentVolumeClaim", "redis-backup")["metadata"]["annotations"]["helm.sh/resource-policy"]
        == "keep"
    )
    assert spec["containers"][0]["command"] == ["sh", "/scripts/backup.sh"]


def test_restore_stops_redis_and_mounts_its_volume():
    objs = scenario_objects("restore")
    sts = one(objs, "StatefulSet")
    assert sts["spec"]["replicas"] == 0
    job = [j for j in find(objs, "Job") if "restore" in j["metadata"]["name"]][0]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v}
    assert f"data-{sts['metadata']['name']}-0" in claims
    env = {e["name"]: e["value"] for e in pod_spec(job)["containers"][0]["env"]}
    assert env["RESTORE_FILE"] == scenario_values("restore")["redis"]["restore"]["file"]


def test_restore_without_a_file_fails_with_a_message():
    with pytest.raises(helm.HelmError, match=r"redis\.restore\.file"):
        render_chart({"redis": {"restore": {"enabled": True}}})


def test_external_redis_renders_no_redis_objects():
    objs = scenario_objects("external-redis")
    assert not find(objs, "StatefulSet") and not find(objs, "Secret")
    config = one(objs, "ConfigMap", "config")
    assert config["data"]["REDIS_URL"] == scenario_values("external-redis")["externalRedis"]["url"]


# ---- monitoring -----------------------------------------------------------------------------


def test_monitors_carry_the_release_label_prometheus_selects():
    objs = scenario_objects("monitoring-on")
    for kind in ("ServiceMonitor", "PodMonitor"):
        for monitor in find(objs, kind):
            assert monitor["metadata"]["labels"]["release"] == "prometheus"
    api_monitor = one(objs, "ServiceMonitor", "api")
    assert api_monitor["spec"]["endpoints"][0]["port"] == "metrics"  # the API metrics Service, not http
    assert one(objs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_scrape_annotations_point_at_the_metrics_ports():
    objs = scenario_objects("default")
    for component, port in (("api", 9102), ("worker", 9100)):
        ann = one(objs, "Deployment", component)["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(port)
        assert ann["prometheus.io/path"] == "/metrics"


def test_a_pod_a_monitor_scrapes_carries_no_scrape_annotations():
    """Review 3.2: annotations plus a ServiceMonitor/PodMonitor scrape a pod twice where Prometheus
    honours both, and the dashboard's sum()s double."""
    for obj in scenario_objects("monitoring-on"):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            assert "prometheus.io/scrape" not in (obj["spec"]["template"]["metadata"].get("annotations") or {}), obj[
                "metadata"
            ]["name"]


@pytest.fixture
def chart_with_placeholder_observability(tmp_path):
    """A copy of the chart whose rules and dashboard files are small known ones, so the templates
    are tested whatever the observability files hold."""
    chart = tmp_path / "atx-jobqueue"
    shutil.copytree(CHART, chart)
    (chart / "files" / "prometheus").mkdir(parents=True, exist_ok=True)
    (chart / "files" / "grafana").mkdir(parents=True, exist_ok=True)
    (chart / "files" / "prometheus" / "rules.yml").write_text(
        "groups:\n  - name: placeholder\n    rules:\n      - alert: Placeholder\n        expr: vector(0) > 1\n"
        "        annotations:\n          summary: 'queue {{ $labels.queue }} is {{ $value }}'\n"
    )
    for name in (chart / "files" / "grafana").glob("*.json"):
        name.unlink()
    (chart / "files" / "grafana" / "a.json").write_text('{"title": "A", "panels": []}')
    (chart / "files" / "grafana" / "b.json").write_text('{"title": "B", "panels": []}')
    return chart


def test_prometheus_rule_and_dashboards_come_from_the_files(chart_with_placeholder_observability):
    values = {"metrics": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}}
    objs = render_objects(values, chart=chart_with_placeholder_observability)
    rule = one(objs, "PrometheusRule")
    source = yaml.safe_load((chart_with_placeholder_observability / "files/prometheus/rules.yml").read_text())
    assert rule["spec"]["groups"][:-1] == source["groups"]  # then the release's own absent-series alert
    dashboards = one(objs, "ConfigMap", "monitoring")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(dashboards["data"]) == {"a.json", "b.json"}
    assert yaml.safe_load(dashboards["data"]["b.json"])["title"] == "B"


def test_prometheus_rule_matches_the_shipped_rules_file():
    source_path = CHART / "files" / "prometheus" / "rules.yml"
    objs = scenario_objects("monitoring-on")
    if not source_path.exists():
        assert not find(objs, "PrometheusRule")
        pytest.skip("files/prometheus/rules.yml not written yet (observability)")
    rule = one(objs, "PrometheusRule")
    # the same groups and rules, each expression scoped to this release (test_prometheusrule_scope.py)
    source = yaml.safe_load(source_path.read_text())["groups"]
    assert [g["name"] for g in rule["spec"]["groups"][:-1]] == [g["name"] for g in source]
    ours = [r.get("record") or r["alert"] for g in rule["spec"]["groups"][:-1] for r in g["rules"]]
    assert ours == [
        r.get("record") or r["alert"] for g in source for r in g["rules"] if r.get("alert") != "JobQueueMetricsAbsent"
    ]
    assert rule["spec"]["groups"][-1]["name"] == f"atx-jobqueue.release.{RELEASE}"


# ---- access ---------------------------------------------------------------------------------


def test_notes_give_exact_port_forward_and_curl_commands():
    notes = render_chart({})["atx-jobqueue/templates/NOTES.txt"]
    assert f"kubectl --namespace {NAMESPACE} port-forward service/{RELEASE}-atx-jobqueue-api 5000:5000" in notes
    assert "curl -s -X POST $API/submit" in notes and "curl -s $API/status/" in notes
    lines = notes.splitlines()
    forward = next(i for i, line in enumerate(lines) if "kubectl" in line and "port-forward" in line)
    assert lines[forward + 1 : forward + 3] == [
        "  export API=http://127.0.0.1:5000",
        "  curl -s $API/help    # what it serves: the routes, the operations and their parameters",
    ]
    node = render_chart(scenario_values("class-cluster"))["atx-jobqueue/templates/NOTES.txt"]
    assert "username-atx-jobqueue.coe332.tacc.cloud" in node


@pytest.mark.parametrize(
    ("values", "says", "never"),
    [
        ({}, "The Redis password was generated by this install and is kept", "API token"),
        (
            {"config": {"apiToken": {"enabled": True}}, "redis": {"auth": {"existingSecret": "mine"}}},
            "The API token was generated by this install and is kept by helm upgrade.\nWith helm template, "
            "Argo CD or Flux, create the Secrets yourself and set config.apiToken.existingSecret:",
            "Redis password",
        ),
        (
            {
                "config": {"apiToken": {"enabled": True}},
                "redis": {"enabled": False},
                "externalRedis": {"url": "redis://r:6379"},
            },
            "The API token was generated",
            "redis.auth.existingSecret",
        ),
        (
            {"api": {"service": {"port": 80}}, "data": {"persistence": {"enabled": False}}},
            "port-forward service/demo-atx-jobqueue-api 8080:80\n  export API=http://127.0.0.1:8080",
            "load-data",
        ),
    ],
)
def test_notes_name_only_what_this_install_generated_and_a_port_a_user_may_listen_on(values, says, never):
    """The NOTES said "The Redis password and the API token were generated" whenever the token was,
    also with the Redis password in an existing Secret (or no Redis of the chart's), and told to set
    redis.auth.existingSecret; with api.service.port 80 the port-forward was `80:80` (permission
    denied for a user); without a data volume step 1 still spoke of the loader filling it."""
    notes = render_chart(values)["atx-jobqueue/templates/NOTES.txt"]
    assert says in notes and never not in notes, notes


def test_notes_with_admin_and_named_tokens_tell_students_to_use_their_own(tmp_path):
    """With config.apiToken and config.apiTokens.existingSecret both set (the class-cluster example),
    NOTES told only how to read the admin token: nothing said a student uses their own token, nor
    where the instructor finds the tokens to hand out. The list's command is run with real kubectl
    (its `get` made a client-side `create` of the same Secret: no API server here)."""

    values = scenario_values("class-cluster")
    assert values["config"]["apiToken"]["enabled"] and values["config"]["apiTokens"]["existingSecret"]
    notes = render_chart(values)["atx-jobqueue/templates/NOTES.txt"]
    student = notes.index("Each student uses their own")
    admin = notes.index("The admin token")
    assert student < admin < notes.index("3. Submit a job"), notes
    assert "Secret class-tokens" in notes and "export JOBQUEUE_TOKEN=<your token>" in notes[student:admin]
    assert f"get secret {RELEASE}-atx-jobqueue-api-token " in notes[admin:], "the admin's own token, last"
    (listing,) = [line.strip() for line in notes.splitlines() if "get secret class-tokens" in line]
    (tmp_path / "class-tokens.txt").write_text("alice:tok-a\nbob:tok-b\n")
    script = listing.replace(
        f"--namespace {NAMESPACE} get secret class-tokens",
        "create secret generic class-tokens --from-file=api-tokens=class-tokens.txt --dry-run=client",
    )
    shown = run_with_kubectl(script, tmp_path)
    assert shown.returncode == 0 and shown.stdout == "alice:tok-a\nbob:tok-b\n", shown.stderr
    # one kind alone keeps its own wording
    admin_only = render_chart({"config": {"apiToken": {"enabled": True}}})["atx-jobqueue/templates/NOTES.txt"]
    assert "The job routes want a bearer token:\n  export JOBQUEUE_TOKEN=$(kubectl" in admin_only
    assert "Each student" not in admin_only and "<your token>" not in admin_only


def test_nodeport_and_ingress_route_to_the_api():
    objs = scenario_objects("class-cluster")
    svc = one(objs, "Service", "api")
    assert svc["spec"]["type"] == "NodePort"
    ingress = one(objs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"] and backend["port"]["name"] == svc["spec"]["ports"][0]["name"]


def test_helm_test_pod_submits_through_the_api_service():
    objs = scenario_objects("default")
    pod = one(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    svc = one(objs, "Service", "api")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["API_URL"] == f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "/submit" in script and "/status/" in script


def test_api_token_reaches_the_api_and_not_the_worker():
    objs = render_objects({"config": {"apiToken": {"enabled": True}}})

    def env_names(component):
        return {e["name"] for c in containers(one(objs, "Deployment", component)) for e in c.get("env", [])}

    assert "API_TOKEN" in env_names("api")
    assert "API_TOKEN" not in env_names("worker")  # the worker never calls the API: no secret it does not use
    assert "REDIS_PASSWORD" in env_names("worker")


def test_helm_test_can_submit_an_operation_with_parameters():
    """tests.params reaches the helm test pod (review polish: it always sent params {}, so an
    operation with required parameters failed `helm test`), and its script sends them."""
    import json

    pod = one(render_objects({"tests": {"operation": "incidents_by_road", "params": {"road": "IH 35"}}}), "Pod")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["TEST_OPERATION"] == "incidents_by_road" and json.loads(env["TEST_PARAMS"]) == {"road": "IH 35"}
    assert 'os.environ.get("TEST_PARAMS")' in (CHART / "files" / "scripts" / "helm_test.py").read_text()


def test_api_service_may_be_a_load_balancer():
    svc = one(render_objects({"api": {"service": {"type": "LoadBalancer"}}}), "Service", "api")
    assert svc["spec"]["type"] == "LoadBalancer"


def _pod_target_labels(monitor: dict, pod_labels: dict[str, str], namespace: str) -> dict[str, str]:
    """The labels a monitor's `replace` relabelings give a target backed by a pod with these labels:
    Prometheus exposes each pod label as __meta_kubernetes_pod_label_<name, non-alphanumerics as _>
    (for the endpoints role too, when the endpoint is a pod); regex defaults to (.*), replacement
    to $1, joined source values to ';'."""
    meta = {"__meta_kubernetes_namespace": namespace, "namespace": namespace}
    meta |= {"__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in pod_labels.items()}
    endpoints = monitor["spec"].get("endpoints") or monitor["spec"].get("podMetricsEndpoints")
    labels = dict(meta)
    for rule in endpoints[0].get("relabelings") or []:
        assert rule.get("action", "replace") == "replace", rule
        value = ";".join(labels.get(s, "") for s in rule.get("sourceLabels") or [])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            labels[rule["targetLabel"]] = match.expand(rule.get("replacement", "$1").replace("$1", r"\g<1>"))
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def test_api_and_worker_series_of_two_releases_in_one_namespace_carry_their_release():
    """The backlog alert joins the API's queue series and the workers' busy series on the labels its
    `on (...)` names: each release's monitors must give both sides those labels, with values that
    differ between two releases in one namespace (a student's dev and demo)."""
    rules_text = (CHART / "files" / "prometheus" / "rules.yml").read_text()
    alert = next(
        r
        for g in yaml.safe_load(rules_text)["groups"]
        for r in g["rules"]
        if r.get("alert") == "JobQueueBacklogNoBusyWorker"
    )
    join = [s.strip() for s in re.search(r"unless on \(([^)]*)\)", alert["expr"]).group(1).split(",")]
    assert "namespace" in join and len(join) > 1, join
    seen = {}
    for release in ("dev", "demo"):
        objs = render_objects(
            {"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}},
            name=release,
            namespace="class",
        )
        api_service = next(
            s
            for s in find(objs, "Service")
            if all(
                s["metadata"]["labels"].get(k) == v
                for k, v in one(objs, "ServiceMonitor", "api")["spec"]["selector"]["matchLabels"].items()
            )
        )
        sides = {}
        for side, monitor, selector in (
            ("api", one(objs, "ServiceMonitor", "api"), api_service["spec"]["selector"]),
            (
                "worker",
                one(objs, "PodMonitor", "worker"),
                one(objs, "PodMonitor", "worker")["spec"]["selector"]["matchLabels"],
            ),
        ):
            (pod_labels,) = [
                d["spec"]["template"]["metadata"]["labels"]
                for d in find(objs, "Deployment")
                if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
            ]
            target = _pod_target_labels(monitor, pod_labels, "class")
            sides[side] = tuple(target.get(label) for label in join)
        assert sides["api"] == sides["worker"] and None not in sides["api"], (release, sides)
        seen[release] = sides["api"]
    assert seen["dev"] != seen["demo"], seen


def test_every_monitor_labels_its_series_with_the_release():
    """The dashboard's release variable filters every panel, the Redis row too."""
    objs = render_objects(
        {
            "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
            "redis": {"exporter": {"enabled": True}},
        }
    )
    monitors = find(objs, "ServiceMonitor") + find(objs, "PodMonitor")
    assert len(monitors) == 3, [m["metadata"]["name"] for m in monitors]
    for monitor in monitors:
        target = _pod_target_labels(monitor, {"app.kubernetes.io/instance": RELEASE}, NAMESPACE)
        assert target.get("app_kubernetes_io_instance") == RELEASE, monitor["metadata"]["name"]
