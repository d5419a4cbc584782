"""No code path turns data into code: no eval/exec, no pickle, no unsafe YAML, no shell=True.

The scan covers everything that runs in a deployment (``services/`` and ``shared/``). The
self-tests below prove each rule fires, so a green scan means something.
"""

from __future__ import annotations


import pytest

from devstack.paths import REPO_ROOT
from tests.security.code_scan import scan_source, scan_tree


def test_service_code_has_no_code_from_data_constructs():
    roots = [REPO_ROOT / "services", REPO_ROOT / "shared"]
    files = [f for root in roots for f in root.rglob("*.py")]
    assert len(files) >= 10, "the scan found almost nothing to scan: wrong roots?"
    findings = scan_tree(*roots, relative_to=REPO_ROOT)
    assert not findings, "forbidden constructs in service code:\n" + "\n".join(map(str, findings))


@pytest.mark.parametrize(
    "snippet",
    [
        "eval('1+1')",
        "exec('x = 1')",
        "import builtins\nbuiltins.eval('1')",
        "import pickle",
        "import pickle as p",
        "from pickle import loads",
        "import _pickle",
        "import dill",
        "import marshal",
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)",
        "import yaml\nyaml.unsafe_load(text)",
        "import yaml\nyaml.full_load(text)",
        "import subprocess\nsubprocess.run('ls', shell=True)",
        "import subprocess\nsubprocess.Popen(cmd, shell=flag)",
        "import os\nos.system('ls')",
        "from hotqueue import HotQueue\nHotQueue('jobs')",
        "from hotqueue import HotQueue\nHotQueue('jobs', serializer=pickle)",
    ],
)
def test_scanner_catches(snippet):
    assert scan_source(snippet), f"the scanner missed: {snippet!r}"


@pytest.mark.parametrize(
    "snippet",
    [
        "# eval( in a comment is harmless\nx = 1",
        "'''docstring that says pickle.loads( and eval('''",
        "import yaml\nyaml.safe_load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
        "import yaml\nyaml.load(text, yaml.CSafeLoader)",
        "import subprocess\nsubprocess.run(['ls'], shell=False)",
        "import subprocess\nsubprocess.run(['ls'])",
        "import json\njson.loads(text)",
        "from hotqueue import HotQueue\nHotQueue('jobs', serializer=None)",
        "from hotqueue import HotQueue\nHotQueue('jobs', serializer=json)",
        "model.eval_metrics()",
        "ast.literal_eval(text)",
    ],
)
def test_scanner_allows(snippet):
    assert scan_source(snippet) == []
