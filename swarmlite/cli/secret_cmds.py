"""``swarmlite secret ...`` and ``swarmlite config ...``: create, ls, inspect, update, rm.

Contents come from a file or ``-`` (stdin) and go to the manager over mutual TLS;
no command ever prints a secret's content.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

from swarmlite.api.client import ApiClient
from swarmlite.api.secret_models import FileSummary
from swarmlite.cli import tables
from swarmlite.cli.common import (
    add_command,
    add_format,
    add_group,
    api_command,
    fetch_each,
    print_json,
)
from swarmlite.errors import SpecError, SwarmliteError

MAX_SIZE = 500 * 1024
HEADERS = ("ID", "NAME", "DIGEST", "CREATED", "UPDATED", "SERVICES")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for kind in ("secret", "config"):
        _register_kind(commands, kind)


def _register_kind(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], kind: str
) -> None:
    group = add_group(commands, kind, f"Manage {kind}s")

    create = add_command(group, "create", f"Create a {kind} from a file or '-' (stdin)")
    create.add_argument("name", metavar="NAME")
    create.add_argument("file", metavar="FILE|-")
    create.add_argument(
        "-l", "--label", action="append", default=[], metavar="KEY=VALUE", help="add a label"
    )
    create.set_defaults(func=api_command(file_create), kind=kind)

    ls = add_command(group, "ls", f"List {kind}s", aliases=("list",))
    ls.add_argument("-q", "--quiet", action="store_true", help="only names")
    add_format(ls)
    ls.set_defaults(func=api_command(file_ls), kind=kind)

    inspect = add_command(group, "inspect", f"Show the details of one or more {kind}s")
    inspect.add_argument("names", nargs="+", metavar="NAME")
    inspect.set_defaults(func=api_command(file_inspect), kind=kind)

    update = add_command(
        group, "update", f"Change a {kind}'s content; services using it roll to it"
    )
    update.add_argument("name", metavar="NAME")
    update.add_argument("file", metavar="FILE|-")
    update.set_defaults(func=api_command(file_update), kind=kind)

    rm = add_command(group, "rm", f"Remove one or more {kind}s", aliases=("remove",))
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=api_command(file_rm), kind=kind)


def read_content(source: str, kind: str) -> bytes:
    """The bytes of FILE, or of stdin for '-'; at most 500 KB."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_SIZE + 1)
        else:
            path = Path(source)
            if path.is_file() and path.stat().st_size > MAX_SIZE:
                raise SpecError(
                    f"{source} is {path.stat().st_size} bytes; a {kind} holds at most 500 KB"
                )
            data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read {source}: {exc.strerror}") from None
    if len(data) > MAX_SIZE:
        raise SpecError(f"the {kind} is larger than 500 KB")
    return data


def _labels(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise SpecError(f"invalid label {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


async def file_create(args: argparse.Namespace, api: ApiClient) -> int:
    data = read_content(args.file, args.kind)
    created = await api.file_create(args.kind, args.name, data, _labels(args.label))
    print(created.id)
    return 0


async def file_update(args: argparse.Namespace, api: ApiClient) -> int:
    result = await api.file_update(args.kind, args.name, read_content(args.file, args.kind))
    if not result.changed:
        print(f"{result.summary.name}: unchanged")
    elif result.services:
        print(f"{result.summary.name}: updated; rolling {', '.join(result.services)}")
    else:
        print(f"{result.summary.name}: updated")
    return 0


def rows(items: list[FileSummary], now: float) -> list[list[str]]:
    return [
        [
            tables.short_id(f.id),
            f.name,
            f.digest,
            tables.time_ago(f.created_at, now),
            tables.time_ago(f.updated_at, now),
            ",".join(f.services),
        ]
        for f in items
    ]


async def file_ls(args: argparse.Namespace, api: ApiClient) -> int:
    items = await api.file_list(args.kind)
    if args.quiet:
        for f in items:
            print(f.name)
    elif args.format == "json":
        print_json(items)
    else:
        print(tables.render_table(HEADERS, rows(items, time.time())))
    return 0


async def file_inspect(args: argparse.Namespace, api: ApiClient) -> int:
    found, failed = await fetch_each(args.names, lambda name: api.file_inspect(args.kind, name))
    if failed and not found:
        return 1
    if args.kind == "config":
        # Configs are not secret: show their content as text when it is text.
        shown = []
        for f in found:
            raw = base64.b64decode(f.data)
            try:
                shown.append({**_fields(f), "data": raw.decode()})
            except UnicodeDecodeError:
                shown.append(_fields(f))
        print_json(shown)
    else:
        print_json(found)
    return 1 if failed else 0


def _fields(f: FileSummary) -> dict[str, object]:
    return {k: getattr(f, k) for k in f.__struct_fields__}


async def file_rm(args: argparse.Namespace, api: ApiClient) -> int:
    failed = False
    for name in args.names:
        try:
            await api.file_remove(args.kind, name)
            print(name)
        except SwarmliteError as err:
            print(f"Error: {err}", file=sys.stderr)
            failed = True
    return 1 if failed else 0
