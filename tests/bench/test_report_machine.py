"""The machine section names the interpreter that ran the benchmark and how it was built."""

from __future__ import annotations

import os
import platform
import sys

from bench import report


def test_the_interpreter_is_named_by_its_resolved_path_and_version():
    info = report.interpreter()
    assert info["path"] == os.path.realpath(sys.executable)
    assert info["implementation"] == platform.python_implementation()
    assert info["version"] == platform.python_version()
    line = report.machine_markdown()
    assert f"`{os.path.realpath(sys.executable)}`" in line
    assert f"Interpreter: {platform.python_implementation()} {platform.python_version()}" in line


def test_build_flags_are_read_from_the_configure_arguments_and_c_flags():
    config = {
        "CONFIG_ARGS": "'--prefix=/opt/py' '--enable-optimizations' '--with-lto'",
        "PY_CFLAGS": "-Wsign-compare -DNDEBUG -g -O2 -Wall -O3",
    }
    info = report.interpreter(config.get)
    assert (info["enable-optimizations"], info["with-lto"], info["opt-level"]) == ("yes", "yes", "-O3")
    plain = report.interpreter({"CONFIG_ARGS": "'--prefix=/opt/py'", "PY_CFLAGS": "-g -O0"}.get)
    assert (plain["enable-optimizations"], plain["with-lto"], plain["opt-level"]) == ("no", "no", "-O0")
    line = report.interpreter_markdown(plain)
    assert "`--enable-optimizations` no" in line and "`--with-lto` no" in line and "-O0" in line


def test_an_interpreter_without_build_configuration_still_gets_a_line():
    info = report.interpreter({}.get)  # no CONFIG_ARGS, PY_CFLAGS or OPT (some embedded builds)
    assert (info["enable-optimizations"], info["with-lto"], info["opt-level"]) == ("?", "?", "?")
    assert "Interpreter:" in report.interpreter_markdown(info)
