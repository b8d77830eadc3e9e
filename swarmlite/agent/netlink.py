"""Service VIPs as /32 addresses on a stack network's bridge, through ``ip addr``.

Blocking (subprocess): callers run these in a thread. The node's proxy binds VIP:port
on the bridge, so containers on that network reach the mesh at the VIP.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Collection

from swarmlite.errors import RuntimeFailure


def parse_host_addresses(output: str) -> set[str]:
    """The /32 IPv4 addresses in ``ip -4 -o addr show`` output."""
    found: set[str] = set()
    for line in output.splitlines():
        fields = line.split()
        if "inet" not in fields:
            continue
        cidr = fields[fields.index("inet") + 1]
        addr, _, prefix = cidr.partition("/")
        if prefix == "32":
            found.add(addr)
    return found


def plan_vips(
    current: Collection[str], wanted: Collection[str], vip_range: ipaddress.IPv4Network
) -> tuple[list[str], list[str]]:
    """(to add, to delete). Only addresses inside ``vip_range`` are ever deleted."""
    bad = sorted(v for v in wanted if ipaddress.IPv4Address(v) not in vip_range)
    if bad:
        raise RuntimeFailure(f"VIPs {', '.join(bad)} are outside the VIP range {vip_range}")
    have = set(current)
    want = set(wanted)
    add = sorted(want - have, key=ipaddress.IPv4Address)
    delete = sorted(
        (a for a in have - want if ipaddress.IPv4Address(a) in vip_range),
        key=ipaddress.IPv4Address,
    )
    return add, delete


def _ip(*args: str, ok_errors: tuple[str, ...] = ()) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if any(e in err for e in ok_errors):
            return ""
        raise RuntimeFailure(f"ip {' '.join(args)}: {err or 'exit ' + str(proc.returncode)}")
    return proc.stdout


def host_addresses(device: str) -> set[str]:
    """/32 IPv4 addresses currently on ``device``."""
    return parse_host_addresses(_ip("-4", "-o", "addr", "show", "dev", device))


def sync_vips(device: str, wanted: Collection[str], vip_range: ipaddress.IPv4Network) -> None:
    """Make the /32 addresses of ``device`` inside ``vip_range`` equal to ``wanted``."""
    add, delete = plan_vips(host_addresses(device), wanted, vip_range)
    for addr in add:
        _ip("addr", "add", f"{addr}/32", "dev", device, ok_errors=("File exists",))
    for addr in delete:
        _ip(
            "addr",
            "del",
            f"{addr}/32",
            "dev",
            device,
            ok_errors=("Cannot assign requested address",),
        )
