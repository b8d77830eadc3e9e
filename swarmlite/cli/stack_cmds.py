"""``swarmlite deploy`` and ``swarmlite stack ...``: stacks from compose files."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from swarmlite.api.client import ApiClient
from swarmlite.api.models import DeployResult, ServiceSummary
from swarmlite.cli import tables
from swarmlite.cli.common import add_command, add_format, add_group, api_command, print_json, warn
from swarmlite.cli.progress import (
    ServiceView,
    Verdict,
    event_lines,
    redraw,
    service_view,
    table_lines,
    verdict,
)
from swarmlite.cli.service_cmds import print_tasks
from swarmlite.errors import NotFoundError, SpecError, SwarmliteError
from swarmlite.spec.objects import Task, TaskState

# Looked up in the current directory when no -f/-c is given, like docker compose.
DEFAULT_COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = add_command(commands, "deploy", "Deploy a stack from compose files, or update it")
    deploy.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        metavar="FILE",
        help="compose file (repeat to merge several; default: ./compose.yaml)",
    )
    deploy.add_argument("--stack", metavar="NAME", help="stack name (default: from the files)")
    _add_profile(deploy)
    _add_prune(deploy)
    _add_wait(deploy)
    deploy.set_defaults(func=api_command(deploy_stack))

    stack = add_group(commands, "stack", "Manage stacks")

    stack_deploy = add_command(stack, "deploy", "Deploy a stack, or update it", aliases=("up",))
    stack_deploy.add_argument(
        "-c",
        "--compose-file",
        dest="files",
        action="append",
        metavar="FILE",
        help="compose file (repeat to merge several)",
    )
    stack_deploy.add_argument("stack", nargs="?", metavar="STACK", help="stack name")
    _add_profile(stack_deploy)
    _add_prune(stack_deploy)
    _add_wait(stack_deploy)
    stack_deploy.set_defaults(func=api_command(deploy_stack))

    ls = add_command(stack, "ls", "List stacks", aliases=("list",))
    add_format(ls)
    ls.set_defaults(func=api_command(stack_ls))

    ps = add_command(stack, "ps", "List the tasks of a stack")
    ps.add_argument("stack", metavar="STACK")
    ps.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    add_format(ps)
    ps.set_defaults(func=api_command(stack_ps))

    rm = add_command(stack, "rm", "Remove one or more stacks", aliases=("remove", "down"))
    rm.add_argument("stacks", nargs="+", metavar="STACK")
    rm.set_defaults(func=api_command(stack_rm))


def _add_profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        dest="profiles",
        action="append",
        metavar="NAME",
        help="enable services of this compose profile (repeat for several; '*' for all; "
        "default: $COMPOSE_PROFILES)",
    )


def _add_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prune", action="store_true", help="remove services no longer in the files"
    )


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help="return once the deploy is accepted, without waiting for the stack to converge",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the stack to converge (default: 300)",
    )
    parser.add_argument(
        "--rollback-on-failure",
        action="store_true",
        help="when a service fails, roll back every service this deploy updated",
    )


def compose_files(given: list[str] | None, cwd: Path) -> list[Path]:
    if given:
        return [Path(f) for f in given]
    for name in DEFAULT_COMPOSE_FILES:
        if (cwd / name).is_file():
            return [cwd / name]
    raise SpecError(
        f"no compose file given and none of {', '.join(DEFAULT_COMPOSE_FILES)} in {cwd}: "
        "pass one with -f FILE"
    )


def deploy_lines(result: DeployResult) -> list[str]:
    """What a deploy did, one line per service, like ``docker stack deploy``."""
    lines = [f"Creating service {name}" for name in result.created]
    lines += [f"Updating service {name}" for name in result.updated]
    lines += [f"Removing service {name}" for name in result.removed]
    if not lines:
        lines.append(f"Stack {result.stack} is up to date")
    return lines


async def deploy_stack(args: argparse.Namespace, api: ApiClient) -> int:
    from swarmlite.spec.compose import load_stack

    files = compose_files(args.files, Path.cwd())
    spec = load_stack(files, stack=args.stack, environ=os.environ, profiles=args.profiles)
    for warning in spec.warnings:
        warn(warning)
    result = await api.deploy(spec, prune=args.prune)
    # The daemon echoes the spec's warnings: print only what it added.
    for warning in result.warnings:
        if warning not in spec.warnings:
            warn(warning)
    for line in deploy_lines(result):
        print(line)
    if args.detach:
        return 0
    tty = sys.stdout.isatty()
    outcome = await watch_deploy(api, result, timeout=args.timeout, out=sys.stdout, tty=tty)
    if outcome.outcome == "converged":
        print(f"Stack {result.stack} converged")
        return 0
    reason = f"deploy of stack {result.stack} failed: {outcome.reason}"
    if not args.rollback_on_failure:
        raise SwarmliteError(reason)
    back = await roll_back(
        api,
        result,
        timeout=args.timeout,
        out=sys.stdout,
        tty=tty,
        reason=f"deploy --rollback-on-failure: {outcome.reason}",
    )
    raise SwarmliteError(f"{reason}; {back}")


async def stack_ls(args: argparse.Namespace, api: ApiClient) -> int:
    stacks = await api.stacks()
    if args.format == "json":
        print_json(stacks)
    else:
        print(tables.render_table(tables.STACK_HEADERS, tables.stack_rows(stacks)))
    return 0


async def stack_ps(args: argparse.Namespace, api: ApiClient) -> int:
    tasks = await api.tasks(stack=args.stack)
    if not tasks:  # as docker stack ps: an unknown stack is an error, not an empty table
        raise NotFoundError(f"nothing found in stack: {args.stack}")
    await print_tasks(args, api, tasks)
    return 0


async def stack_rm(args: argparse.Namespace, api: ApiClient) -> int:
    """Each stack in turn, as ``docker stack rm``: one that does not exist is "Nothing
    found" (not a failure), and one that fails does not stop the others."""
    failed = False
    for name in args.stacks:
        try:
            result = await api.remove_stack(name)
        except NotFoundError:
            print(f"Nothing found in stack: {name}", file=sys.stderr)
            continue
        except SwarmliteError as err:
            print(f"Error: {name}: {err}", file=sys.stderr)
            failed = True
            continue
        if not result.removed:
            print(f"Nothing found in stack: {name}")
        for removed in result.removed:
            print(f"Removing service {removed}")
        # As docker stack rm: a secret or config still in use is kept and reported,
        # the rest is removed, and the command fails.
        for error in result.errors:
            print(f"Failed to remove {error}", file=sys.stderr)
        if result.errors:
            print(f"Failed to remove some resources from stack: {name}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


# -- waiting for a deploy ------------------------------------------------------------

POLL_INTERVAL = 0.5
ROLLBACK_DONE = ("rollback_completed", "rollback_paused")


class DeployWatch:
    """Polls the stack's services and tasks and renders their progress: a block redrawn
    in place on a terminal, one line per change otherwise."""

    def __init__(
        self,
        api: ApiClient,
        result: DeployResult,
        out: TextIO,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.result = result
        self.out = out
        self.tty = tty
        self.clock = clock
        self.first_update_state: dict[str, str] = {}
        self.before: dict[str, ServiceView] = {}
        self.height = 0
        self.seen_running: dict[str, float] = {}  # task id -> when a poll first saw it run

    async def poll(self) -> tuple[list[ServiceSummary], list[ServiceView]]:
        stack = self.result.stack
        summaries = await self.api.services(stack=stack)
        tasks: dict[str, list[Task]] = {}
        for task in await self.api.tasks(stack=stack):
            tasks.setdefault(task.service_name, []).append(task)
        created = set(self.result.created)
        changed = created | set(self.result.updated)
        now = self.clock()
        running_for = {}
        for t in (t for ts in tasks.values() for t in ts if t.status.state == TaskState.RUNNING):
            running_for[t.id] = now - self.seen_running.setdefault(t.id, now)
        views = []
        for s in summaries:
            first = self.first_update_state.setdefault(s.name, s.update_state)
            views.append(
                service_view(
                    s,
                    tasks.get(s.name, []),
                    created=s.name in created,
                    changed=s.name in changed,
                    first_update_state=first,
                    running_for=running_for,
                )
            )
        self.render(views)
        return summaries, views

    def render(self, views: list[ServiceView]) -> None:
        if self.tty:
            lines = table_lines(views)
            self.out.write(redraw(self.height, lines))
            self.height = len(lines)
        else:
            for line in event_lines(self.before, views):
                self.out.write(line + "\n")
        self.out.flush()
        self.before = {v.name: v for v in views}


async def watch_deploy(
    api: ApiClient,
    result: DeployResult,
    *,
    timeout: float,
    out: TextIO,
    tty: bool,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Verdict:
    """Poll until every service of the stack converged, one failed, or ``timeout``."""
    watch = DeployWatch(api, result, out, tty, clock)
    deadline = clock() + timeout
    while True:
        _, views = await watch.poll()
        outcome = verdict(views)
        if outcome.outcome != "waiting":
            return outcome
        if clock() >= deadline:
            late = ", ".join(
                f"{v.name} ({v.running}/{v.desired} {v.state})" for v in views if not v.done
            )
            return Verdict("failed", f"not converged after {timeout:g}s: {late}")
        await sleep(POLL_INTERVAL)


async def roll_back(
    api: ApiClient,
    result: DeployResult,
    *,
    timeout: float,
    out: TextIO,
    tty: bool,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    reason: str = "",
) -> str:
    """Roll back every service the deploy updated and wait for it; say how it went.

    A service already rolling back (its update_config said so) is not rolled back
    twice: a second rollback would return to the failed version. Services the deploy
    created have no earlier version and stay as they are.
    """
    watch = DeployWatch(api, result, out, tty)
    summaries, _ = await watch.poll()
    states = {s.name: s.update_state for s in summaries}
    for name in result.updated:
        if name in states and states[name] not in ("rollback_started", *ROLLBACK_DONE):
            await api.rollback(name, reason)
    wanted = [n for n in result.updated if n in states]
    if not wanted:
        return "nothing to roll back (the deploy updated no service)"
    out.write(f"Rolling back {', '.join(wanted)}\n")
    deadline = clock() + timeout
    while True:
        summaries, _ = await watch.poll()
        states = {s.name: s.update_state for s in summaries}
        pending = [n for n in wanted if n in states and states[n] not in ROLLBACK_DONE]
        if not pending:
            paused = [n for n in wanted if states.get(n) == "rollback_paused"]
            if paused:
                return f"rollback paused for {', '.join(paused)}"
            return f"rolled back {', '.join(wanted)}"
        if clock() >= deadline:
            return f"rollback of {', '.join(pending)} not done after {timeout:g}s"
        await sleep(POLL_INTERVAL)
