"""``swarmlite service ...`` and ``swarmlite ps``: services and their tasks."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from swarmlite.api.client import ApiClient
from swarmlite.api.models import ServiceUpdateRequest
from swarmlite.cli import tables
from swarmlite.cli.common import (
    add_command,
    add_format,
    add_group,
    api_command,
    fetch_each,
    print_json,
)
from swarmlite.cli.pretty import pretty_service
from swarmlite.errors import SwarmliteError
from swarmlite.spec.objects import Service, Task


def scale_spec(text: str) -> tuple[str, int]:
    """ "web=3" -> ("web", 3); argparse turns the ValueError into a usage error."""
    name, sep, count = text.partition("=")
    if not sep or not name or not count.isdigit():
        raise argparse.ArgumentTypeError(
            f"invalid scale specifier {text!r}: expected SERVICE=REPLICAS, e.g. web=3"
        )
    return name, int(count)


def env_pair(text: str) -> tuple[str, str]:
    """KEY=VALUE -> (KEY, VALUE); argparse turns the ValueError into a usage error."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid environment variable {text!r}: expected K=V")
    return key, value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service = add_group(commands, "service", "Manage services")

    ls = add_command(service, "ls", "List services", aliases=("list",))
    add_format(ls)
    ls.set_defaults(func=api_command(service_ls))

    ps = add_command(service, "ps", "List the tasks of one or more services")
    ps.add_argument("services", nargs="+", metavar="SERVICE")
    ps.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    add_format(ps)
    ps.set_defaults(func=api_command(service_ps))

    inspect = add_command(service, "inspect", "Show the details of one or more services")
    inspect.add_argument("services", nargs="+", metavar="SERVICE")
    inspect.add_argument("--pretty", action="store_true", help="human-readable output")
    add_format(inspect, choices=("json",))
    inspect.set_defaults(func=api_command(service_inspect))

    scale = add_command(service, "scale", "Scale one or more replicated services")
    scale.add_argument("specs", nargs="+", type=scale_spec, metavar="SERVICE=REPLICAS")
    scale.set_defaults(func=api_command(service_scale))

    update = add_command(service, "update", "Update a service (a rolling update of its tasks)")
    update.add_argument("service", metavar="SERVICE")
    update.add_argument("--image", metavar="IMAGE", help="new image")
    update.add_argument(
        "--env-add",
        action="append",
        type=env_pair,
        default=[],
        metavar="K=V",
        help="add or change an environment variable",
    )
    update.add_argument(
        "--env-rm", action="append", default=[], metavar="K", help="remove an environment variable"
    )
    update.add_argument("--replicas", type=int, metavar="N", help="number of replicas")
    update.add_argument(
        "--force", action="store_true", help="redo every task even if nothing changed"
    )
    update.set_defaults(func=api_command(service_update))

    rollback = add_command(service, "rollback", "Return a service to its previous spec")
    rollback.add_argument("service", metavar="SERVICE")
    rollback.set_defaults(func=api_command(service_rollback))

    rm = add_command(service, "rm", "Remove one or more services", aliases=("remove",))
    rm.add_argument("services", nargs="+", metavar="SERVICE")
    rm.set_defaults(func=api_command(service_rm))

    logs = add_command(service, "logs", "Fetch the logs of a service")
    logs.add_argument("service", metavar="SERVICE")
    logs.add_argument("-f", "--follow", action="store_true", help="follow log output")
    logs.add_argument("--tail", type=int, metavar="N", help="number of lines from the end")
    logs.set_defaults(func=api_command(service_logs))

    ps_all = add_command(commands, "ps", "List the tasks of every service")
    ps_all.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    add_format(ps_all)
    ps_all.set_defaults(func=api_command(ps_all_tasks))


async def service_ls(args: argparse.Namespace, api: ApiClient) -> int:
    services = await api.services()
    if args.format == "json":
        print_json(services)
    else:
        print(tables.render_table(tables.SERVICE_HEADERS, tables.service_rows(services)))
    return 0


async def print_tasks(args: argparse.Namespace, api: ApiClient, tasks: Sequence[Task]) -> None:
    """The ``ps`` table (or JSON), with node hostnames looked up once."""
    if args.format == "json":
        print_json(list(tasks))
        return
    hostnames = {node.id: node.hostname for node in await api.nodes()} if tasks else {}
    rows = tables.task_rows(tasks, hostnames, now=time.time(), no_trunc=args.no_trunc)
    print(tables.render_table(tables.TASK_HEADERS, rows))


async def service_ps(args: argparse.Namespace, api: ApiClient) -> int:
    tasks: list[Task] = []
    for name in args.services:
        tasks.extend(await api.tasks(service=name))
    await print_tasks(args, api, tasks)
    return 0


async def ps_all_tasks(args: argparse.Namespace, api: ApiClient) -> int:
    await print_tasks(args, api, await api.tasks())
    return 0


async def service_inspect(args: argparse.Namespace, api: ApiClient) -> int:
    services, failed = await fetch_each(args.services, api.service)
    if args.pretty:
        if services:
            print("\n\n".join(pretty_service(s) for s in services))
    elif services or not failed:
        print_json(services)
    return 1 if failed else 0


async def service_scale(args: argparse.Namespace, api: ApiClient) -> int:
    failed = 0
    for name, replicas in args.specs:
        try:
            service = await api.scale(name, replicas)
        except SwarmliteError as err:
            print(f"Error: {name}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{service.name} scaled to {replicas}")
    return 1 if failed else 0


async def service_update(args: argparse.Namespace, api: ApiClient) -> int:
    change = ServiceUpdateRequest(
        image=args.image,
        env_add=dict(args.env_add),
        env_rm=tuple(args.env_rm),
        replicas=args.replicas,
        force=args.force,
    )
    print(_update_line(await api.update_service(args.service, change)))
    return 0


async def service_rollback(args: argparse.Namespace, api: ApiClient) -> int:
    print(_update_line(await api.rollback(args.service)))
    return 0


def _update_line(service: Service) -> str:
    """``s_web: update started (version 3)``; the rest shows in ``service ls``."""
    status = service.update_status
    what = "rollback started" if status.state == "rollback_started" else "update started"
    if status.state not in ("updating", "rollback_started"):
        what = "updated, no task needs replacing"
    return f"{service.name}: {what} (version {service.version})"


async def service_rm(args: argparse.Namespace, api: ApiClient) -> int:
    failed = 0
    for name in args.services:
        try:
            result = await api.remove_service(name)
        except SwarmliteError as err:
            print(f"Error: {name}: {err}", file=sys.stderr)
            failed += 1
            continue
        for removed in result.removed or (name,):
            print(removed)
    return 1 if failed else 0


async def service_logs(args: argparse.Namespace, api: ApiClient) -> int:
    async for line in api.service_logs(args.service, follow=args.follow, tail=args.tail):
        print(line, flush=True)
    return 0
