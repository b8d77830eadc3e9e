"""`swarmlite join` and `swarmlite join-token`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from swarmlite.api.client import ApiClient
from swarmlite.cli import process
from swarmlite.cli.common import add_command
from swarmlite.cli.daemon_cmds import (
    add_mesh_workers_flag,
    advertise_addr,
    parse_listen_addr,
    refuse_existing_node,
    wait_ready,
)
from swarmlite.config import DEFAULT_API_PORT, load_config, mesh_workers_count
from swarmlite.errors import SpecError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    join = add_command(commands, "join", "Join a swarm as a worker or a manager")
    join.add_argument("--token", required=True, help="the token printed by 'swarmlite join-token'")
    join.add_argument("manager", metavar="HOST:PORT", help="a manager of the swarm")
    join.add_argument(
        "--advertise-addr", metavar="ADDR", help="address other nodes reach this one at"
    )
    join.add_argument(
        "--listen-addr",
        metavar="ADDR:PORT",
        default=f"0.0.0.0:{DEFAULT_API_PORT}",
        help=f"where this node's API listens (default: 0.0.0.0:{DEFAULT_API_PORT})",
    )
    add_mesh_workers_flag(join)
    join.add_argument("--foreground", action="store_true", help="run the daemon here")
    join.set_defaults(func=join_cmd)

    token = add_command(commands, "join-token", "Print (or rotate) the command that joins a node")
    token.add_argument("role", choices=("worker", "manager"))
    token.add_argument(
        "--rotate", action="store_true", help="replace the token: the old one stops working"
    )
    token.add_argument("-q", "--quiet", action="store_true", help="print only the token")
    token.set_defaults(func=join_token_cmd)


def join_cmd(args: argparse.Namespace) -> int:
    from swarmlite import node
    from swarmlite.bootstrap import join_cluster

    data_dir: Path = args.data_dir.expanduser().resolve()
    refuse_existing_node(data_dir)
    host, port = parse_listen_addr(args.listen_addr)
    mesh_workers = mesh_workers_count(args.mesh_workers, "--mesh-workers")
    advertise = advertise_addr(args.advertise_addr)
    config = asyncio.run(
        join_cluster(
            data_dir,
            token_text=args.token,
            manager=args.manager,
            advertise_addr=advertise,
            listen_host=host,
            api_port=port,
            mesh_workers=mesh_workers,
        )
    )
    role = "a manager" if config.role == "manager" else "a worker"
    if args.foreground:
        print(f"This node joined a swarm as {role}.", flush=True)
        node.run(data_dir)
        return 0
    proc = process.start_detached(data_dir)
    asyncio.run(wait_ready(data_dir, proc, timeout=90))
    print(f"This node joined a swarm as {role}.")
    return 0


def join_token_cmd(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.expanduser().resolve()
    config = load_config(data_dir)
    if config.role != "manager":
        raise SpecError("this node is not a manager: run 'swarmlite join-token' on a manager")

    async def fetch() -> str:
        async with ApiClient.for_data_dir(data_dir) as api:
            tokens = await (api.rotate_join_token(args.role) if args.rotate else api.join_tokens())
        return tokens.worker if args.role == "worker" else tokens.manager

    token = asyncio.run(fetch())
    if args.quiet:
        print(token)
        return 0
    addr = f"{config.advertise_addr}:{config.api_port}"
    if args.rotate:
        print(f"Successfully rotated {args.role} join token.\n")
    print(f"To add a {args.role} to this swarm, run the following command:\n")
    print(f"    swarmlite join --token {token} {addr}\n")
    return 0
