#!/usr/bin/env python3
"""Make the values tables of the chart README and docs/deployment.md from the `## @param` lines in
values.yaml (the Bitnami readme-generator convention, without its Node dependency).

    python helm/tools/values_table.py          # rewrite the tables between the markers
    python helm/tools/values_table.py --check  # exit 1 if a table is out of date (tests run this)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "helm" / "atx-jobqueue" / "values.yaml"
TARGETS = [ROOT / "helm" / "atx-jobqueue" / "README.md", ROOT / "docs" / "deployment.md"]
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"
PARAM = re.compile(r"^\s*## @param (\S+) (.+)$")
SECTION = re.compile(r"^\s*## @section (.+)$")


def params(text: str) -> list[tuple[str, str, str]]:
    """(section, key, description) for every @param line, in file order."""
    out, section = [], ""
    for line in text.splitlines():
        if m := SECTION.match(line):
            section = m.group(1).strip()
        elif m := PARAM.match(line):
            out.append((section, m.group(1), m.group(2).strip()))
    return out


def lookup(values: dict, key: str):
    node = values
    for part in key.split("."):
        node = node[part]
    return node


def render_default(value) -> str:
    if isinstance(value, str):
        text = json.dumps(value) if value == "" else value
    else:
        text = json.dumps(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def table(text: str) -> str:
    values = yaml.safe_load(text)
    lines, current = [], None
    for section, key, desc in params(text):
        if section != current:
            lines += ["", f"### {section}", "", "| Name | Description | Default |", "| --- | --- | --- |"]
            current = section
        cell = desc.replace("|", "\\|")
        lines.append(f"| `{key}` | {cell} | {render_default(lookup(values, key))} |")
    return "\n".join(lines[1:]) + "\n"


def updated(doc: str, body: str) -> str:
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{body}{END}{tail}"


def main(argv: list[str]) -> int:
    body = table(VALUES.read_text())
    stale = []
    for target in TARGETS:
        doc = target.read_text()
        new = updated(doc, body)
        if new != doc:
            stale.append(target)
            if "--check" not in argv:
                target.write_text(new)
    if "--check" in argv and stale:
        print(
            "out of date: "
            + ", ".join(str(p.relative_to(ROOT)) for p in stale)
            + " (run python helm/tools/values_table.py)"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
