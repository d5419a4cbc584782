"""Where the Prometheus rules live, and small helpers to read them and to check PromQL with promtool.

Used by the dashboard generator, the tests and the e2e harness, so the file path and the
"does this PromQL parse" check exist in one place.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = REPO_ROOT / "helm" / "atx-jobqueue" / "files" / "prometheus" / "rules.yml"
RULES_TEST_FILE = REPO_ROOT / "tests" / "observability" / "rules_test.yml"
DASHBOARD_FILE = REPO_ROOT / "helm" / "atx-jobqueue" / "files" / "grafana" / "atx-jobqueue-dashboard.json"
METRICS_DOC = REPO_ROOT / "docs" / "metrics.md"

_METRIC = re.compile(r"\b(jobqueue_[a-z0-9_]+)")
_RECORDED = re.compile(r"\b(jobqueue:[a-z0-9_]+:[a-z0-9_]+)")


def load_rules(path: Path = RULES_FILE) -> dict:
    return yaml.safe_load(path.read_text())


def all_rules(path: Path = RULES_FILE) -> list[dict]:
    return [rule for group in load_rules(path)["groups"] for rule in group["rules"]]


def alerts(path: Path = RULES_FILE) -> dict[str, dict]:
    return {r["alert"]: r for r in all_rules(path) if "alert" in r}


def recordings(path: Path = RULES_FILE) -> dict[str, str]:
    return {r["record"]: r["expr"] for r in all_rules(path) if "record" in r}


def raw_metric_names(expr: str) -> set[str]:
    """Exported metric names an expression reads (histogram suffixes folded into the family)."""
    names = set()
    for name in _METRIC.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)].endswith("_seconds"):
                name = name[: -len(suffix)]
        names.add(name)
    return names


def recorded_names(expr: str) -> set[str]:
    return set(_RECORDED.findall(expr))


def documented_metrics(doc: Path = METRICS_DOC) -> set[str]:
    return set(re.findall(r"\| `(jobqueue_[a-z0-9_]+)` \|", doc.read_text()))


def promtool() -> str | None:
    return shutil.which("promtool")


def check_exprs_parse(exprs: dict[str, str]) -> None:
    """Raise ValueError naming the bad one if promtool cannot parse any of ``exprs`` (name -> PromQL).

    promtool has no offline "parse this query" command, so each expression becomes a recording
    rule in a throwaway rules file and ``promtool check rules`` parses them all.
    """
    tool = promtool()
    if tool is None:
        raise RuntimeError("promtool not found (apt-get install prometheus)")
    rules = [{"record": f"check:expr_{i}:value", "expr": expr} for i, expr in enumerate(exprs.values())]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exprs.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
        proc = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f"promtool rejected a query of {list(exprs)}:\n{proc.stdout}{proc.stderr}")
