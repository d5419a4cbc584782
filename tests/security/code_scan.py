"""An AST scan for constructs that turn data into code: the rules behind ``test_code_scan.py``.

Why AST and not grep: a comment or a docstring that *mentions* ``eval(`` is fine, while
``getattr(builtins, "eval")``-free calls such as ``yaml.load(text)`` without a safe loader are
not visible to a plain text search of the forbidden words. Each finding names file, line and rule.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Modules whose loading of bytes can run code: nothing that crosses Redis or HTTP may use them.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "shelve", "marshal", "jsonpickle"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
SHELL_CALLS = {("os", "system"), ("os", "popen")}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str):
        self.path = path
        self.findings: list[Finding] = []

    def _add(self, node: ast.AST, rule: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), rule))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in UNSAFE_MODULES:
                self._add(node, f"import {alias.name} (deserialising it can run code)")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.module.split(".")[0] in UNSAFE_MODULES:
            self._add(node, f"from {node.module} import ... (deserialising it can run code)")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        head, _, last = name.rpartition(".")
        if name in UNSAFE_BUILTINS or (head == "builtins" and last in UNSAFE_BUILTINS):
            self._add(node, f"{name}() runs strings as code")
        if head.split(".")[0] in UNSAFE_MODULES:
            self._add(node, f"{name}() (unsafe deserialiser)")
        if (head, last) in SHELL_CALLS:
            self._add(node, f"{name}() runs a shell")
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                self._add(node, f"{name or 'call'}(shell=...) runs a shell")
        if last in {"unsafe_load", "full_load", "unsafe_load_all", "full_load_all"} and head.endswith("yaml"):
            self._add(node, f"{name}() can build arbitrary objects")
        if last in {"load", "load_all"} and head.endswith("yaml") and not self._safe_yaml(node):
            self._add(node, f"{name}() without Loader=SafeLoader")
        if last == "HotQueue" or name == "HotQueue":
            self._check_hotqueue(node)
        self.generic_visit(node)

    @staticmethod
    def _safe_yaml(node: ast.Call) -> bool:
        loaders = [kw.value for kw in node.keywords if kw.arg == "Loader"] + list(node.args[1:2])
        return any(_dotted(v).rpartition(".")[2] in SAFE_YAML_LOADERS for v in loaders)

    def _check_hotqueue(self, node: ast.Call) -> None:
        """HotQueue's default serializer is pickle: every construction must name another (or None)."""
        for kw in node.keywords:
            if kw.arg == "serializer":
                value = kw.value
                if isinstance(value, ast.Constant) and value.value is None:
                    return
                if _dotted(value).split(".")[0] in UNSAFE_MODULES:
                    break
                return
        self._add(node, "HotQueue(...) without serializer= falls back to pickle")


def scan_source(source: str, path: str = "<string>") -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.findings


def scan_tree(*roots: Path, relative_to: Path | None = None) -> list[Finding]:
    findings: list[Finding] = []
    for root in roots:
        for file in sorted(root.rglob("*.py")):
            if any(part in {".venv", "__pycache__", "node_modules"} for part in file.parts):
                continue
            shown = str(file.relative_to(relative_to)) if relative_to else str(file)
            findings += scan_source(file.read_text(encoding="utf-8"), shown)
    return findings
