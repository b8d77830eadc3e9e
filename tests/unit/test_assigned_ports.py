"""An ingress port published without a number gets one from 30000 up, as in Swarm."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from swarmlite.errors import SpecError
from swarmlite.manager.deploy import plan_deploy
from swarmlite.manager.ports import ASSIGNED_RANGE, assign_ports
from swarmlite.manager.routes import build_routes
from swarmlite.spec.objects import Service
from swarmlite.spec.service import NetworkSpec, PortSpec, ServiceSpec, StackSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Put, Versioned

P80 = PortSpec(target=80)


def web(name: str, stack: str, *ports: PortSpec) -> ServiceSpec:
    return ServiceSpec(name=name, stack=stack, image="img", ports=ports)


def state_of(*services: Service) -> ClusterState:
    return ClusterState(
        revision=2, services=MappingProxyType({s.id: Versioned(s, 2) for s in services})
    )


def deploy(stack: str, *specs: ServiceSpec, state: ClusterState) -> list[Service]:
    spec = StackSpec(name=stack, services=specs, networks=(NetworkSpec(name="default"),))
    plan = plan_deploy(spec, state, prune=False, now=1.0)
    return [op.obj for op in plan.ops if isinstance(op, Put) and isinstance(op.obj, Service)]


def test_ports_without_a_number_get_the_lowest_free_ones_and_keep_them() -> None:
    a, b = deploy(
        "s", web("a", "s", P80, PortSpec(target=81)), web("b", "s", P80), state=state_of()
    )
    assert a.assigned_ports == {"80/tcp": 30000, "81/tcp": 30001}
    assert b.assigned_ports == {"80/tcp": 30002}
    assert [p.published for p in a.published_ports()] == [30000, 30001]
    assert a.spec.ports == (P80, PortSpec(target=81))  # the spec says what the file said
    # The same file again changes nothing; a new service elsewhere skips what is taken.
    assert (
        deploy(
            "s", web("a", "s", P80, PortSpec(target=81)), web("b", "s", P80), state=state_of(a, b)
        )
        == []
    )
    (c,) = deploy("t", web("c", "t", P80), state=state_of(a, b))
    assert c.assigned_ports == {"80/tcp": 30003}


def test_a_number_named_in_the_file_is_never_chosen() -> None:
    (front, _) = deploy(
        "s",
        web("front", "s", P80),
        web("api", "s", PortSpec(target=80, published=30000)),
        state=state_of(),
    )
    assert front.assigned_ports == {"80/tcp": 30001}


def test_another_service_may_not_publish_a_chosen_number() -> None:
    (a,) = deploy("s", web("a", "s", P80), state=state_of())
    with pytest.raises(SpecError, match="port 30000/tcp is already published by service s_a"):
        deploy("t", web("x", "t", PortSpec(target=80, published=30000)), state=state_of(a))


def test_host_mode_and_udp_ports_are_not_given_a_number() -> None:
    spec = web("a", "s", PortSpec(target=80, mode="host"), PortSpec(target=53, protocol="udp"), P80)
    assert assign_ports(spec, None, set()) == {"80/tcp": 30000}


def test_the_routes_publish_the_chosen_number() -> None:
    (a,) = deploy("s", web("a", "s", P80), state=state_of())
    (route,) = build_routes(state_of(a)).services
    assert [(p.published, p.target) for p in route.ports] == [(30000, 80)]


def test_a_rollback_gets_the_previous_specs_number_back() -> None:
    (v1,) = deploy("s", web("a", "s", P80), state=state_of())
    (v2,) = deploy("s", web("a", "s", PortSpec(target=8080)), state=state_of(v1))
    assert v2.assigned_ports == {"80/tcp": 30000, "8080/tcp": 30001}
    assert v2.previous_spec is not None
    rolled = Service(id=v2.id, spec=v2.previous_spec, assigned_ports=v2.assigned_ports)
    assert [p.published for p in rolled.published_ports()] == [30000]


def test_a_full_range_is_refused_with_a_hint() -> None:
    with pytest.raises(SpecError, match=r"no free port left in 30000-32767.*give it a published"):
        assign_ports(web("a", "s", P80), None, set(ASSIGNED_RANGE))
