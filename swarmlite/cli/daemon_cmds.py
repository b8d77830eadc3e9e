"""``swarmlite init``, ``swarmlite daemon`` and ``swarmlite leave``: this node's life."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import msgspec

from swarmlite.api.client import ApiClient
from swarmlite.api.models import ClusterInfo
from swarmlite.cli import process
from swarmlite.cli.common import add_command
from swarmlite.config import (
    DEFAULT_ADDRESS_POOL,
    DEFAULT_API_PORT,
    MAX_MESH_WORKERS,
    MESH_WORKERS_ENV,
    NodeConfig,
    config_path,
    load_config,
    mesh_workers_count,
)
from swarmlite.errors import AuthError, DaemonError, SpecError, SwarmliteError

STARTUP_TIMEOUT = 60.0
STOP_GRACE = 30.0
JOIN_TOKENS_FILE = "join-tokens.json"
# What `leave` removes: everything that makes the data dir a node (logs stay).
NODE_STATE = ("node.json", "node.tmp", "certs", "admin", "etcd", "etcd.pid", JOIN_TOKENS_FILE)

MANAGER_LEAVE_REFUSED = (
    "You are attempting to leave the swarm on a node that is participating as a manager. "
    "Removing the last manager erases all current state of the swarm. "
    "Use `--force` to ignore this message."
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = add_command(commands, "init", "Initialize a swarm: this node becomes its manager")
    init.add_argument(
        "--advertise-addr",
        metavar="ADDR",
        help="address other nodes reach this one at (default: the primary IPv4)",
    )
    init.add_argument(
        "--listen-addr",
        metavar="ADDR:PORT",
        default=f"0.0.0.0:{DEFAULT_API_PORT}",
        help=f"where the API listens (default: 0.0.0.0:{DEFAULT_API_PORT})",
    )
    init.add_argument(
        "--default-addr-pool",
        metavar="CIDR",
        default=DEFAULT_ADDRESS_POOL,
        help=f"where stack networks take their /24 subnets (default: {DEFAULT_ADDRESS_POOL})",
    )
    init.add_argument(
        "--cert-expiry",
        metavar="DURATION",
        default="2160h",
        help="lifetime of node certificates, renewed after two thirds of it (default: 2160h)",
    )
    add_mesh_workers_flag(init)
    init.add_argument(
        "--foreground", action="store_true", help="run the daemon here instead of detached"
    )
    init.set_defaults(func=init_cmd)

    daemon = add_command(commands, "daemon", "Run this node's daemon in the foreground")
    daemon.set_defaults(func=daemon_cmd)

    leave = add_command(commands, "leave", "Leave the swarm: stop the daemon, remove its state")
    leave.add_argument("--force", action="store_true", help="leave even as a manager")
    leave.set_defaults(func=leave_cmd)


def add_mesh_workers_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mesh-workers",
        metavar="N",
        default="0",
        help=f"event loops serving the routing mesh, 1 to {MAX_MESH_WORKERS} (default 0: one "
        f"per CPU but one; ${MESH_WORKERS_ENV} overrides it)",
    )


# -- pure helpers ----------------------------------------------------------------


def primary_ipv4() -> str:
    """The address of the default route's interface (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like any public address
            addr: str = sock.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    return addr if addr and addr != "0.0.0.0" else "127.0.0.1"


def advertise_addr(given: str | None) -> str:
    """``--advertise-addr`` (an IP address: it goes into the node's certificate), else
    the default route's address."""
    if not given:
        return primary_ipv4()
    try:
        return str(ipaddress.ip_address(given))
    except ValueError:
        raise SpecError(f"--advertise-addr takes an IP address, not {given!r}") from None


def parse_listen_addr(text: str) -> tuple[str, int]:
    """ "A:P", ":P", "A" or "[v6]:P" -> (host, port); host "" means every address."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        port = int(port_text) if port_text else DEFAULT_API_PORT
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise SpecError(f"invalid --listen-addr {text!r}: expected ADDR:PORT, e.g. 0.0.0.0:4377")
    return host or "0.0.0.0", port


def read_join_tokens(data_dir: Path) -> dict[str, str]:
    """{"worker": token, "manager": token} as bootstrap left them, or {} if it did not."""
    for path in (data_dir / "certs" / JOIN_TOKENS_FILE, data_dir / JOIN_TOKENS_FILE):
        try:
            return msgspec.json.decode(path.read_bytes(), type=dict[str, str])
        except (FileNotFoundError, PermissionError, msgspec.DecodeError):
            continue
    return {}


def init_message(config: NodeConfig, tokens: dict[str, str]) -> str:
    addr = f"{config.advertise_addr}:{config.api_port}"
    if ":" in config.advertise_addr:
        addr = f"[{config.advertise_addr}]:{config.api_port}"
    parts = [f"Swarm initialized: current node ({config.node_id}) is now a manager."]
    for role in ("worker", "manager"):
        token = tokens.get(role)
        if token:
            parts.append(
                f"To add a {role} to this swarm, run the following command:\n\n"
                f"    swarmlite join --token {token} {addr}"
            )
        else:
            parts.append(
                f"To add a {role} to this swarm, run 'swarmlite join-token {role}' "
                "and follow the instructions."
            )
    return "\n\n".join(parts) + "\n"


# -- commands --------------------------------------------------------------------


def refuse_existing_node(data_dir: Path) -> None:
    if not config_path(data_dir).exists():
        return
    pid = process.running_pid(data_dir)
    if pid is not None:
        raise DaemonError(
            f"this node is already part of a swarm (its daemon runs as pid {pid}, data dir "
            f"{data_dir}): use 'swarmlite leave --force' to leave it first"
        )
    raise DaemonError(
        f"a swarmlite node already exists in {data_dir} but its daemon is not running: "
        f"start it with 'swarmlite daemon --data-dir {data_dir}' "
        "(or discard it with 'swarmlite leave --force')"
    )


async def wait_ready(
    data_dir: Path, proc: subprocess.Popen[bytes], timeout: float = STARTUP_TIMEOUT
) -> ClusterInfo:
    """Wait until the new daemon answers ``GET /v1/info``, or fail saying why."""
    log = data_dir / process.LOG_FILE
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            last = process.last_log_line(data_dir)
            raise DaemonError(
                f"the daemon exited during startup with code {code}"
                + (f": {last}" if last else "")
                + f" (see {log})"
            )
        try:
            async with ApiClient.for_data_dir(data_dir, timeout=5) as api:
                return await api.info()
        except AuthError:
            raise
        except SwarmliteError:
            pass  # not listening yet, or its store not up yet
        if time.monotonic() >= deadline:
            raise DaemonError(
                f"the daemon (pid {proc.pid}) did not answer within {timeout:g} s; "
                f"see {log}, and stop it with 'swarmlite leave --force' if it is stuck"
            )
        await asyncio.sleep(0.25)  # another process: nothing to wait on but its socket


def parse_cert_expiry(text: str) -> float:
    from swarmlite.spec.compose.units import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError:
        raise SpecError(f"--cert-expiry {text!r} is not a duration like 2160h or 10m") from None
    if seconds < 60:
        raise SpecError("--cert-expiry must be at least 1m: a node must have time to renew")
    return seconds


def validate_pool(text: str) -> str:
    try:
        pool = ipaddress.ip_network(text)
    except ValueError:
        raise SpecError(
            f"--default-addr-pool {text!r} is not a network like 10.213.0.0/16"
        ) from None
    if pool.version != 4 or pool.prefixlen > 24:
        raise SpecError(f"--default-addr-pool {text} must be an IPv4 network of /24 or larger")
    return str(pool)


def init_cmd(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.expanduser().resolve()
    refuse_existing_node(data_dir)
    host, port = parse_listen_addr(args.listen_addr)
    mesh_workers = mesh_workers_count(args.mesh_workers, "--mesh-workers")
    from swarmlite import node
    from swarmlite.bootstrap import bootstrap

    advertise = advertise_addr(args.advertise_addr)
    config = bootstrap(
        data_dir,
        advertise_addr=advertise,
        listen_host=host,
        api_port=port,
        address_pool=validate_pool(args.default_addr_pool),
        cert_lifetime=parse_cert_expiry(args.cert_expiry),
        mesh_workers=mesh_workers,
    )
    if args.foreground:
        print(init_message(config, read_join_tokens(data_dir)), flush=True)
        node.run(data_dir)
        return 0
    proc = process.start_detached(data_dir)
    asyncio.run(wait_ready(data_dir, proc))
    print(init_message(config, read_join_tokens(data_dir)))
    return 0


def daemon_cmd(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.expanduser().resolve()
    load_config(data_dir)  # a clear error when there is no node here
    from swarmlite import node

    me = os.getpid()
    other = process.running_pid(data_dir)
    if other is not None and other != me:
        raise DaemonError(f"a swarmlite daemon already runs for {data_dir} (pid {other})")
    process.write_pid(data_dir, me)
    try:
        node.run(data_dir)
    finally:
        process.remove_pid(data_dir, me)
    return 0


def remove_node_state(data_dir: Path) -> None:
    for name in (*NODE_STATE, process.PID_FILE):
        path = data_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def leave_cmd(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.expanduser().resolve()
    config = load_config(data_dir)
    if config.role == "manager" and not args.force:
        raise DaemonError(MANAGER_LEAVE_REFUSED)
    from swarmlite import node

    process.stop_daemon(data_dir, grace=STOP_GRACE)
    asyncio.run(node.remove_node_workloads(config.node_id))
    remove_node_state(data_dir)
    print("Node left the swarm.")
    return 0
