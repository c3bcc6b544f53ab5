"""The Redis request budget against a real redis-server: permits are judged by every entry stored.

A caller's timestamp is taken before its check runs in Redis, so entries can arrive out of order.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from pyrate_limiter import RateItem, RedisBucket
from pyrate_limiter.buckets.redis_bucket import LuaScript

from airflow_provider_neptune.hooks.limiter import BudgetTimeout, RequestBudget, rates_for, redis_put_script

pytestmark = pytest.mark.integration


def _bucket(redis_url: str, script: str) -> RedisBucket:
    client = redis.Redis.from_url(redis_url)
    return RedisBucket(rates_for(20), client, f"budget-order-{uuid.uuid4().hex}", client.script_load(script))


GROUP = rates_for(20)[0].limit  # the spacing rate's group


def test_a_late_caller_sees_permits_granted_after_its_timestamp(redis_url: str) -> None:
    ours = _bucket(redis_url, redis_put_script())
    for _ in range(GROUP):  # the spacing rate's whole group at t = 10,000 ms
        assert ours.put(RateItem("k", 10_000))
    # A caller that took its timestamp 5 ms earlier but reaches Redis now must be refused.
    assert not ours.put(RateItem("k", 9_995))
    wait = ours.waiting(RateItem("k", 9_995))
    assert isinstance(wait, int)
    assert wait > 0


def test_the_stock_script_admits_that_late_caller(redis_url: str) -> None:
    """Why the provider changes the script: pyrate-limiter's own admits one permit over the group."""
    stock = _bucket(redis_url, LuaScript.PUT_ITEM)
    for _ in range(GROUP):
        assert stock.put(RateItem("k", 10_000))
    assert stock.put(RateItem("k", 9_995))


def test_budget_on_redis_refuses_when_the_shared_store_is_full(redis_url: str) -> None:
    key = f"budget-{uuid.uuid4().hex}"
    first = RequestBudget(key, 0.01, redis_url)  # one permit per 100 s
    second = RequestBudget(key, 0.01, redis_url)  # another process's handle on the same budget
    try:
        first.acquire(timeout=5)
        with pytest.raises(BudgetTimeout, match="redis"):
            second.acquire(timeout=0)
        assert first.store_errors == second.store_errors == 0  # refused by the store, not failing open
        assert len(redis.Redis.from_url(redis_url).zrange(key, 0, -1)) == 1
    finally:
        first.close()
        second.close()
