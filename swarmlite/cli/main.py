"""``swarmlite``: the command line, thin over ``api.client.ApiClient``.

Exit codes: 0 done, 1 a SwarmliteError (one ``Error: ...`` line on stderr),
2 a usage error (argparse), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from swarmlite.cli import (
    daemon_cmds,
    join_cmds,
    node_cmds,
    secret_cmds,
    service_cmds,
    stack_cmds,
)
from swarmlite.config import default_data_dir
from swarmlite.errors import SwarmliteError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarmlite",
        description="A lightweight, Docker-Swarm-style container orchestrator.",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="the node's data dir (default: $SWARMLITE_DATA_DIR or ~/.local/share/swarmlite)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    daemon_cmds.register(commands)
    join_cmds.register(commands)
    stack_cmds.register(commands)
    service_cmds.register(commands)
    node_cmds.register(commands)
    secret_cmds.register(commands)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``--data-dir`` may come before or after the command."""
    args = build_parser().parse_args(argv)
    args.data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except SwarmliteError as err:
        print(f"Error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK


__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
