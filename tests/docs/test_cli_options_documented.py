"""Every option of every ``jobqueue`` subcommand is named somewhere in README.md or docs/.

The docs-run test checks that the flags a skipped block names exist; this is the other way round:
an option a user finds only in ``--help`` (``jobs --operation``, ``analyze --pretty``,
``data fetch --page-size``, ``data hold --upload`` were in no guide) is one the guides never
explain. The options are read from each subcommand's own ``--help``, so a new one is checked too."""

from __future__ import annotations

import re
import subprocess

from devstack.paths import BIN, REPO_ROOT

DOCS_TEXT = "\n".join(p.read_text() for p in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))])
OPTION = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def _help(*words: str) -> str:
    done = subprocess.run([str(BIN / "jobqueue"), *words, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _choices(text: str) -> list[str]:
    """The subcommands a ``--help`` lists in its ``{a,b,...}`` choice."""
    found = re.search(r"\{([a-z,-]+)\}", text)
    return found.group(1).split(",") if found else []


def _subcommands() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name in _choices(_help()):
        nested = _choices(_help(name).split("\n\n", 1)[0]) if name == "data" else []
        out += [(name, sub) for sub in nested] or [(name,)]
    return out


def documented(option: str) -> bool:
    return re.search(re.escape(option) + r"(?![\w-])", DOCS_TEXT) is not None


def test_every_cli_option_is_in_the_docs():
    commands = _subcommands()
    assert ("submit",) in commands and ("data", "fetch") in commands, commands  # the walk found them
    missing = [
        f"jobqueue {' '.join(words)} {option}"
        for words in commands
        for option in sorted(set(OPTION.findall(_help(*words))) - {"--help"})
        if not documented(option)
    ]
    assert not missing, f"options no guide names (say what each does in README.md or docs/): {missing}"


def test_the_check_sees_an_undocumented_option():
    assert documented("--page-size")
    assert not documented("--page")  # a prefix of a documented option is not the option
    assert not documented("--no-such-option")
