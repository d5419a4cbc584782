"""The ``jobqueue`` command: ``analyze`` runs an operation directly on a data file."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobqueue", description="atx-jobqueue command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    from .client_cli import add_commands as add_client_commands  # submit, status
    from atx_analysis.cli import register as register_analysis  # analyze, operations, data

    from .cli_queue import add_commands as add_queue_commands  # jobs, info, watch, cancel

    add_client_commands(sub)
    add_queue_commands(sub)
    register_analysis(sub)
    args = parser.parse_args(argv)
    if getattr(args, "client_handler", None) is not None:
        from .client_cli import run as run_client_command

        return run_client_command(args)
    if getattr(args, "func", None):
        return args.func(args)
    if args.command == "version":
        from importlib.metadata import version

        print(version("atx-jobqueue-core"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
