"""How the API finds the service a command names: full name or id, short name, id prefix."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from swarmlite.api.context import find_service
from swarmlite.errors import NotFoundError, SpecError
from swarmlite.spec.objects import Service
from swarmlite.spec.service import ServiceSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Versioned


def state(*services: tuple[str, str, str]) -> ClusterState:
    """Services as (id, stack, short name)."""
    made = [
        Service(id=sid, spec=ServiceSpec(name=short, stack=stack, image="img"))
        for sid, stack, short in services
    ]
    return ClusterState(
        revision=1, services=MappingProxyType({s.id: Versioned(s, 1) for s in made})
    )


SHOP = state(("dbq41", "shop", "cache"), ("k2x9a", "shop", "db"), ("k2y00", "blog", "web"))


def found(view: ClusterState, name: str) -> str:
    return find_service(view, name).value.id


def test_full_name_and_id_first() -> None:
    assert found(SHOP, "shop_db") == "k2x9a"
    assert found(SHOP, "dbq41") == "dbq41"


def test_a_short_name_wins_over_an_id_prefix_of_another_service() -> None:
    # "db" is also the start of shop_cache's id: the name is what the user meant.
    assert found(SHOP, "db") == "k2x9a"


def test_a_unique_id_prefix() -> None:
    assert found(SHOP, "k2x") == "k2x9a"
    assert found(SHOP, "dbq") == "dbq41"


def test_ambiguous_names_and_prefixes_are_refused_with_the_candidates() -> None:
    with pytest.raises(SpecError, match="service k2 is ambiguous: it could be blog_web, shop_db"):
        find_service(SHOP, "k2")
    two_webs = state(("a1", "shop", "web"), ("b2", "blog", "web"))
    with pytest.raises(SpecError, match="it could be blog_web, shop_web; give the full name"):
        find_service(two_webs, "web")


def test_unknown_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="service nope not found"):
        find_service(SHOP, "nope")
