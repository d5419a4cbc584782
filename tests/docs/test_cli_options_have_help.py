"""Every option of every command in the tree has a help string: ``--help`` is where a user looks
first, and ``scripts/personalize-k8s --help`` listed ``--dir DIR`` and ``--tag TAG`` with nothing
after them (as did ``jobqueue jobs --status``, the simulator's chart settings and the benchmarks').

Each command's parser is read as it is built: its module runs as ``__main__`` with ``parse_args``
replaced by a check of the parser (subcommands included), so no command does any work here. The
commands are found by what builds an ``ArgumentParser``, so a new one is checked too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devstack.paths import REPO_ROOT

CHECKER = r"""
import argparse, json, runpy, sys
sys.path.insert(0, ".")
found = {}

class Checked(SystemExit):
    pass

def check(self, *args, **kwargs):
    missing = []
    def walk(parser, words):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, words + [name])
            elif not action.help and action.help != argparse.SUPPRESS:
                missing.append(" ".join(words + [max(action.option_strings or [action.dest], key=len)]))
    walk(self, [])
    raise Checked(missing)

argparse.ArgumentParser.parse_args = check
argparse.ArgumentParser.parse_known_args = check
for target in sys.argv[1:]:
    sys.argv = [target, "--help"]
    try:
        if target.endswith(".py") or "/" in target:
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        found[target] = "no parser"
    except Checked as done:
        found[target] = done.code
print(json.dumps(found))
"""

CONSOLE_SCRIPTS = ["jobqueue.cli", "jobqueue_api.serve", "jobqueue_worker.main"]


def _commands() -> list[str]:
    """Every module or script that builds an ``ArgumentParser`` and runs as a command."""
    out = list(CONSOLE_SCRIPTS)
    for folder in ("bench", "observability", "helm/tools"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            text = path.read_text()
            if "ArgumentParser(" in text and '__name__ == "__main__"' in text:
                out.append(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts))
    out += [
        str(p.relative_to(REPO_ROOT))
        for p in sorted((REPO_ROOT / "scripts").iterdir())
        if p.read_bytes().startswith(b"#!/usr/bin/env python")
    ]
    return out


def missing_help(targets: list[str], cwd: Path = REPO_ROOT) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHECKER, *targets], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_every_option_of_every_command_has_help():
    commands = _commands()
    assert "scripts/personalize-k8s" in commands and "observability.simulate_autoscaling" in commands
    found = missing_help(commands)
    assert all(found[c] != "no parser" for c in commands), found
    bare = {c: m for c, m in found.items() if m}
    assert not bare, f"options with no help string (say in a few words what each does): {bare}"


def test_the_check_sees_an_option_without_help(tmp_path: Path):
    script = tmp_path / "tool.py"
    script.write_text(
        "import argparse\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--dir')\n"
        "p.add_argument('--tag', help='the tag')\n"
        "sub = p.add_subparsers().add_parser('go')\n"
        "sub.add_argument('--fast', action='store_true')\n"
        "p.parse_args()\n"
    )
    assert missing_help([str(script)]) == {str(script): ["--dir", "go --fast"]}
