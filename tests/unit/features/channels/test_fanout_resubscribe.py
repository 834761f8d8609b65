"""The Redis broker's listener catches up (its resubscribe hook) whenever its fan-out comes
back, including when redis-py re-subscribes by itself after a connection error, and
reports ready (``ping``) only then."""

from __future__ import annotations

import threading
import time

import pytest
import redis as redis_py

from dihya_realtime.broker import BrokerUnavailable
from dihya_realtime.broker.redis import RedisBroker


def _kill_fanout(redis_url: str, prefix: str) -> None:
    admin = redis_py.Redis.from_url(redis_url)
    try:
        name = f"dihya-broker:{prefix}"
        subscribers = [c for c in admin.client_list() if c["name"] == name and int(c["ssub"]) > 0]
        assert subscribers
        for client in subscribers:
            admin.client_kill_filter(_id=client["id"])
    finally:
        admin.close()


def test_a_killed_fanout_connection_runs_the_catch_up_before_ready(
        redis_url: str, redis_prefix: str) -> None:
    broker = RedisBroker(redis_url, redis_prefix)
    caught_up = threading.Event()
    ready_during_catch_up: list[bool] = []

    def catch_up() -> None:
        try:
            broker.ping()
            ready_during_catch_up.append(True)
        except BrokerUnavailable:
            ready_during_catch_up.append(False)
        caught_up.set()

    broker.add_resubscribe_hook(catch_up)
    broker.start()
    broker.watch("chat:a")
    try:
        broker.ping()
        _kill_fanout(redis_url, redis_prefix)
        assert caught_up.wait(10), "the fan-out came back without a catch-up"
        assert ready_during_catch_up == [False]
        deadline = time.monotonic() + 5
        while True:
            try:
                broker.ping()
                break
            except BrokerUnavailable:
                if time.monotonic() > deadline:
                    pytest.fail("never ready again")
                time.sleep(0.05)
    finally:
        broker.close()


def test_a_failing_catch_up_is_retried_and_ready_waits_for_it(
        redis_url: str, redis_prefix: str) -> None:
    broker = RedisBroker(redis_url, redis_prefix)
    calls: list[bool] = []  # was the broker ready when the catch-up ran?

    def catch_up() -> None:
        try:
            broker.ping()
            calls.append(True)
        except BrokerUnavailable:
            calls.append(False)
        if len(calls) == 1:
            raise BrokerUnavailable("history unreachable")

    broker.add_resubscribe_hook(catch_up)
    broker.start()
    broker.watch("chat:a")
    try:
        _kill_fanout(redis_url, redis_prefix)
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls[:2] == [False, False]  # not ready after the failed catch-up either
        deadline = time.monotonic() + 5
        while True:
            try:
                broker.ping()
                break
            except BrokerUnavailable:
                assert time.monotonic() < deadline, "never ready again"
                time.sleep(0.05)
    finally:
        broker.close()


def test_every_resubscribe_hook_runs_in_the_order_added_and_again_after_one_fails(
        redis_url: str, redis_prefix: str) -> None:
    """The channels' catch-up and the session's resync are two hooks on one broker: both run
    on every re-subscription, in order; when the first fails, both run again next time."""
    broker = RedisBroker(redis_url, redis_prefix)
    ran: list[str] = []
    done = threading.Event()

    def first() -> None:
        ran.append("catch_up")
        if ran.count("catch_up") == 1:
            raise BrokerUnavailable("history unreachable")

    def second() -> None:
        ran.append("resync")
        done.set()

    broker.add_resubscribe_hook(first)
    broker.add_resubscribe_hook(second)
    broker.start()
    broker.watch("chat:a")
    try:
        _kill_fanout(redis_url, redis_prefix)
        assert done.wait(10), ran
        assert ran == ["catch_up", "catch_up", "resync"]
    finally:
        broker.close()
