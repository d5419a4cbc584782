"""Every shell, console and Python block of README.md and docs/ runs as written, against a stack this
test starts, and every output the docs show is what the command prints.

How it runs a document:

* a copy of the checkout (the tracked files, as a newcomer's clone) is the working directory, with
  ``make up``'s script serving the API, Redis and two workers on free ports; ``127.0.0.1:5000`` /
  ``localhost:5000`` and Redis's ``6379`` in a block are replaced by those ports. ``$API`` and
  ``$JOBQUEUE_URL`` point at the API, ``$JOB`` is the id of a finished job; ``PATH`` has no
  virtualenv, as in a fresh terminal (the docs say ``.venv/bin/...``);
* the shell blocks of one document run in one bash session, in order (a variable set in one block
  is there in the next); each command must exit 0;
* ``# {...}`` right after a command, or a ```json block right after the block, is that command's
  output: the JSON must have the same keys at every level (values may differ: ids, times, counts;
  ``{...}`` and ``[...]`` in the docs stand for anything);
* ```console blocks: ``$ command`` lines and the output below them (``...`` matches anything);
* ```python blocks run with ``.venv/bin/python``.

A block that cannot run here (a cluster, Grafana, Docker, the internet, minutes of benchmarks) is
marked on the line before its opening fence::

    <!-- docs-test: skip: needs a Kubernetes cluster -->

and this test checks what it names instead: files and folders of the repository, ``make`` targets,
``jobqueue`` flags, ``python -m`` modules and scripts, and chart object names. A shown output that
is only an illustration is marked ``<!-- docs-test: illustrative -->``. Every fenced block needs a
language (bash, console, python, json, yaml, text, promql, ...).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devstack.paths import BIN, REPO_ROOT
from devstack.procs import free_port, wait_until
from tests.support.local_stack import checkout_copy

pytestmark = pytest.mark.slow

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell"}
RUNNABLE = SHELL | {"console", "python"}
MARKER = re.compile(r"<!--\s*docs-test:\s*(skip|illustrative)\s*:?\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
HOW_TO_MARK = (
    "If it cannot run on a machine without a cluster, Grafana, Docker or the internet, put "
    "`<!-- docs-test: skip: <why> -->` on the line before its opening fence (the test then "
    "checks that the files, make targets and flags it names exist)."
)


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None  # "skip" / "illustrative" / None
    reason: str
    output: Block | None = None  # a json/text block right after this one: its shown output

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i, prev_end = 0, -1
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(2).lower()
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = MARKER.search(lines[k]) if k >= 0 else None
        block = Block(
            path,
            start + 1,
            lang,
            "\n".join(lines[start + 1 : j]),
            mark.group(1) if mark else None,
            mark.group(2) if mark else "",
        )
        prev = out[-1] if out else None
        between = lines[prev_end + 1 : start] if prev else []
        if prev and prev.lang in RUNNABLE and lang in ("json", "text") and not any(s.strip() for s in between):
            prev.output = block
        out.append(block)
        prev_end = j
        i = j + 1
    return out


ALL = [b for doc in DOCS for b in blocks_of(doc)]


def test_every_block_has_a_language():
    bare = [b.where for b in ALL if not b.lang]
    assert not bare, (
        f"fenced blocks without a language at {bare}: write ```bash, ```console, ```python, "
        "```json, ```yaml or ```text, so this test knows whether to run them"
    )


def test_skip_markers_give_a_reason():
    silent = [b.where for b in ALL if b.marker == "skip" and not b.reason]
    assert not silent, f"`docs-test: skip` without a reason at {silent}: say why it cannot run here"


# --- what a skipped block names must exist -------------------------------------------------------

REPO_PATH = re.compile(
    r"(?<![\w/.$-])((?:helm|k8s|docs|scripts|services|shared|tests|observability|bench|data|"
    r"devstack)/[\w./-]*[\w/])"
)
MAKE = re.compile(r"(?:^|[\s;&|(])make\s+((?:[A-Z_]+=\S+\s+)*)([a-z][\w-]*)")
MODULE = re.compile(r"python3?\s+-m\s+([\w.]+)")
SCRIPT = re.compile(r"python3?\s+([\w./-]+\.py)")
JOBQUEUE = re.compile(r"jobqueue\s+([a-z]+)(?:\s+([a-z]+))?((?:\s+\S+)*)")
OBJECT = re.compile(
    r"\b(?:deploy|deployment|svc|service|statefulset|sts|cronjob|job|pvc|scaledobject|secret|"
    r"configmap)/(?:[\w<>.-]*?)atx-jobqueue-?([\w-]*)"
)


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (REPO_ROOT / "Makefile").read_text(), re.M))


def names_in(block: Block) -> list[str]:
    """What a block names that does not exist (empty: all there)."""
    text = block.text
    missing = []
    for path in REPO_PATH.findall(text):
        if "<" in path or "*" in path:
            continue
        if not (REPO_ROOT / path).exists():
            missing.append(f"file {path}")
    targets = make_targets()
    for _, target in MAKE.findall(text):
        if target not in targets:
            missing.append(f"make target {target}")
    for module in MODULE.findall(text):
        if module.split(".")[0] in ("json", "http", "pip", "venv"):
            continue
        if not (
            (REPO_ROOT / module.replace(".", "/")).with_suffix(".py").exists()
            or (REPO_ROOT / module.replace(".", "/") / "__init__.py").exists()
        ):
            missing.append(f"python module {module}")
    for script in SCRIPT.findall(text):
        if not (REPO_ROOT / script).exists():
            missing.append(f"script {script}")
    for line in text.splitlines():
        m = JOBQUEUE.search(line.split("#", 1)[0])
        if not m or "/" in line.split("jobqueue", 1)[0][-1:]:
            continue
        sub = [m.group(1)] + ([m.group(2)] if m.group(1) == "data" and m.group(2) else [])
        helptext = subprocess.run([str(BIN / "jobqueue"), *sub, "--help"], capture_output=True, text=True).stdout
        for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", m.group(3) or ""):
            if flag not in helptext:
                missing.append(f"flag jobqueue {' '.join(sub)} {flag}")
    chart = " ".join(
        p.read_text() for p in (REPO_ROOT / "helm").rglob("*") if p.is_file() and p.suffix in (".yaml", ".tpl", ".txt")
    )
    for suffix in OBJECT.findall(text):
        if (
            suffix
            and suffix not in chart
            and suffix not in " ".join(p.read_text() for p in (REPO_ROOT / "k8s").rglob("*.yml"))
        ):
            missing.append(f"object name suffix -{suffix}")
    return missing


@pytest.mark.parametrize("block", [b for b in ALL if b.marker == "skip"], ids=lambda b: b.where)
def test_what_a_skipped_block_names_exists(block):
    missing = names_in(block)
    assert not missing, f"{block.where} (skipped: {block.reason}) names what does not exist: {missing}"


# --- running the rest -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """A copy of the checkout with ``make up``'s stack on free ports; yields (workdir, env)."""
    tmp = tmp_path_factory.mktemp("docs")
    work = checkout_copy(tmp / "atx-jobqueue")
    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PROMETHEUS", "REDIS_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO_ROOT)) and ".venv" not in p
    )
    env.update(
        {
            "PORT": str(port),
            "REDIS_PORT": str(redis_port),
            "WORKER_METRICS_BASE": str(free_port(2)),
            "RUN_DIR": str(tmp / "run"),
            "SHUTDOWN_GRACE_SECONDS": "5",
            "READY_TIMEOUT": "300",  # only bounds a hang (a loaded machine took 90 s to start the API)
            "DATA_CACHE_DIR": str(tmp / "cache"),
        }
    )
    up = subprocess.run(["bash", "scripts/up.sh"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        api = f"http://127.0.0.1:{port}"
        job = requests.post(
            api + "/submit", json={"operation": "incident_count_by_date", "params": {"date": "2024-03-09"}}, timeout=10
        ).json()["job_id"]
        wait_until(
            lambda: requests.get(f"{api}/status/{job}", timeout=5).json()["status"] == "complete", 60, "the seed job"
        )
        shell_env = {**env, "API": api, "JOBQUEUE_URL": api, "JOB": job}
        for name in ("PORT", "REDIS_PORT", "WORKER_METRICS_BASE", "RUN_DIR"):
            shell_env.pop(name)  # the docs' commands must not lean on the test's own make-up variables
        yield work, shell_env, port, redis_port
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=work, env=env, capture_output=True, timeout=120)


def substitute(text: str, port: int, redis_port: int) -> str:
    text = re.sub(r"(127\.0\.0\.1|localhost):5000\b", rf"\1:{port}", text)
    text = re.sub(r"(127\.0\.0\.1|localhost):6379\b", rf"\1:{redis_port}", text)
    text = re.sub(r"\bredis-cli\b(?!\s+-p)", f"redis-cli -p {redis_port}", text)
    return text


def commands(text: str) -> list[tuple[str, str | None]]:
    """A shell block as (command, shown output from a following ``# {...}`` comment or None)."""
    out: list[tuple[str, str | None]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and stripped.startswith("#"):
            if out and re.match(r"#\s*[\[{]", stripped) and out[-1][1] is None:
                out[-1] = (out[-1][0], stripped.lstrip("#").strip())
            continue
        if not stripped and not pending:
            continue
        pending += line + "\n"
        if stripped.endswith("\\") or _open_quotes(pending):
            continue
        out.append((pending.rstrip("\n"), None))
        pending = ""
    if pending:
        out.append((pending.rstrip("\n"), None))
    return out


def _open_quotes(text: str) -> bool:
    code = re.sub(r"\\.", "", text)
    code = re.sub(r"#[^\n'\"]*$", "", code)
    return code.count("'") % 2 == 1 and code.count('"') % 2 == 0


def tolerant_json(text: str):
    """The docs' JSON with ``{...}``, ``[...]`` and ``, ...`` (elisions) made parseable."""
    t = re.sub(r"\{\s*\.\.\.\s*\}", "{}", text)
    t = re.sub(r"\[\s*\.\.\.\s*\]", "[]", t)
    t = re.sub(r",\s*\.\.\.\s*(?=[\]}])", "", t)
    t = re.sub(r"(?<=[\[{])\s*\.\.\.\s*,", "", t)
    return json.loads(t)


def same_shape(shown, real, where: str = "$") -> list[str]:
    """Differences in keys between the docs' JSON and the real one (values are not compared)."""
    if shown == {} or shown == [] or shown is None:
        return []
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            return [f"{where}: the docs show an object, the command printed {type(real).__name__}"]
        problems = []
        if set(shown) != set(real):
            problems.append(
                f"{where}: keys differ: docs only {sorted(set(shown) - set(real))}, "
                f"real only {sorted(set(real) - set(shown))}"
            )
        for key in set(shown) & set(real):
            problems += same_shape(shown[key], real[key], f"{where}.{key}")
        return problems
    if isinstance(shown, list):
        if not isinstance(real, list):
            return [f"{where}: the docs show a list, the command printed {type(real).__name__}"]
        return same_shape(shown[0], real[0], f"{where}[0]") if shown and real else []
    return []


def compare_json(shown_text: str, printed: str, what: str) -> list[str]:
    try:
        shown = tolerant_json(shown_text)
    except ValueError as exc:
        return [
            f"{what}: the shown output is not JSON ({exc}); mark it `<!-- docs-test: illustrative -->` "
            "if it is only a sketch"
        ]
    lines = [line for line in printed.strip().splitlines() if line.strip()]
    try:
        real = json.loads(printed)
    except ValueError:
        try:
            real = json.loads(lines[-1]) if lines else None
        except ValueError:
            return [f"{what}: the docs show JSON, the command printed {printed[-300:]!r}"]
    return [f"{what}: {p}" for p in same_shape(shown, real)]


SENTINEL = "@@docs-test-status@@"
# Before each block that uses $JOB without setting it: a fresh finished job (a block before may have
# deleted or cancelled the last one, as the docs show).
SEED_JOB = (
    "JOB=$(curl -s -X POST \"$API/submit\" -H 'Content-Type: application/json' "
    '-d \'{"operation": "incident_count_by_date", "params": {"date": "2024-03-09"}}\' '
    "| python3 -c 'import json, sys; print(json.load(sys.stdin)[\"job_id\"])') && "
    'curl -s "$API/status/$JOB?wait=30" >/dev/null'
)


def run_shell(doc_blocks: list[Block], work: Path, env: dict, port: int, redis_port: int) -> list[str]:
    """All shell blocks of one document in one bash session; the problems found."""
    script, plan = ["set -o pipefail"], []
    for block in doc_blocks:
        if "$JOB" in block.text and not re.search(r"\bJOB=", block.text):
            script.append(SEED_JOB)
        cmds = commands(substitute(block.text, port, redis_port))
        for n, (cmd, shown) in enumerate(cmds):
            shown_after = (
                block.output.text
                if block.output and n == len(cmds) - 1 and block.output.marker != "illustrative"
                else None
            )
            plan.append((block, cmd, shown or shown_after))
            script += [cmd, f"echo; echo '{SENTINEL} {len(plan) - 1}' $?"]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    parts = re.split(rf"\n?{SENTINEL} (\d+) (\d+)\n", done.stdout)
    results = {int(parts[i + 1]): (int(parts[i + 2]), parts[i]) for i in range(0, len(parts) - 2, 3)}
    problems = []
    for i, (block, cmd, shown) in enumerate(plan):
        if i not in results:
            problems.append(
                f"{block.where}: `{cmd.splitlines()[0]}` never finished (the session ended: {done.stderr[-800:]})"
            )
            break
        status, printed = results[i]
        if status != 0:
            problems.append(
                f"{block.where}: `{cmd.splitlines()[0]}` exited {status}. {HOW_TO_MARK}\n"
                f"  output: {printed[-600:]!r}\n  stderr (session): {done.stderr[-600:]!r}"
            )
        elif shown:
            problems += compare_json(shown, printed, f"{block.where}: `{cmd.splitlines()[0]}`")
    return problems


def run_console(block: Block, work: Path, env: dict, port: int, redis_port: int) -> list[str]:
    problems = []
    steps: list[tuple[str, list[str]]] = []
    for line in substitute(block.text, port, redis_port).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    for cmd, shown in steps:
        done = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        printed = done.stdout + done.stderr
        pattern = "".join(".*" if s.strip() == "..." else re.escape(s.rstrip()) + r"\s*\n?" for s in shown)
        if not re.search(pattern, printed, re.S):
            problems.append(f"{block.where}: `$ {cmd}` printed {printed[-600:]!r}, the docs show {shown!r}")
    return problems


def run_python(block: Block, work: Path, env: dict, port: int, redis_port: int) -> list[str]:
    done = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "python"), "-c", substitute(block.text, port, redis_port)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        return [f"{block.where}: the python block failed: {done.stderr[-800:]}. {HOW_TO_MARK}"]
    if block.output and block.output.marker != "illustrative":
        return compare_json(block.output.text, done.stdout, f"{block.where}: python")
    return []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_blocks_of_a_document_run_as_written(doc, newcomer):
    work, env, port, redis_port = newcomer
    mine = [b for b in ALL if b.path == doc and b.lang in RUNNABLE and b.marker != "skip"]
    if not mine:
        pytest.skip("nothing to run")
    problems = run_shell([b for b in mine if b.lang in SHELL], work, env, port, redis_port)
    for block in mine:
        if block.lang == "console":
            problems += run_console(block, work, env, port, redis_port)
        elif block.lang == "python":
            problems += run_python(block, work, env, port, redis_port)
    assert not problems, "\n".join(problems)


def test_this_test_finds_drift(tmp_path):
    """The checks themselves: a wrong key, a missing make target, an unmarked bare block."""
    assert same_shape({"a": 1, "b": {"c": 2}}, {"a": 5, "b": {"c": 3}}) == []
    assert same_shape({"a": 1, "b": {"c": 2}}, {"a": 5, "b": {"d": 3}})
    assert same_shape(tolerant_json('{"jobs": [{...}, ...], "count": 5}'), {"jobs": [{"x": 1}], "count": 1}) == []
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n\n```\ncurl x\n```\n\n<!-- docs-test: skip: no cluster -->\n```bash\nmake nosuch\n"
        "kubectl get deploy/jobs-atx-jobqueue-nosuch\ncat helm/none.yaml\n```\n"
    )
    found = blocks_of(doc)
    assert found[0].lang == "" and found[1].marker == "skip" and found[1].reason == "no cluster"
    missing = names_in(found[1])
    assert "make target nosuch" in missing and "file helm/none.yaml" in missing
    assert "object name suffix -nosuch" in missing
    assert commands('curl -s -X POST x \\\n  -d \'{"a": 1}\'\n# {"job_id": "x"}\necho hi') == [
        ("curl -s -X POST x \\\n  -d '{\"a\": 1}'", '{"job_id": "x"}'),
        ("echo hi", None),
    ]
