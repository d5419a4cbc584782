"""The chart's autoscaling settings as the e2e test needs them: read from values.yaml.

The query in ``autoscaling.query`` is a Helm template (``tpl``) referring to the release namespace
and values; ``render`` substitutes exactly those references and refuses anything else, so a
change in the chart that this test cannot follow fails loudly instead of testing something else.
FALLBACK is used only while helm/atx-jobqueue/values.yaml has no ``autoscaling.query`` (before the
chart lands on this branch); it mirrors the chart's query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from observability.simulate_autoscaling import VALUES_FILE, Policy, load_values, policy_from_values

FALLBACK = {
    "config": {"queueName": "jobs"},
    "autoscaling": {
        "minReplicas": 0, "maxReplicas": 10, "threshold": 5, "activationThreshold": 0,
        "query": '(max(jobqueue_queue_depth{namespace="{{ .Release.Namespace }}",queue="{{ .Values.config.queueName }}"}) or vector(0))\n'
                 '+ (max(jobqueue_jobs_in_progress{namespace="{{ .Release.Namespace }}",queue="{{ .Values.config.queueName }}"}) or vector(0))',
        "keda": {"pollingInterval": 15, "cooldownPeriod": 120, "scaleDownStabilizationSeconds": 60},
    },
}

_REF = re.compile(r"\{\{-?\s*(\.[A-Za-z0-9_.]+)\s*-?\}\}")


@dataclass(frozen=True)
class Autoscaling:
    query_template: str
    queue_name: str
    policy: Policy
    from_chart: bool
    values: dict

    def query(self, namespace: str) -> str:
        """The PromQL KEDA would run for a release in ``namespace``."""
        return render(self.query_template, namespace, self.values)


def render(template: str, namespace: str, values: dict) -> str:
    def lookup(match: re.Match) -> str:
        ref = match.group(1)
        if ref == ".Release.Namespace":
            return namespace
        if ref.startswith(".Values."):
            node = values
            for part in ref[len(".Values."):].split("."):
                node = node[part]
            return str(node)
        raise ValueError(f"autoscaling.query uses {ref}, which this test cannot render")

    rendered = _REF.sub(lookup, template)
    if "{{" in rendered:
        raise ValueError(f"autoscaling.query has template syntax this test cannot render: {rendered}")
    return rendered


def autoscaling() -> Autoscaling:
    values = load_values(VALUES_FILE)
    from_chart = bool((values.get("autoscaling") or {}).get("query"))
    if not from_chart:
        values = FALLBACK
    return Autoscaling(values["autoscaling"]["query"], (values.get("config") or {}).get("queueName", "jobs"),
                       policy_from_values(values), from_chart, values)
