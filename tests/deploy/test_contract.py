"""The chart and k8s/ speak the code's language: every environment variable an API or worker pod
gets is one jobqueue.settings reads, with a value its parser accepts; ports, probe paths, commands
and images are the ones the code and the images use."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from jobqueue.settings import SPEC, SettingsError, load_settings
from tests.deploy.manifests import (
    CHART,
    containers,
    find,
    installed_objects,
    k8s_objects,
    one,
    pod_spec,
    resolved_env,
    scenario_objects,
)

# Read by libraries the services use, not by jobqueue.settings; each with the reason it is set.
THIRD_PARTY_ENV = {
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client: gunicorn's processes share metrics through files in it",
}
APP_CONTAINERS = {"api": "api", "worker": "worker"}
LOADER = "load-data"  # the API pod's init container: the loader script's own variables (test below)


def _app(deployment):
    """The containers of an API/worker pod that run the application's code (not the loader)."""
    return [c for c in containers(deployment) if c["name"] != LOADER]


def _app_containers(objs):
    for component in APP_CONTAINERS:
        deployment = one(objs, "Deployment", component)
        for c in containers(deployment):
            yield component, deployment, c


def _all_sources():
    from tests.deploy.manifests import SCENARIOS

    for scenario in SCENARIOS:
        yield f"chart:{scenario}", scenario_objects(scenario)
    for env in ("test", "prod"):
        yield f"k8s:{env}", k8s_objects(env)


SOURCES = [pytest.param(name, id=name) for name, _ in _all_sources()]


def _objects(source):
    kind, name = source.split(":")
    return installed_objects(name) if kind == "chart" else k8s_objects(name)


def _by_component(objs, component):
    """Deployments by component label (chart) or `app` label suffix (k8s/)."""
    found = [
        o
        for o in objs
        if o["kind"] == "Deployment" and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, component
    return found[0]


@pytest.mark.parametrize("source", SOURCES)
def test_env_names_are_settings_the_code_reads(source):
    objs = _objects(source)
    for component in APP_CONTAINERS:
        for c in _app(_by_component(objs, component)):
            env = resolved_env(c, objs)
            unknown = set(env) - set(SPEC) - set(THIRD_PARTY_ENV)
            assert not unknown, f"{source} {component}/{c['name']}: {sorted(unknown)} are not in jobqueue.settings.SPEC"


@pytest.mark.parametrize("source", SOURCES)
def test_env_values_parse(source):
    objs = _objects(source)
    for component in APP_CONTAINERS:
        for c in _app(_by_component(objs, component)):
            env = {k: v for k, v in resolved_env(c, objs).items() if k in SPEC}
            try:
                load_settings(env)
            except SettingsError as exc:  # pragma: no cover - the assertion message is the point
                pytest.fail(f"{source} {component}/{c['name']}: {exc}")


@pytest.mark.parametrize("source", SOURCES)
def test_ports_and_probes_match_the_settings(source):
    objs = _objects(source)
    api = _by_component(objs, "api")
    (main,) = [c for c in pod_spec(api)["containers"] if c["name"] == "api"]
    settings = load_settings({k: v for k, v in resolved_env(main, objs).items() if k in SPEC})
    (http,) = [p for p in main["ports"] if p["name"] == "http"]
    assert http["containerPort"] == settings.port
    (metrics,) = [p for p in main["ports"] if p["name"] == "metrics"]
    assert metrics["containerPort"] == settings.api_metrics_port != settings.port
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": http["name"]}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": http["name"]}
    assert main["command"] == ["jobqueue-api"]

    worker = _by_component(objs, "worker")
    (wmain,) = [c for c in pod_spec(worker)["containers"] if c["name"] == "worker"]
    wsettings = load_settings({k: v for k, v in resolved_env(wmain, objs).items() if k in SPEC})
    (metrics,) = wmain["ports"]
    assert metrics["containerPort"] == wsettings.worker_metrics_port
    assert wmain["command"] == ["jobqueue-worker"]
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > wsettings.shutdown_grace_seconds
    # API and worker containers never mount the data volume writable (only the loader does)
    for deployment in (api, worker):
        for c in _app(deployment):
            for m in c.get("volumeMounts", []):
                if m["name"] == "data":
                    assert m["readOnly"] is True


@pytest.mark.parametrize("source", SOURCES)
def test_services_target_the_declared_ports(source):
    objs = _objects(source)
    api = _by_component(objs, "api")
    port_names = {p["name"]: p["containerPort"] for c in pod_spec(api)["containers"] for p in c.get("ports", [])}
    services = [s for s in find(objs, "Service") if s["metadata"]["labels"].get("app.kubernetes.io/component") == "api"]
    assert services
    for svc in services:
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names


def test_chart_defaults_are_the_code_defaults():
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert str(values["api"]["port"]) == SPEC["PORT"][0]
    assert str(values["worker"]["metricsPort"]) == SPEC["WORKER_METRICS_PORT"][0]
    # the chart's grace follows its job timeout (null: JOB_TIMEOUT_SECONDS; tests/deploy/test_timeouts.py)
    assert values["config"]["shutdownGraceSeconds"] is None
    assert str(values["config"]["jobTimeoutSeconds"]) == SPEC["JOB_TIMEOUT_SECONDS"][0]
    assert values["config"]["queueName"] == SPEC["QUEUE_NAME"][0]
    assert str(values["config"]["jobLeaseSeconds"]) == SPEC["JOB_LEASE_SECONDS"][0]
    assert str(values["config"]["jobRetryBackoffSeconds"]) == SPEC["JOB_RETRY_BACKOFF_SECONDS"][0]
    assert str(values["config"]["dataMaxBytes"]) == SPEC["DATA_MAX_BYTES"][0]


def test_commands_are_installed_console_scripts():
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    assert {"jobqueue-api", "jobqueue-worker", "jobqueue"} <= scripts


def test_images_are_the_projects_two_images():
    for source, objs in _all_sources():
        for component, image in (("api", "atx-jobqueue-api"), ("worker", "atx-jobqueue-worker")):
            for c in containers(_by_component(objs, component)):
                name = c["image"].rsplit("/", 1)[-1].split(":")[0]
                assert name == image, f"{source}: {c['image']}"


def test_loader_runs_the_projects_cli_with_settings_only():
    """The data loader is `jobqueue data fetch` (no second copy of the download code); its
    variables are settings, everything else is a flag the CLI declares."""
    api = one(scenario_objects("class-cluster"), "Deployment", "api")
    (loader,) = [c for c in containers(api) if c["name"] == LOADER]
    assert loader["command"][2:5] == ["jobqueue", "data", "fetch"]
    env = {e["name"] for e in loader["env"]}
    assert env <= set(SPEC), env - set(SPEC)


def test_k8s_and_chart_agree():
    """Same images, same variables, same ports, probe paths and commands in both ways to deploy.
    The class cluster requires tokens (its Secret the instructor's); k8s/ with its tokens Secret
    made (k8s/README.md, "Require a token") passes the same two variables."""
    chart = installed_objects("class-cluster")
    for env in ("test", "prod"):
        tokens = {"api-token": "admin-token", "api-tokens": "alice:alice-token"}
        secret = {"kind": "Secret", "metadata": {"name": f"atx-jobqueue-{env}-api-tokens"}, "stringData": tokens}
        k8s = k8s_objects(env) + [secret]
        for component in APP_CONTAINERS:
            ours, theirs = _by_component(chart, component), _by_component(k8s, component)
            c_main = [c for c in pod_spec(ours)["containers"]][0]
            k_main = [c for c in pod_spec(theirs)["containers"]][0]
            assert set(resolved_env(c_main, chart)) == set(resolved_env(k_main, k8s))
            assert c_main["command"] == k_main["command"]
            assert [(p["name"], p["containerPort"]) for p in c_main["ports"]] == [
                (p["name"], p["containerPort"]) for p in k_main["ports"]
            ]
            for probe in ("livenessProbe", "readinessProbe"):
                assert c_main[probe]["httpGet"] == k_main[probe]["httpGet"]
            assert c_main["image"].split(":")[0].rsplit("/", 1)[-1] == k_main["image"].split(":")[0].rsplit("/", 1)[-1]
            chart_env = resolved_env(c_main, chart)
            k8s_env = resolved_env(k_main, k8s)
            for name in (
                "PORT",
                "WORKER_METRICS_PORT",
                "QUEUE_NAME",
                "REDIS_JOBS_DB",
                "REDIS_QUEUE_DB",
                "DATA_PATH",
                "DATA_CACHE_DIR",
            ):
                if name == "DATA_PATH":
                    assert chart_env[name].rsplit("/", 1)[-1] == k8s_env[name].rsplit("/", 1)[-1]
                else:
                    assert chart_env[name] == k8s_env[name], name
        assert (
            pod_spec(_by_component(k8s, "worker"))["terminationGracePeriodSeconds"]
            == pod_spec(_by_component(chart, "worker"))["terminationGracePeriodSeconds"]
        )


def test_k8s_manifests_are_class_cluster_ready():
    for env in ("test", "prod"):
        objs = k8s_objects(env)
        for pvc in find(objs, "PersistentVolumeClaim"):
            assert pvc["spec"]["storageClassName"] == "cinder-csi"
        secret = one(objs, "Secret")
        assert secret["stringData"]["redis-password"]
        for component in APP_CONTAINERS:
            main = pod_spec(_by_component(objs, component))["containers"][0]
            refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in main["env"] if e["name"] == "REDIS_PASSWORD"]
            assert refs == [secret["metadata"]["name"]]
        assert one(objs, "Ingress")["spec"]["ingressClassName"] == "nginx"
        assert one(objs, "Service", "api")["spec"]["type"] == "NodePort"
    text = "".join(p.read_text() for p in (CHART.parents[1] / "k8s").rglob("*.y*ml"))
    assert text.count("# EDIT") >= 6, "host, images and password must be marked for editing"
    test_pw = one(k8s_objects("test"), "Secret")["stringData"]["redis-password"]
    assert test_pw != one(k8s_objects("prod"), "Secret")["stringData"]["redis-password"]


def test_kustomizations_list_every_manifest_file():
    """kubectl apply -k must send every file of the folder (and the validators see them all)."""
    import yaml as _yaml

    for env in ("test", "prod"):
        folder = CHART.parents[1] / "k8s" / env
        listed = set(_yaml.safe_load((folder / "Kustomization").read_text())["resources"])
        assert listed == {p.name for p in folder.glob("*.yml")}
        assert all(p.name.startswith(f"app-{env}-") for p in folder.glob("*.yml"))


def test_k8s_redis_runs_with_the_charts_persistence_settings():
    """k8s/ configures Redis on its command line, the chart in redis.conf: same durability either way."""
    conf = one(scenario_objects("default"), "ConfigMap", "redis")["data"]["redis.conf"]
    chart_settings = {
        line.split()[0]: line.split()[1]
        for line in conf.splitlines()
        if line and not line.startswith("#") and len(line.split()) == 2
    }
    for env in ("test", "prod"):
        redis = [
            o
            for o in k8s_objects(env)
            if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
        ][0]
        (container,) = pod_spec(redis)["containers"]
        words = " ".join(container["command"]).replace("\\\n", " ").split()
        args = {words[i][2:]: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
        for key in ("appendonly", "appendfsync", "maxmemory-policy"):
            assert args[key] == chart_settings[key], key
        assert "requirepass" in container["command"][-1]
        assert redis["spec"]["strategy"]["type"] == "Recreate", (
            "a RWO volume cannot serve two Redis pods during a rollout"
        )


def test_every_setting_is_set_by_the_chart():
    """A new setting in jobqueue.settings must reach the pods (a value or a fixed choice), or be
    listed here with the reason it is left to its default."""
    left_unset = {
        "API_TOKEN": "only with config.apiToken.enabled (a Secret)",
        "API_TOKENS": "only with config.apiTokens.existingSecret (a Secret)",
        "TOKEN_FAILURE_LIMIT": "only with config.tokenFailureLimit set (test below): a ConfigMap that "
        "gained a key would roll every pod on upgrade (tests/deploy/test_upgrade_from_previous.py)",
        "MAX_JOBS_PER_CLIENT": "only with config.maxJobsPerClient set (test below), for the same reason",
        "DATA_DAY_FIRST": "only with config.dataDayFirst set (tests/deploy/test_data_loader.py), for the same reason",
        "TOKEN_FAILURE_WINDOW_SECONDS": "its default, 60 s; shorter in tests. Set, it would be a new ConfigMap key "
        "that rolls every pod on upgrade",
        "SUBMIT_RATE_WINDOW_SECONDS": "its default, 60 s; shorter in tests, as TOKEN_FAILURE_WINDOW_SECONDS",
    }
    objs = scenario_objects("default")
    for component in APP_CONTAINERS:
        main = [c for c in pod_spec(one(objs, "Deployment", component))["containers"] if c["name"] == component][0]
        missing = set(SPEC) - set(resolved_env(main, objs)) - set(left_unset)
        assert not missing, f"{component}: the chart does not set {sorted(missing)}"
    token = render_token_env()
    assert token == {
        "name": "API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "demo-atx-jobqueue-api-token", "key": "api-token"}},
    }


@pytest.mark.parametrize("limit", [0, 5])
def test_a_token_failure_limit_set_reaches_the_api(limit):
    """Unset, the API's own default applies (no key: the ConfigMap renders as before the value
    existed); set, 0 included (no limit), the API gets it."""
    from tests.deploy.manifests import render_objects

    for values, expected in (({}, None), ({"config": {"tokenFailureLimit": limit}}, str(limit))):
        objs = render_objects(values)
        main = pod_spec(one(objs, "Deployment", "api"))["containers"][0]
        assert resolved_env(main, objs).get("TOKEN_FAILURE_LIMIT") == expected, values


@pytest.mark.parametrize("cap", [0, 2000])
def test_a_jobs_per_client_cap_set_reaches_the_api(cap):
    """Unset, no key (the ConfigMap and its checksum as before the value existed: no pod rolls on
    upgrade) and the API's default, no cap; set, the API gets it."""
    from tests.deploy.manifests import render_objects

    for values, expected in (({}, None), ({"config": {"maxJobsPerClient": cap}}, str(cap))):
        objs = render_objects(values)
        main = pod_spec(one(objs, "Deployment", "api"))["containers"][0]
        assert resolved_env(main, objs).get("MAX_JOBS_PER_CLIENT") == expected, values


def test_forms_behind_a_shared_address_have_no_wrong_token_budget():
    """The class cluster's values and k8s/ are reached through an Ingress (or a NodePort's source
    NAT): every client has a shared address there, so a budget per address would let one client
    lock all out. They turn it off (their tokens are generated); the default leaves the API's."""
    forms = {"class-cluster": installed_objects("class-cluster"), "k8s-test": k8s_objects("test")}
    forms["k8s-prod"] = k8s_objects("prod")
    for name, objs in forms.items():
        api = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-api")][0]
        assert resolved_env(pod_spec(api)["containers"][0], objs).get("TOKEN_FAILURE_LIMIT") == "0", name


def render_token_env():
    from tests.deploy.manifests import render_objects

    objs = render_objects({"config": {"apiToken": {"enabled": True}}})
    main = pod_spec(one(objs, "Deployment", "api"))["containers"][0]
    return [e for e in main["env"] if e["name"] == "API_TOKEN"][0]


def test_the_longest_job_timeout_the_chart_takes_renders_settings_the_programs_take():
    """config.jobTimeoutSeconds: 7200 (the schema allows a day) rendered SHUTDOWN_GRACE_SECONDS=7200
    (the grace follows the timeout), which every API and worker pod refused at start: "must be
    between 0 and 3600"."""
    import json

    from tests.deploy.manifests import render_objects

    schema = json.loads((CHART / "values.schema.json").read_text())
    longest = schema["properties"]["config"]["properties"]["jobTimeoutSeconds"]["maximum"]
    objs = render_objects({"config": {"jobTimeoutSeconds": longest}})
    for component in APP_CONTAINERS:
        for c in _app(_by_component(objs, component)):
            settings = load_settings({k: v for k, v in resolved_env(c, objs).items() if k in SPEC})
            assert settings.shutdown_grace_seconds == settings.job_timeout_seconds == longest
