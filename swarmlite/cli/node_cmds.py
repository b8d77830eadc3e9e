"""``swarmlite node ...``: the cluster's nodes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable

import msgspec

from swarmlite.api.client import ApiClient
from swarmlite.api.models import NodeUpdateRequest
from swarmlite.cli import tables
from swarmlite.cli.common import (
    add_command,
    add_format,
    add_group,
    api_command,
    fetch_each,
    print_json,
)
from swarmlite.cli.pretty import pretty_node
from swarmlite.errors import SpecError, SwarmliteError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = add_group(commands, "node", "Manage nodes")

    ls = add_command(node, "ls", "List nodes", aliases=("list",))
    add_format(ls)
    ls.set_defaults(func=api_command(node_ls))

    inspect = add_command(node, "inspect", "Show the details of one or more nodes")
    inspect.add_argument("nodes", nargs="+", metavar="NODE", help="node ID, ID prefix, or 'self'")
    inspect.add_argument("--pretty", action="store_true", help="human-readable output")
    add_format(inspect, choices=("json",))
    inspect.set_defaults(func=api_command(node_inspect))

    update = add_command(node, "update", "Update a node's availability or labels")
    update.add_argument(
        "--availability",
        choices=("active", "pause", "drain"),
        help="active: takes tasks; pause: keeps its tasks, takes no new ones; "
        "drain: its replicated tasks move to other nodes",
    )
    update.add_argument(
        "--label-add",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add or change a node label (repeatable; KEY alone sets an empty value)",
    )
    update.add_argument(
        "--label-rm", action="append", default=[], metavar="KEY", help="remove a node label"
    )
    update.add_argument("node", metavar="NODE", help="node ID, ID prefix or hostname")
    update.set_defaults(func=api_command(node_update))

    rm = add_command(node, "rm", "Remove one or more nodes from the swarm", aliases=("remove",))
    rm.add_argument(
        "-f", "--force", action="store_true", help="remove a node even if it is not down"
    )
    rm.add_argument("nodes", nargs="+", metavar="NODE")
    rm.set_defaults(func=api_command(node_rm))

    demote = add_command(node, "demote", "Demote one or more managers to workers")
    demote.add_argument("nodes", nargs="+", metavar="NODE")
    demote.set_defaults(func=api_command(node_demote))

    promote = add_command(node, "promote", "Promote one or more nodes to managers")
    promote.add_argument("nodes", nargs="+", metavar="NODE")
    promote.set_defaults(func=api_command(node_promote))


async def node_ls(args: argparse.Namespace, api: ApiClient) -> int:
    nodes = await api.nodes()
    info = await api.info()
    if args.format == "json":
        # Each node with what the table adds, as docker's ManagerStatus and Self.
        print_json(
            [
                {
                    **msgspec.to_builtins(node),
                    "manager_status": tables.manager_status(
                        node,
                        local_id=info.node_id,
                        local_is_leader=info.leader,
                        leader_id=info.leader_id,
                    ),
                    "self": node.id == info.node_id,
                }
                for node in nodes
            ]
        )
        return 0
    rows = tables.node_rows(
        nodes, local_id=info.node_id, local_is_leader=info.leader, leader_id=info.leader_id
    )
    print(tables.render_table(tables.NODE_HEADERS, rows))
    return 0


async def node_inspect(args: argparse.Namespace, api: ApiClient) -> int:
    wanted = list(args.nodes)
    if "self" in wanted:
        local_id = (await api.info()).node_id
        wanted = [local_id if name == "self" else name for name in wanted]
    nodes, failed = await fetch_each(wanted, api.node)
    if args.pretty:
        if nodes:
            print("\n\n".join(pretty_node(n) for n in nodes))
    elif nodes or not failed:
        print_json(nodes)
    return 1 if failed else 0


def update_request(args: argparse.Namespace) -> NodeUpdateRequest:
    """The body of ``node update`` from its flags; refuses an update that changes nothing."""
    labels: dict[str, str] = {}
    for item in args.label_add:
        key, _, value = item.partition("=")
        if not key:
            raise SpecError(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = value
    if args.availability is None and not labels and not args.label_rm:
        raise SpecError("nothing to update: give --availability, --label-add or --label-rm")
    return NodeUpdateRequest(
        availability=args.availability, label_add=labels, label_rm=tuple(args.label_rm)
    )


async def node_update(args: argparse.Namespace, api: ApiClient) -> int:
    request = update_request(args)
    await api.update_node(args.node, request)
    print(args.node)
    return 0


async def _each(names: list[str], act: Callable[[str], Awaitable[str]]) -> int:
    """Run ``act`` on every node, printing its line; one failure does not stop the rest."""
    failed = False
    for name in names:
        try:
            print(await act(name))
        except SwarmliteError as err:
            print(f"Error: {err}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


async def node_rm(args: argparse.Namespace, api: ApiClient) -> int:
    async def remove(name: str) -> str:
        await api.remove_node(name, force=args.force)
        return name

    return await _each(args.nodes, remove)


async def node_demote(args: argparse.Namespace, api: ApiClient) -> int:
    async def demote(name: str) -> str:
        return (await api.demote_node(name)).message

    return await _each(args.nodes, demote)


async def node_promote(args: argparse.Namespace, api: ApiClient) -> int:
    async def promote(name: str) -> str:
        return (await api.promote_node(name)).message

    return await _each(args.nodes, promote)
