"""A deploy is refused when it would publish a port another service already holds."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from swarmlite.errors import SpecError
from swarmlite.manager.deploy import plan_deploy
from swarmlite.spec.objects import Service
from swarmlite.spec.service import NetworkSpec, Placement, PortSpec, ServiceSpec, StackSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Versioned


def web(name: str, stack: str, *ports: PortSpec) -> ServiceSpec:
    return ServiceSpec(name=name, stack=stack, image="img", ports=ports)


def deploy(stack: str, *services: ServiceSpec, state: ClusterState, prune: bool = False) -> None:
    spec = StackSpec(name=stack, services=services, networks=(NetworkSpec(name="default"),))
    plan_deploy(spec, state, prune=prune, now=1.0)


def running(*specs: ServiceSpec) -> ClusterState:
    made = [Service(id=f"id-{s.full_name}", spec=s) for s in specs]
    return ClusterState(
        revision=2, services=MappingProxyType({s.id: Versioned(s, 2) for s in made})
    )


P8080 = PortSpec(target=80, published=8080)
BLOG = running(web("web", "blog", P8080))


def test_another_stacks_port_is_refused_naming_its_holder() -> None:
    with pytest.raises(SpecError, match="port 8080/tcp is already published by service blog_web"):
        deploy("shop", web("front", "shop", P8080), state=BLOG)


def test_the_holder_itself_may_redeploy_and_other_ports_or_protocols_are_free() -> None:
    deploy("blog", web("web", "blog", P8080), state=BLOG)
    deploy("shop", web("front", "shop", PortSpec(target=80, published=8081)), state=BLOG)
    deploy(
        "shop", web("dns", "shop", PortSpec(target=53, published=8080, protocol="udp")), state=BLOG
    )


def test_a_service_left_out_of_the_file_keeps_its_port_unless_pruned() -> None:
    with pytest.raises(SpecError, match="already published by service blog_web"):
        deploy("blog", web("api", "blog", P8080), state=BLOG)
    deploy("blog", web("api", "blog", P8080), state=BLOG, prune=True)


def test_two_services_of_one_file_or_one_service_twice() -> None:
    with pytest.raises(SpecError, match="service b: port 8080/tcp is already published by s"):
        deploy("s", web("a", "s", P8080), web("b", "s", P8080), state=running())
    twice = web("a", "s", P8080, PortSpec(target=81, published=8080))
    with pytest.raises(SpecError, match="service a: port 8080/tcp is published twice"):
        deploy("s", twice, state=running())


def test_a_bad_constraint_sent_past_the_loader_is_refused_by_the_manager() -> None:
    bad = ServiceSpec(
        name="web", stack="s", image="img", placement=Placement(constraints=("node.rol==x",))
    )
    with pytest.raises(
        SpecError, match=r"service web: invalid placement constraint 'node\.rol==x'"
    ):
        deploy("s", bad, state=running())


def test_host_mode_ports_meet_the_mesh_not_each_other() -> None:
    host = PortSpec(target=80, published=8080, mode="host")
    # The mesh listens on an ingress port on every node: no container may bind it.
    with pytest.raises(SpecError, match="port 8080/tcp is already published by service blog_web"):
        deploy("shop", web("front", "shop", host), state=BLOG)
    on_host = running(web("web", "blog", host))
    with pytest.raises(SpecError, match="already published by service blog_web"):
        deploy("shop", web("front", "shop", P8080), state=on_host)
    # Two host-mode services on one number: the scheduler keeps them on different nodes.
    deploy("shop", web("front", "shop", host), state=on_host)
