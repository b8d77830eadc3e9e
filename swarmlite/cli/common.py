"""What every command module shares: parser helpers, the API client, output helpers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec

from swarmlite.api.client import ApiClient
from swarmlite.errors import NotFoundError, SpecError

T = TypeVar("T")
Handler = Callable[[argparse.Namespace], int]
AsyncHandler = Callable[[argparse.Namespace, ApiClient], Awaitable[int]]


def add_common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options accepted after the command too (``swarmlite service ls --data-dir D``)."""
    # SUPPRESS: when absent here, the value given before the command (or None) stays.
    parser.add_argument(
        "--data-dir", metavar="DIR", default=argparse.SUPPRESS, help="the node's data dir"
    )
    return parser


def add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    *,
    aliases: tuple[str, ...] = (),
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=help_text, description=help_text, aliases=list(aliases)
    )
    return add_common(parser)


def add_group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = add_command(subparsers, name, help_text)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def add_format(
    parser: argparse.ArgumentParser, *, choices: tuple[str, ...] = ("table", "json")
) -> None:
    parser.add_argument(
        "--format",
        choices=choices,
        default=choices[0],
        help=f"output format (default: {choices[0]})",
    )


def api_command(handler: AsyncHandler) -> Handler:
    """A command that talks to the local daemon, run on its own event loop."""

    def run(args: argparse.Namespace) -> int:
        async def with_client() -> int:
            async with ApiClient.for_data_dir(args.data_dir) as api:
                return await handler(args, api)

        return asyncio.run(with_client())

    return run


def print_json(obj: Any) -> None:
    print(msgspec.json.format(msgspec.json.encode(obj), indent=4).decode())


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


async def fetch_each(
    names: Sequence[str], get: Callable[[str], Awaitable[T]]
) -> tuple[list[T], bool]:
    """What each name stands for, as ``docker inspect``: a name that is unknown or
    ambiguous gets its ``Error:`` line and the others are still fetched (any other
    error, such as an unreachable daemon, ends the command). Returns (found, any failed)."""
    found: list[T] = []
    failed = False
    for name in names:
        try:
            found.append(await get(name))
        except (NotFoundError, SpecError) as err:
            print(f"Error: {err}", file=sys.stderr)
            failed = True
    return found, failed
