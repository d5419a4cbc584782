"""The ``jobqueue`` command: ``submit``/``status`` talk to the API; ``analyze``, ``operations`` and
``data`` run the analysis in-process. Exit statuses are ``atx_analysis.cliargs.Exit``, for all."""

from __future__ import annotations

import argparse
import sys


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("atx-jobqueue-core")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0.0.0"


def main(argv: list[str] | None = None) -> int:
    from atx_analysis.cliargs import Exit

    parser = argparse.ArgumentParser(prog="jobqueue", description="atx-jobqueue command line",
                                     epilog=Exit.epilog())
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    from .client_cli import add_commands as add_client_commands  # submit, status
    from atx_analysis.cli import register as register_analysis  # analyze, operations, data

    from .cli_queue import add_commands as add_queue_commands  # jobs, info, watch, cancel

    add_client_commands(sub)
    add_queue_commands(sub)
    register_analysis(sub)
    for choice in sub.choices.values():  # every subcommand's --help states the exit statuses
        choice.epilog = choice.epilog or Exit.epilog()
    args = parser.parse_args(argv)
    if getattr(args, "client_handler", None) is not None:
        from .client_cli import run as run_client_command

        return run_client_command(args)
    if getattr(args, "func", None):
        import os

        from .settings import SettingsError, load_settings

        try:  # DATA_MAX_BYTES and DATA_CACHE_DIR, parsed as the services parse them
            data_env = {k: v for k, v in os.environ.items() if k.startswith("DATA_")}
            args.load_options = load_settings(data_env).data_options()
        except SettingsError as exc:
            print(f"jobqueue: configuration error: {exc}", file=sys.stderr)
            return Exit.USAGE
        return args.func(args)
    if args.command == "version":
        print(_version())
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
