"""api.strategy and worker.strategy: the rollout strategy of the two Deployments (docs/deployment.md,
"Rollout strategy"; docs/first-install.md, step 0 on namespace quotas).

The schema refuses what the API server refuses (kubernetes pkg/apis/apps/validation/validation.go,
ValidateDeploymentStrategy and ValidateRollingUpdateDeployment): a type other than RollingUpdate or
Recreate; rollingUpdate with type Recreate ("spec.strategy.rollingUpdate: Forbidden: may not be
specified when strategy `type` is 'Recreate'"); maxSurge and maxUnavailable both 0; maxUnavailable
above 100%; a string that is not a percentage."""

from __future__ import annotations

import helm_python as helm
import kubernetes_validate
import pytest

from tests.deploy.manifests import CHART, one, render_objects, scenario_objects, scenario_values

VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]


def _strategies(objs):
    return {c: one(objs, "Deployment", c)["spec"].get("strategy") for c in ("api", "worker")}


def test_defaults_render_the_api_servers_default_in_full():
    """Empty values render the API server's own default (RollingUpdate, maxSurge and maxUnavailable
    25%), written out so that Helm owns the fields (tests/deploy/test_server_side_apply.py): an upgrade
    to this chart changes no live value and restarts nothing."""
    default = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert _strategies(scenario_objects("default")) == {"api": default, "worker": default}


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ({"maxSurge": 0}, {"maxSurge": 0, "maxUnavailable": "25%"}),
        ({"maxUnavailable": "10%"}, {"maxSurge": "25%", "maxUnavailable": "10%"}),
        ({"maxSurge": 2, "maxUnavailable": 0}, {"maxSurge": 2, "maxUnavailable": 0}),
    ],
)
def test_a_partial_rolling_update_gets_the_other_fields_default(given, written):
    """A 0 is kept as given (not taken for unset): maxSurge 0 is the quota-friendly rollout."""
    assert _strategies(render_objects({"api": {"strategy": {"rollingUpdate": given}}}))["api"] == {
        "type": "RollingUpdate",
        "rollingUpdate": written,
    }


def test_ci_scenario_renders_the_strategies_it_sets():
    values = scenario_values("persistence-off")
    found = _strategies(scenario_objects("persistence-off"))
    assert found["api"] == {"type": "RollingUpdate", "rollingUpdate": values["api"]["strategy"]["rollingUpdate"]}
    # rollingUpdate: null on purpose: the live Deployment keeps the rollingUpdate the API server
    # defaulted while it was RollingUpdate, and a patch setting only the type is refused
    # (kubernetes/kubernetes#24198); the null makes Helm's three-way merge patch delete it.
    assert found["worker"] == {"type": "Recreate", "rollingUpdate": None}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "Recreate"},
        {"type": "Recreate", "rollingUpdate": None},
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "0%"}},
        {"type": "RollingUpdate"},
    ],
)
def test_accepted_strategies_render_valid_deployments(strategy, version):
    objs = render_objects({"api": {"strategy": strategy}, "worker": {"strategy": strategy}})
    for component in ("api", "worker"):
        deployment = one(objs, "Deployment", component)
        assert deployment["spec"]["strategy"]["type"] == strategy.get("type", "RollingUpdate")
        kubernetes_validate.validate(deployment, version, strict=True)


@pytest.mark.parametrize(
    ("strategy", "says"),
    [
        (
            {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}},
            "type Recreate takes no rollingUpdate (the API server refuses it",
        ),
        ({"type": "Rolling"}, "value must be one of 'RollingUpdate', 'Recreate'"),
        (
            {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
            "rollingUpdate/maxUnavailable': minimum: got 0, want 1",
        ),
        (
            {"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "0%"}},
            "rollingUpdate/maxUnavailable': '0%' does not match",
        ),
        ({"rollingUpdate": {"maxUnavailable": "120%"}}, "rollingUpdate/maxUnavailable': '120%' does not match"),
        ({"rollingUpdate": {"maxSurge": "1"}}, "rollingUpdate/maxSurge': '1' does not match"),
        ({"recreate": True}, "additional properties 'recreate' not allowed"),
    ],
)
@pytest.mark.parametrize("component", ["api", "worker"])
def test_schema_refuses_what_the_api_server_refuses(component, strategy, says):
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError) as refused:
            chart.validate_schema({component: {"strategy": strategy}})
    assert f"/{component}/strategy" in str(refused.value)
    assert says in str(refused.value), str(refused.value)
