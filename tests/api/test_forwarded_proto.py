"""Behind an Ingress the proxy that terminates TLS is not on loopback. The API set gunicorn's
forwarded_allow_ips to 127.0.0.1 (overriding gunicorn's own FORWARDED_ALLOW_IPS), so
`X-Forwarded-Proto: https` from the Ingress controller was ignored: /help's copy-paste examples said
`http://<ingress host>/submit`, which ingress-nginx answers with a redirect that `curl -X POST` does
not follow, and the login cookie lost `Secure`. FORWARDED_ALLOW_IPS is a setting now, and the chart
and k8s/ set it to `*`. Run against the real API under gunicorn (the trust is gunicorn's)."""

from __future__ import annotations

import pytest
import requests

from devstack.redis_server import find_redis_server
from devstack.stack import running_stack
from jobqueue.settings import SettingsError, load_settings
from tests.deploy.manifests import k8s_objects, one, pod_spec, render_objects, resolved_env

HOST = "jobs.example.org"


def _first_example(trusted: str, tmp_path) -> str:
    with running_stack(tmp_path, ALLOWED_HOSTS=f"localhost,127.0.0.1,{HOST}", FORWARDED_ALLOW_IPS=trusted) as stack:
        stack.start_api(web_concurrency=1)
        doc = requests.get(
            f"http://127.0.0.1:{stack.api_port}/help?format=json",
            headers={"Host": HOST, "X-Forwarded-Proto": "https"},
            timeout=10,
        ).json()
        return doc["examples"][0]


@pytest.mark.slow
@pytest.mark.skipif(find_redis_server() is None, reason="no redis-server binary")
@pytest.mark.parametrize(("trusted", "scheme"), [("*", "https"), ("10.9.9.9", "http"), ("127.0.0.1", "https")])
def test_the_scheme_of_the_examples_follows_only_trusted_proxies(trusted, scheme, tmp_path):
    # the request comes from 127.0.0.1: believed unless FORWARDED_ALLOW_IPS names only another proxy
    assert f"curl -s -X POST {scheme}://{HOST}/submit " in _first_example(trusted, tmp_path)


def test_forwarded_allow_ips_is_checked_at_start():
    assert load_settings({"FORWARDED_ALLOW_IPS": "10.0.0.0/8, 127.0.0.1"}).forwarded_allow_ips == "10.0.0.0/8,127.0.0.1"
    for bad in ("ingress-nginx", "10.0.0.0/33", ""):
        with pytest.raises(SettingsError, match="FORWARDED_ALLOW_IPS"):
            load_settings({"FORWARDED_ALLOW_IPS": bad})


def test_the_chart_and_k8s_believe_their_ingress():
    for objs in (render_objects(), k8s_objects("test"), k8s_objects("prod")):
        api = pod_spec(one(objs, "Deployment", "api"))["containers"][0]
        assert resolved_env(api, objs)["FORWARDED_ALLOW_IPS"] == "*"
