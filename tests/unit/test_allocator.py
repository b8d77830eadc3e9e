"""Stack subnets are handed out in turn through the pool, never reusing a freed one first."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from swarmlite.errors import SpecError
from swarmlite.manager.allocator import allocate_subnet
from swarmlite.manager.deploy import plan_deploy
from swarmlite.spec.objects import Cluster, Network, Service
from swarmlite.spec.service import NetworkSpec, ServiceSpec, StackSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Delete, Put, Versioned

POOL = "10.9.0.0/22"  # four /24s


def net(subnet: str) -> Network:
    return Network(id=subnet, name=subnet, stack="s", subnet=subnet, gateway="")


def test_the_search_starts_after_the_last_subnet_and_wraps() -> None:
    assert allocate_subnet(POOL, []) == ("10.9.0.0/24", "10.9.0.1")
    assert allocate_subnet(POOL, [], after="10.9.0.0/24")[0] == "10.9.1.0/24"
    assert allocate_subnet(POOL, [], after="10.9.3.0/24")[0] == "10.9.0.0/24"
    taken = [net("10.9.0.0/24"), net("10.9.1.0/24")]
    assert allocate_subnet(POOL, taken, after="10.9.3.0/24")[0] == "10.9.2.0/24"


def test_a_last_subnet_outside_the_pool_starts_from_the_beginning() -> None:
    assert allocate_subnet(POOL, [], after="10.200.0.0/24")[0] == "10.9.0.0/24"


def test_a_full_pool_is_a_clear_error() -> None:
    taken = [net(f"10.9.{i}.0/24") for i in range(4)]
    with pytest.raises(SpecError, match="exhausted"):
        allocate_subnet(POOL, taken, after="10.9.1.0/24")


def _stack(name: str) -> StackSpec:
    return StackSpec(
        name=name,
        services=(ServiceSpec(name="web", stack=name, image="busybox"),),
        networks=(NetworkSpec(name="default"),),
    )


def _state(cluster: Cluster, networks: list[Network]) -> ClusterState:
    return ClusterState(
        revision=3,
        clusters=MappingProxyType({cluster.id: Versioned(cluster, 3)}),
        networks=MappingProxyType({n.id: Versioned(n, 3) for n in networks}),
    )


CLUSTER = Cluster(
    id="c1",
    created_at=0.0,
    ca_cert_pem="",
    worker_token_digest="",
    manager_token_digest="",
    address_pool=POOL,
)


def test_a_removed_stacks_subnet_is_not_the_next_one_given_out() -> None:
    cluster = CLUSTER
    first = plan_deploy(_stack("a"), _state(cluster, []), prune=False, now=1.0)
    (made,) = [op.obj for op in first.ops if isinstance(op.obj, Network)]
    (moved,) = [op for op in first.ops if isinstance(op, Put) and isinstance(op.obj, Cluster)]
    assert made.subnet == "10.9.0.0/24"
    assert isinstance(moved.obj, Cluster) and moved.obj.last_subnet == "10.9.0.0/24"
    assert moved.expect == 3  # compare-and-swapped: a concurrent deploy retries

    # Stack "a" was removed (its network is gone from the store); the next stack does
    # not get its subnet, which Docker may still hold with a phantom endpoint.
    second = plan_deploy(_stack("b"), _state(moved.obj, []), prune=False, now=2.0)
    (made_b,) = [op.obj for op in second.ops if isinstance(op.obj, Network)]
    assert made_b.subnet == "10.9.1.0/24"
    assert not any(isinstance(op, Delete) for op in second.ops)


def test_services_that_join_a_new_network_in_one_deploy_get_distinct_vips() -> None:
    cluster = CLUSTER

    def spec(nets: tuple[str, ...]) -> StackSpec:
        return StackSpec(
            name="s",
            services=tuple(
                ServiceSpec(name=n, stack="s", image="busybox", networks=nets)
                for n in ("api", "web")
            ),
            networks=tuple(NetworkSpec(name=n) for n in nets),
        )

    first = plan_deploy(spec(("front",)), _state(cluster, []), prune=False, now=1.0)
    puts = [op.obj for op in first.ops if isinstance(op, Put)]
    state = ClusterState(
        revision=4,
        clusters=MappingProxyType({cluster.id: Versioned(cluster, 4)}),
        networks=MappingProxyType({o.id: Versioned(o, 4) for o in puts if isinstance(o, Network)}),
        services=MappingProxyType({o.id: Versioned(o, 4) for o in puts if isinstance(o, Service)}),
    )
    # Both (existing, so updated) services join the new network "back" in one deploy.
    second = plan_deploy(spec(("front", "back")), state, prune=False, now=2.0)
    services = [op.obj for op in second.ops if isinstance(op.obj, Service)]
    assert len(services) == 2
    back = [s.endpoints["s_back"] for s in services]
    assert len(set(back)) == 2, back
    front = [s.endpoints["s_front"] for s in services]
    assert len(set(front)) == 2, front
