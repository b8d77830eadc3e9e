"""RoutingTable and BackendPicker: pure, no sockets."""

from __future__ import annotations

import msgspec

from swarmlite.proxy.table import (
    FAIL_TIMEOUT,
    REFUSED_TIMEOUT,
    BackendPicker,
    RoutingTable,
    Target,
    plan_listeners,
)
from swarmlite.spec.routes import Backend
from swarmlite.spec.service import PortSpec
from tests.unit.clock import Clock
from tests.unit.test_proxy_support import backend, route, snapshot


def _t(n: int) -> Target:
    return Target(f"t{n}", "n1", f"10.0.0.{n}", 80)


def test_picker_round_robin_and_empty() -> None:
    p = BackendPicker([_t(1), _t(2), _t(3)])
    assert [p.pick() for _ in range(6)] == [_t(1), _t(2), _t(3)] * 2
    assert BackendPicker().pick() is None


def test_picker_replace_keeps_rotation_and_drops_removed() -> None:
    p = BackendPicker([_t(1), _t(2), _t(3)])
    assert p.pick() == _t(1)
    p.replace([_t(1), _t(3)])
    picks = [p.pick() for _ in range(10)]
    assert _t(2) not in picks
    assert set(picks) == {_t(1), _t(3)}


def test_picker_skips_a_failed_target_until_its_fail_timeout() -> None:
    clock = Clock()
    p = BackendPicker([_t(1), _t(2), _t(3)], clock=clock)
    p.failed(_t(2))
    assert [p.pick() for _ in range(4)] == [_t(1), _t(3), _t(1), _t(3)]
    clock.now += FAIL_TIMEOUT
    assert {p.pick() for _ in range(3)} == {_t(1), _t(2), _t(3)}


def test_picker_skips_a_refusing_target_only_briefly() -> None:
    """A replica just started refuses until it listens; it must not wait out 5 s."""
    clock = Clock()
    p = BackendPicker([_t(1), _t(2), _t(3)], clock=clock)
    p.failed(_t(2), refused=True)
    assert [p.pick() for _ in range(4)] == [_t(1), _t(3), _t(1), _t(3)]
    clock.now += REFUSED_TIMEOUT
    assert {p.pick() for _ in range(3)} == {_t(1), _t(2), _t(3)}
    assert REFUSED_TIMEOUT < FAIL_TIMEOUT


def test_picker_with_every_target_failed_still_round_robins() -> None:
    clock = Clock()
    p = BackendPicker([_t(1), _t(2)], clock=clock)
    p.failed(_t(1))
    p.failed(_t(2))
    assert [p.pick() for _ in range(4)] == [_t(1), _t(2), _t(1), _t(2)]


def test_picker_forgets_failures_of_removed_and_unknown_targets() -> None:
    clock = Clock()
    p = BackendPicker([_t(1), _t(2)], clock=clock)
    p.failed(_t(9))  # not a target: ignored
    p.failed(_t(2))
    p.replace([_t(1), _t(3)])
    p.replace([_t(1), _t(2), _t(3)])  # t2 is back as a new routing decision
    assert {p.pick() for _ in range(3)} == {_t(1), _t(2), _t(3)}


def test_published_and_vip_listeners() -> None:
    svc = route(
        "web",
        backends=(backend("a", "10.0.0.2"), backend("b", "10.0.0.3")),
        target=8080,
        published=80,
        http=True,
        endpoints={"st_default": "10.0.0.200"},
        listen_ports=(8080,),
    )
    plans, conflicts = plan_listeners(snapshot(svc), "0.0.0.0")
    assert conflicts == []
    pub = plans[("0.0.0.0", 80)]
    assert pub.listener.mode == "http" and pub.listener.service == "st_web"
    assert [(t.host, t.port) for t in pub.targets] == [("10.0.0.2", 8080), ("10.0.0.3", 8080)]
    vip = plans[("10.0.0.200", 8080)]
    assert vip.listener.mode == "tcp" and vip.listener.kind == "vip"


def test_vip_prefers_address_on_its_own_network() -> None:
    b = Backend(
        task_id="a", node_id="n1", addresses={"st_back": "10.1.0.2", "st_front": "10.2.0.2"}
    )
    svc = route(
        "api",
        backends=(b,),
        networks=("st_back", "st_front"),
        endpoints={"st_back": "10.1.0.200", "st_front": "10.2.0.200"},
        listen_ports=(9000,),
    )
    plans, _ = plan_listeners(snapshot(svc), "0.0.0.0")
    assert plans[("10.1.0.200", 9000)].targets[0].host == "10.1.0.2"
    assert plans[("10.2.0.200", 9000)].targets[0].host == "10.2.0.2"


def test_host_mode_udp_and_unpublished_ports_are_not_mesh_listeners() -> None:
    svc = msgspec.structs.replace(
        route("dns"),
        ports=(
            PortSpec(target=53, published=53, protocol="udp"),
            PortSpec(target=80, published=8080, mode="host"),
            PortSpec(target=81),
        ),
    )
    plans, _ = plan_listeners(snapshot(svc), "0.0.0.0")
    assert plans == {}


def test_conflicting_published_port_first_service_keeps_it() -> None:
    a = route("a", published=80, backends=(backend("a1", "10.0.0.2"),))
    b = route("b", published=80, backends=(backend("b1", "10.0.0.3"),))
    plans, conflicts = plan_listeners(snapshot(b, a), "0.0.0.0")
    assert plans[("0.0.0.0", 80)].listener.service == "st_a"
    assert [(c.service, c.holder) for c in conflicts] == [("st_b", "st_a")]


def test_table_apply_diffs_and_keeps_pickers() -> None:
    one = route("web", published=80, backends=(backend("a", "10.0.0.2"), backend("b", "10.0.0.3")))
    table = RoutingTable.from_snapshot(snapshot(one, revision=1))
    picker = table.picker(("0.0.0.0", 80))
    assert picker is not None and len(picker) == 2
    picker.pick()

    two = route("web", published=80, backends=(backend("a", "10.0.0.2"),))
    other = route("db", published=5432, backends=(backend("d", "10.0.0.9"),))
    change = table.apply(snapshot(two, other, revision=2))
    assert table.picker(("0.0.0.0", 80)) is picker  # same object: in-flight users see the swap
    assert [t.task_id for t in picker.targets] == ["a"]
    assert change.updated == 1
    assert [r.listener.port for r in change.added] == [5432]

    change = table.apply(snapshot(other, revision=3))
    assert [r.listener.port for r in change.removed] == [80]
    assert table.picker(("0.0.0.0", 80)) is None
    # A kept-alive client of the closed listener holds the old picker: it picks nothing.
    assert picker.pick() is None and len(picker) == 0
    assert table.revision == 3


def test_backend_without_addresses_is_skipped() -> None:
    svc = route("web", published=80, backends=(Backend(task_id="x", node_id="n1", addresses={}),))
    plans, _ = plan_listeners(snapshot(svc), "0.0.0.0")
    assert plans[("0.0.0.0", 80)].targets == ()
