"""Channel occupancy: one transition per change across processes, and a dead node's
subscriptions reaped once (on a real Redis and on the one-process dict)."""

from __future__ import annotations

import pytest
import redis

from dihya_realtime.features.webhooks.occupancy import LocalOccupancy, RedisOccupancy


@pytest.fixture(params=["local", "redis"])
def occupancy(request, redis_url: str, redis_prefix: str):
    if request.param == "local":
        return LocalOccupancy()
    return RedisOccupancy(redis.Redis.from_url(redis_url), redis_prefix)


def test_first_add_occupies_and_last_remove_vacates(occupancy) -> None:
    assert occupancy.add("ch", "n1|s1") is True
    assert occupancy.add("ch", "n2|s2") is False
    assert occupancy.remove("ch", "n1|s1") is False
    assert occupancy.remove("ch", "n1|s1") is False  # twice: no second transition
    assert occupancy.remove("ch", "n2|s2") is True


def test_reaping_a_dead_node_vacates_only_the_channels_it_alone_held(occupancy) -> None:
    occupancy.add("alone", "dead|s1")
    occupancy.add("alone", "dead|s2")
    occupancy.add("shared", "dead|s3")
    occupancy.add("shared", "live|s4")
    occupancy.add("other", "live|s5")
    assert occupancy.reap("dead") == ["alone"]
    assert occupancy.reap("dead") == []  # once
    assert occupancy.remove("shared", "live|s4") is True  # the dead one's member is gone
    assert occupancy.add("alone", "live|s6") is True  # empty again: a new occupied


def test_reaping_matches_the_node_id_exactly_not_as_a_prefix_of_another(occupancy) -> None:
    occupancy.add("ch", "node|s1")
    occupancy.add("ch", "node2|s2")
    assert occupancy.reap("node") == []
    assert occupancy.remove("ch", "node2|s2") is True
