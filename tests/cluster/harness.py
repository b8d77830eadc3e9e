"""Several swarmlite nodes on one Docker engine, each its own host with its own address.

There is no Docker-in-Docker here, so a node is an unprivileged container of
``swarmlite/node:1`` (a Debian userland) on a private Docker network this harness
creates (a free /24 in 10.240.0.0/16). The host's Python installation, this
repository (with its venv) and ``etcd`` are bind-mounted read-only at the same
paths, and the host's Docker socket too: the node's agent starts its tasks as
sibling containers on the host engine, in node networking mode
(``SWARMLITE_WORKLOAD_NETWORK=node``): each task joins its node container's network
namespace (``swarmlite/agent/node_network.py``). So real faults are one Docker
command away and take the node's tasks with it: ``docker kill``, ``docker pause``,
``docker network disconnect``.

Every node's ``/etc/resolv.conf`` (shared by its tasks) names the node's service name
server at 127.0.0.53, which forwards other names to Docker's embedded DNS.

Teardown removes every task container labelled with a node's id, every node
container and the network, also when the test failed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.harness import TIMEOUT_FACTOR, wait_until

REPO = Path(__file__).resolve().parents[2]
NODE_IMAGE = "swarmlite/node:1"
DATA_DIR = "/data"
API_PORT = 4377
RESOLV_CONF = "nameserver 127.0.0.53\noptions ndots:0\n"
LABEL_RUN = "swarmlite.cluster-test"

# One polling helper and one timeout factor serve every tier of real-process tests.
__all__ = ["LIVE", "TIMEOUT_FACTOR", "Cluster", "Node", "wait_until"]

# Clusters between __enter__ and close, so a failed test can report their logs.
LIVE: list[Cluster] = []


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def http_get(addr: str, port: int, path: str = "/", timeout: float = 2.0) -> str:
    """One HTTP/1.0 GET over a plain socket; the body, or raises OSError."""
    with socket.create_connection((addr, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0] + b" ":
        raise OSError(f"bad answer from {addr}:{port}: {head[:80]!r}")
    return body.decode(errors="replace")


def reachable(addr: str, port: int, timeout: float = 1.0) -> bool:
    try:
        http_get(addr, port, timeout=timeout)
    except OSError:
        return False
    return True


def _used_subnets() -> list[ipaddress.IPv4Network]:
    ids = docker("network", "ls", "-q").stdout.split()
    if not ids:
        return []
    out = docker("network", "inspect", "--format", "{{json .IPAM.Config}}", *ids).stdout
    found = []
    for line in out.splitlines():
        for cfg in json.loads(line) or []:
            with contextlib.suppress(ValueError, KeyError):
                found.append(ipaddress.IPv4Network(cfg["Subnet"]))
    return found


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.240.0.0/16 that no Docker network uses."""
    used = _used_subnets()
    candidates = list(ipaddress.IPv4Network("10.240.0.0/16").subnets(new_prefix=24))
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24 in 10.240.0.0/16")


def _mounts() -> list[str]:
    """Read-only mounts that let the node run this checkout with the host's Python."""
    paths = {REPO, Path(sys.prefix).resolve()}
    base = Path(sys.base_prefix).resolve()
    args = []
    if base in (Path("/usr"), Path("/usr/local")):
        # A distro Python: mount only the interpreter (at every path of the venv's
        # symlink chain to it) and its standard library, not the host's whole /usr;
        # the node image has the shared libraries they link.
        paths |= {Path(sysconfig.get_path(k)).resolve() for k in ("stdlib", "platstdlib")}
        exe, link = Path(sys.executable).resolve(), Path(sys.executable)
        while link.is_symlink():
            link = link.parent / os.readlink(link)
            if not link.is_relative_to(sys.prefix):
                args += ["-v", f"{exe}:{link}:ro"]
    else:
        paths.add(base)
    etcd = Path("/usr/bin/etcd")
    for p in sorted(paths):
        if not any(p != q and q in p.parents for q in paths):  # skip nested ones
            args += ["-v", f"{p}:{p}:ro"]
    if etcd.exists():
        args += ["-v", f"{etcd}:{etcd}:ro"]
    return [*args, "-v", "/var/run/docker.sock:/var/run/docker.sock"]


class Node:
    """One node container. ``name`` is the container's name, ``ip`` its address."""

    def __init__(self, cluster: Cluster, index: int, ip: str) -> None:
        self.cluster = cluster
        self.index = index
        self.hostname = f"n{index}"
        self.name = f"{cluster.name}-{self.hostname}"
        self.ip = ip
        self.node_id = ""

    def __repr__(self) -> str:
        return f"Node({self.hostname} {self.ip} {self.node_id[:12]})"


class Cluster:
    """A private network and node containers on it; use as a context manager.

    API (``node`` is a ``Node``; every CLI call runs inside that node's container)::

        add_node() -> Node              run a node container (no daemon yet)
        init(node) -> str               bootstrap a new cluster there; the init output
        join(node, token, manager_ip)   swarmlite join --token TOKEN MANAGER_IP:4377
        exec(node, *args, check=False)  swarmlite ARGS in the node -> CompletedProcess
        json(node, *args)               swarmlite ARGS --format json, decoded
        service_ps(node, service)       list of task dicts;  node_ls(node): node dicts
        running(node, service)          tasks running with desired state running
        wait_running(node, service, n)  wait until exactly n are
        kill(node) / start(node)        docker kill / docker start + the daemon again
        is_up(node)                     the node's container runs (not killed or paused)
        pause(node) / unpause(node)     docker pause / unpause (daemon and its tasks)
        disconnect(node) / connect(node)  docker network disconnect / connect, same IP
        ip(node) -> str                 the node's address on the private network
        task_containers(node)           ids of the node's task containers (docker ps -a)
        sh(node, script) / workload_sh(container, script)  run sh in a node / a task
        close()                         remove tasks, nodes and the network
    """

    def __init__(self, *, image: str = NODE_IMAGE) -> None:
        self.run_id = secrets.token_hex(3)
        self.name = f"slc-{self.run_id}"
        self.image = image
        self.subnet = free_subnet()
        self.network = self.name
        self.nodes: list[Node] = []
        self._hosts = iter(list(self.subnet.hosts())[9:])  # .10 and up

    # -- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        docker(
            "network", "create", "--driver", "bridge", "--subnet", str(self.subnet),
            "--label", f"{LABEL_RUN}={self.run_id}", self.network,
        )  # fmt: skip
        LIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_node(self) -> Node:
        node = Node(self, len(self.nodes) + 1, str(next(self._hosts)))
        self.nodes.append(node)
        docker(
            "run", "-d", "--init", "--name", node.name, "--hostname", node.hostname,
            "--network", self.network, "--ip", node.ip,
            "--label", f"{LABEL_RUN}={self.run_id}",
            *_mounts(),
            "-e", "SWARMLITE_WORKLOAD_NETWORK=node",
            "-e", f"SWARMLITE_NODE_CONTAINER={node.name}",
            "-e", f"SWARMLITE_DATA_DIR={DATA_DIR}",
            "-e", "DOCKER_HOST=unix:///var/run/docker.sock",
            "-e", "SWARMLITE_LOG_LEVEL=INFO",
            "-w", str(REPO),
            self.image, "sleep", "infinity",
        )  # fmt: skip
        self._point_resolver(node)
        return node

    def close(self) -> None:
        """Remove every task container of every node, the nodes and the network."""
        if self in LIVE:
            LIVE.remove(self)
        # Nodes first stop: a live agent would start new task containers meanwhile.
        if self.nodes:
            docker("kill", *[n.name for n in self.nodes], check=False)
        ids = {n.node_id for n in self.nodes if n.node_id}
        node_cids = {
            docker("inspect", "-f", "{{.Id}}", n.name, check=False).stdout.strip()
            for n in self.nodes
        } - {""}
        doomed: set[str] = set()
        for node_id in ids:
            doomed |= set(
                docker("ps", "-aq", "--filter", f"label=swarmlite.node={node_id}").stdout.split()
            )
        # Anything else in a node's namespace (a task whose labels we never learned).
        for cid in docker("ps", "-aq", check=False).stdout.split():
            mode = docker("inspect", "-f", "{{.HostConfig.NetworkMode}}", cid, check=False)
            if mode.stdout.strip().removeprefix("container:") in node_cids:
                doomed.add(cid)
        if doomed:
            docker("rm", "-f", "-v", *sorted(doomed), check=False)
        for n in self.nodes:
            docker("rm", "-f", "-v", n.name, check=False)
        docker("network", "rm", self.network, check=False)

    def log_tails(self, lines: int = 40) -> str:
        """The end of every node's daemon and etcd logs, for a failure report."""
        out = []
        for node in self.nodes:
            for name in ("daemon.log", "etcd.log"):
                tail = self.sh(node, f"tail -n {lines} {DATA_DIR}/{name} 2>&1")
                out.append(f"--- {node.hostname} ({node.ip}) {name}\n{tail.stdout}{tail.stderr}")
        return "\n".join(out)

    # -- creating the cluster -----------------------------------------------------------
    def init(self, node: Node) -> str:
        out = self.exec(
            node, "init", "--advertise-addr", node.ip,
            "--listen-addr", f"0.0.0.0:{API_PORT}", check=True, timeout=120,
        ).stdout  # fmt: skip
        node.node_id = self._node_id(node)
        return out

    def join(self, node: Node, token: str, manager_ip: str) -> str:
        """``swarmlite join`` in the node (the command is the lead engineer's)."""
        out = self.exec(
            node, "join", "--token", token, "--advertise-addr", node.ip,
            "--listen-addr", f"0.0.0.0:{API_PORT}", f"{manager_ip}:{API_PORT}",
            check=True, timeout=120,
        ).stdout  # fmt: skip
        node.node_id = self._node_id(node)
        return out

    def _node_id(self, node: Node) -> str:
        raw = self.sh(node, f"cat {DATA_DIR}/node.json").stdout
        return str(json.loads(raw)["node_id"])

    def _point_resolver(self, node: Node) -> None:
        # Docker writes resolv.conf at every start; the node's tasks share this file.
        self.sh(node, f"printf '{RESOLV_CONF}' > /etc/resolv.conf", check=True)

    # -- faults -------------------------------------------------------------------------
    def kill(self, node: Node) -> None:
        docker("kill", node.name)

    def start(self, node: Node) -> None:
        """Start a stopped node container and its daemon; wait for its API."""
        docker("start", node.name)
        self._point_resolver(node)
        # Every process of the old container is gone: its pid files only mislead.
        self.sh(node, f"rm -f {DATA_DIR}/daemon.pid {DATA_DIR}/etcd.pid", check=True)
        cli = " ".join([sys.executable, "-m", "swarmlite.cli.main", "daemon"])
        docker("exec", "-d", node.name, "sh", "-c", f"exec {cli} >>{DATA_DIR}/daemon.log 2>&1")
        try:
            wait_until(lambda: self.exec(node, "node", "ls").returncode == 0, timeout=60,
                       what=f"{node.hostname} API")  # fmt: skip
        except AssertionError as exc:
            log = self.sh(node, f"tail -n 20 {DATA_DIR}/daemon.log").stdout
            raise AssertionError(f"{exc}\n{node.hostname} daemon.log:\n{log}") from None

    def is_up(self, node: Node) -> bool:
        """Is the node's container running (not killed, not paused)?"""
        state = docker("inspect", "-f", "{{.State.Running}} {{.State.Paused}}", node.name,
                       check=False).stdout.split()  # fmt: skip
        return state == ["true", "false"]

    def pause(self, node: Node) -> None:
        docker("pause", node.name)

    def unpause(self, node: Node) -> None:
        docker("unpause", node.name)

    def disconnect(self, node: Node) -> None:
        docker("network", "disconnect", self.network, node.name)

    def connect(self, node: Node) -> None:
        docker("network", "connect", "--ip", node.ip, self.network, node.name)

    def ip(self, node: Node) -> str:
        return node.ip

    # -- driving it -----------------------------------------------------------------------
    def sh(
        self, node: Node, script: str, *, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return docker("exec", node.name, "sh", "-c", script, check=check)

    def workload_sh(
        self, container: str, script: str, *, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return docker("exec", container, "sh", "-c", script, check=check)

    def exec(
        self, node: Node, *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = docker(
            "exec", node.name, sys.executable, "-m", "swarmlite.cli.main", *args,
            "--data-dir", DATA_DIR, check=False, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"swarmlite {' '.join(args)} on {node.hostname} failed: {result.stderr.strip()}"
            )
        return result

    def json(self, node: Node, *args: str) -> Any:
        return json.loads(self.exec(node, *args, "--format", "json", check=True).stdout)

    def service_ps(self, node: Node, service: str) -> list[dict[str, Any]]:
        return list(self.json(node, "service", "ps", service))

    def node_ls(self, node: Node) -> list[dict[str, Any]]:
        return list(self.json(node, "node", "ls"))

    def running(self, node: Node, service: str) -> list[dict[str, Any]]:
        return [
            t
            for t in self.service_ps(node, service)
            if t["status"]["state"] == 5 and t["desired_state"] == 5
        ]

    def wait_running(
        self, node: Node, service: str, count: int, timeout: float = 60
    ) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            running = self.running(node, service)
            return running if len(running) == count else None

        return wait_until(check, timeout=timeout, what=f"{count} running tasks of {service}")

    def task_containers(self, node: Node, *, running_only: bool = False) -> list[str]:
        args = ["ps", "-q", "--no-trunc", "--filter", f"label=swarmlite.node={node.node_id}"]
        if not running_only:
            args.insert(1, "-a")
        return sorted(docker(*args).stdout.split())


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    with Cluster() as c:
        yield c
