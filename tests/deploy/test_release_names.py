"""Release names Helm accepts (up to 53 characters, may start with a digit) give object names the API
server and its controllers accept, or the render stops saying which name to use.

Kubernetes takes a StatefulSet named up to 63 characters, but its controller then cannot create the
pod (the `controller-revision-hash` label is the name plus 11 characters, over the 63 a label value
may have: kubernetes/kubernetes#64023), and refuses a CronJob above 52 (its Jobs add 11). A Service
name must start with a letter. Component names cut at 63 characters collide (`-api` and
`-api-metrics`, `-redis` and `-redis-client`), and Helm then sends two objects of one name.
"""

from __future__ import annotations

import collections
import re

import helm_python as helm
import pytest

from tests.deploy.manifests import render_objects

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
BACKUP = {"redis": {"backup": {"enabled": True}}}
EXTERNAL = {"redis": {"enabled": False}, "externalRedis": {"url": "redis://shared-redis:6379"}}


def name_problems(objs) -> list[str]:
    problems = [
        f"two {kind}s named {name}"
        for (kind, name), n in collections.Counter((o["kind"], o["metadata"]["name"]) for o in objs).items()
        if n > 1
    ]
    for o in objs:
        kind, name = o["kind"], o["metadata"]["name"]
        if kind == "Service" and not (len(name) <= 63 and DNS1035.match(name)):
            problems.append(f"Service {name} is not a DNS-1035 label")
        if kind in {"StatefulSet", "CronJob"} and len(name) > 52:
            problems.append(f"{kind} {name} is {len(name)} characters (52 at most)")
    return problems


@pytest.mark.parametrize(
    ("release", "values"),
    [
        ("x" * 33, {}),  # release + "-atx-jobqueue" + "-redis": 52
        ("x" * 26, BACKUP),  # ... + "-redis-backup": 52
        ("x" * 38, EXTERNAL),  # ... + "-api-metrics": 63
        ("coe332-atx-jobqueue-final-project-2", {}),  # holds the chart's name: used as it is
        ("jobs-2", {}),
    ],
)
def test_the_longest_names_that_work_render_names_kubernetes_accepts(release, values):
    assert name_problems(render_objects(values, name=release)) == []


@pytest.mark.parametrize(
    ("release", "values", "says"),
    [
        ("x" * 34, {}, r"Redis StatefulSet .* at most 33 characters, or set fullnameOverride to a name of at most 46"),
        ("coe332-final-project-traffic-jobqueue-release-abc", {}, r"at most 33 characters"),
        ("a" * 53, {}, r"at most 33 characters"),  # Helm's own limit: the names were cut and collided
        ("x" * 27, BACKUP, r"backup CronJob .* at most 26 characters"),
        ("x" * 39, EXTERNAL, r"metrics Service .* at most 38 characters"),
        ("2024-jobs", {}, r"starting with a letter"),
        ("jobs.v2", {}, r"starting with a letter"),
    ],
)
def test_names_kubernetes_would_refuse_stop_the_render_saying_what_to_use(release, values, says):
    with pytest.raises(helm.HelmError, match=says):
        render_objects(values, name=release)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"fullnameOverride": "f" * 50}, r"Shorten fullnameOverride to at most 46 characters"),
        ({"nameOverride": "n" * 50}, r"Shorten nameOverride, or set fullnameOverride to a name of at most 46"),
    ],
)
def test_the_way_out_fits_what_made_the_names_long(values, says):
    with pytest.raises(helm.HelmError, match=says):
        render_objects(values, name="jobs")


def test_fullname_override_is_the_way_out_for_a_long_release_name():
    objs = render_objects({"fullnameOverride": "jobs"}, name="x" * 53)
    assert name_problems(objs) == []
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "StatefulSet"} == {"jobs-redis"}
