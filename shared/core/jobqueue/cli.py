"""The ``jobqueue`` command: the client's commands (submit, status, jobs, ...) and, with the
analysis extra installed, ``analyze``/``operations``/``data`` on a data file.

The client commands import no pandas, pyarrow or matplotlib, so ``pip install atx-jobqueue-core``
is enough to submit jobs; without the extra the analysis commands say how to get them.

Exit statuses are the same for every subcommand (``jobqueue.cliargs.Exit``)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # imported where used: a Ctrl-C before main() runs is a traceback no handler can catch
    import argparse


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("atx-jobqueue-core")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0.0.0"


INTERRUPTED_STATUS = 128 + 2  # what a shell reports for a command Ctrl-C (SIGINT) stopped


def main(argv: list[str] | None = None) -> int:
    """The ``jobqueue`` command. Output cut short by its reader (``jobqueue operations | head``,
    quitting ``less``) stops quietly with status 141 instead of a BrokenPipeError traceback."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): Python leaves sys.stdout None
        # print() then writes nothing: `submit` queued a job whose id went nowhere, and the final
        # flush was an AttributeError traceback (exit 1)
        if sys.stderr is not None:
            print(
                "jobqueue: standard output is closed (>&-), so nothing could be printed (a job's id, a "
                "result); nothing was sent: redirect it to a file, or to /dev/null to drop it",
                file=sys.stderr,
            )
        return 2
    started = time.monotonic()  # --timeout counts from here: loading the client's modules is part of it
    given = sys.stdout
    sys.stdout = _held(given)
    try:
        status = _main(argv, started)
        sys.stdout.flush()  # a reader gone while the last lines sat in the buffer: here, not at exit
        return status
    except BrokenPipeError:
        from jobqueue.pipe import reader_gone

        return reader_gone()
    except KeyboardInterrupt:  # Ctrl-C outside a client command's own handling (client_cli.run): while
        # the modules load and the command line is read (the first ~0.5 s), or during `analyze`: it was
        # a KeyboardInterrupt traceback, for a command the docs say ends "interrupted" in one line
        print("jobqueue: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    finally:
        if sys.stdout is not given:  # in-process callers (tests, notebooks) get their stdout back
            try:
                sys.stdout.close()  # flushed, onto devnull after a broken pipe; the descriptor stays open
            except OSError:
                pass
            sys.stdout = given


PIPE_HOLDS = 64 * 1024  # what a Linux pipe holds: an output this size is written before a reader can go


def _held(out: TextIO) -> TextIO:
    """Standard output for a pipe or a file: held until the command ends (up to ``PIPE_HOLDS``) and
    then written at once, as ``cat`` writes a small file. Python wrote a result in pieces (8 KiB,
    then its last newline), so ``jobqueue jobs --json | head -1`` ended 141 or 0 by chance, even
    for 7 KB the pipe would have held whole. A terminal keeps its line-by-line output."""
    import io

    try:
        if out.isatty():
            return out
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):  # a caller's stand-in (a StringIO): left as it is
        return out
    out.flush()
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw, PIPE_HOLDS), encoding=out.encoding, errors=out.errors)


def _main(argv: list[str] | None = None, started: float | None = None) -> int:
    from .cliargs import Exit

    import argparse

    parser = argparse.ArgumentParser(prog="jobqueue", description="atx-jobqueue command line", epilog=Exit.epilog())
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    from .cli_queue import add_commands as add_queue_commands  # jobs, info, watch, cancel
    from .client_cli import add_commands as add_client_commands  # submit, status

    try:
        from atx_analysis.cli import register as register_analysis  # analyze, operations, data
    except ModuleNotFoundError as exc:  # the client-only install; anything else broken still raises
        if exc.name != "atx_analysis":
            raise
        register_analysis = _register_analysis_missing

    add_client_commands(sub)
    add_queue_commands(sub)
    register_analysis(sub)
    p = sub.add_parser(
        "backfill-owner-index",
        help="after upgrading from a release without per-user indexes: list students' older jobs again",
        description="Adds jobs stored before the per-user index (jobs:by-owner:<name>) existed to their "
        "owner's index, so a student's GET /jobs lists them again. Talks to Redis (REDIS_URL, "
        "REDIS_PASSWORD, REDIS_JOBS_DB, as the services read them): run it where they run, e.g. "
        "kubectl exec deployment/<api> -- jobqueue backfill-owner-index. SCANs in batches while the "
        "service runs; running it again adds nothing. Prints what it did as JSON.",
    )
    p.add_argument("--batch", type=int, default=500, help="keys per SCAN step (COUNT hint, default 500)")
    p.set_defaults(admin_handler=_backfill_owner_index)
    for choice in sub.choices.values():  # every subcommand's --help states the exit statuses
        choice.epilog = choice.epilog or Exit.epilog()
    args, extra = parser.parse_known_args(argv)
    if extra:  # what parse_args refuses, said by the subcommand (its usage), a parameter as an option named
        command = _innermost(sub.choices.get(getattr(args, "command", None) or "", parser), args)
        hint = _option_as_parameter(command, args, extra, sub.choices) or _file_without_option(command, extra)
        command.error(hint or f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "admin_handler", None) is not None:
        return args.admin_handler(args)
    if getattr(args, "client_handler", None) is not None:
        from .client_cli import run as run_client_command

        args.started = started
        return run_client_command(args)
    if getattr(args, "func", None):
        import os

        from .settings import SettingsError, load_settings

        try:  # DATA_MAX_BYTES and DATA_CACHE_DIR, parsed as the services parse them (the file is --data's)
            data_env = {k: v for k, v in os.environ.items() if k.startswith("DATA_") and k != "DATA_PATH"}
            args.load_options = load_settings(data_env).data_options()
        except SettingsError as exc:
            print(f"jobqueue: configuration error: {exc}", file=sys.stderr)
            return Exit.USAGE
        return args.func(args)
    if args.command == "version":
        print(_version())
    return Exit.OK


def _innermost(command: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The subcommand's own parser for a nested one (``data info``), so its error shows its usage."""
    import argparse

    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return action.choices[getattr(args, action.dest)]
    return command


def _file_without_option(command: argparse.ArgumentParser, extra: list[str]) -> str | None:
    """``jobqueue data info data/x.csv``: the file goes after ``--data``. argparse said only
    "unrecognized arguments: data/x.csv", under ``jobqueue data``'s usage, which names no file."""
    if len(extra) != 1 or extra[0].startswith("-") or "--data" not in command._option_string_actions:
        return None
    import shlex

    return f"the data file is given with --data: write --data {shlex.quote(extra[0])} (got {extra[0]})"


def _option_as_parameter(
    command: argparse.ArgumentParser,
    args: argparse.Namespace,
    extra: list[str],
    commands: dict[str, argparse.ArgumentParser],
) -> str | None:
    """``jobqueue submit top_locations --n 5`` (or ``--n=5``, ``-n 5``, ``-n5``): parameters are
    key=value, not options. argparse said only "unrecognized arguments: --n 5", under the top-level
    usage, which has no word about parameters. An option of another subcommand (``submit --format
    json``) is named as that, not turned into a parameter ("write format=json", then an unknown one)."""
    name = getattr(args, "command", None)
    if name not in ("submit", "analyze") or not extra[0].startswith("-"):
        return None
    key, sep, value = extra[0].lstrip("-").partition("=")
    if not sep and len(extra) > 1 and not extra[1].startswith("-"):
        value = extra[1]
    elif not sep and not extra[0].startswith("--") and len(key) > 1:  # -n5, as argparse reads -n 5
        key, value = key[0], key[1:]
    elsewhere = sorted(c for c, p in commands.items() if key and f"--{key}" in p._option_string_actions)
    if elsewhere:
        verb = "has" if len(elsewhere) == 1 else "have"
        return f"jobqueue {name} has no --{key} option ({', '.join(elsewhere)} {verb} it; see jobqueue {name} --help)"
    if not key or not value:
        return None
    options = [o.lstrip("-") for o in command._option_string_actions if o.startswith("--")]
    import difflib
    import shlex

    if difflib.get_close_matches(key, options, n=1, cutoff=0.75):  # --timout 30: a mistyped option
        return None
    return f"parameters are key=value, not options: write {shlex.quote(f'{key}={value}')} (got {' '.join(extra)})"


def _backfill_owner_index(args: argparse.Namespace) -> int:
    import json

    import redis

    from .cliargs import Exit
    from .connections import jobs_redis
    from .reindex import backfill_owner_index
    from .settings import SettingsError, load_settings
    from .wire import SetupRefused

    if args.batch < 1:
        print("jobqueue backfill-owner-index: --batch must be 1 or more", file=sys.stderr)
        return Exit.USAGE
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"jobqueue backfill-owner-index: configuration error: {exc}", file=sys.stderr)
        return Exit.USAGE
    client = jobs_redis(settings, timeout=30.0)
    try:
        done = backfill_owner_index(client, args.batch)
    except redis.exceptions.RedisError as exc:  # nothing half-done to undo: run it again
        # a refused password or db does not pass by itself: "when Redis answers" sent one waiting
        then = (
            "fix REDIS_URL / REDIS_PASSWORD and run it again"
            if isinstance(exc, SetupRefused)
            else "run it again when Redis answers"
        )
        print(f"jobqueue backfill-owner-index: Redis: {exc}; {then}", file=sys.stderr)
        return Exit.UNAVAILABLE
    finally:
        client.close()
    print(json.dumps(done.as_dict()))
    return Exit.OK


ANALYSIS_COMMANDS = ("analyze", "operations", "data")
# Neither package is on a package index: a bare `pip install 'atx-jobqueue-core[analysis]'` finds no
# atx-analysis. From the repository's checkout, as the README says, both are installed from their folders.
ANALYSIS_HINT = "from the repository's checkout, pip install ./shared/analysis './shared/core[analysis]'"


def _register_analysis_missing(sub: argparse._SubParsersAction) -> None:
    import argparse

    """Keep the analysis commands' names, so using one says what to install instead of 'invalid choice'."""
    for name in ANALYSIS_COMMANDS:
        p = sub.add_parser(name, help=f"needs the analysis extra ({ANALYSIS_HINT})")
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_analysis_missing)


def _analysis_missing(args: argparse.Namespace) -> int:
    print(
        f"jobqueue {args.command}: needs the analysis package, which this install does not have: {ANALYSIS_HINT}",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
