"""The periodic-work utility: one task while there is work, none when idle, failures logged."""

from __future__ import annotations

import threading
import time

import pytest

from dihya_realtime.kernel.sweeper import Sweeper


def threaded_sweeper(tick, interval=0.01, **kwargs) -> Sweeper:
    def spawn(fn):
        threading.Thread(target=fn, daemon=True).start()

    return Sweeper("test", interval, tick, spawn=spawn, sleep=time.sleep, **kwargs)


def wait_for(predicate, timeout=2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_the_task_ends_when_tick_says_nothing_is_left():
    work = [3]

    def tick():
        work[0] -= 1
        return work[0] > 0

    sweeper = threaded_sweeper(tick)
    assert sweeper.wake() is True
    wait_for(lambda: not sweeper.running)
    assert sweeper.passes == 3


def test_waking_a_running_sweeper_starts_no_second_task():
    started = []

    def spawn(fn):
        started.append(fn)
        threading.Thread(target=fn, daemon=True).start()

    stop = threading.Event()
    sweeper = Sweeper("one", 0.01, lambda: not stop.is_set(), spawn=spawn, sleep=time.sleep)
    assert sweeper.wake() is True
    assert sweeper.wake() is False
    assert sweeper.wake() is False
    stop.set()
    wait_for(lambda: not sweeper.running)
    assert len(started) == 1


def test_work_arriving_during_the_last_pass_gets_another_pass():
    passes = []
    sweeper: Sweeper

    def tick():
        passes.append(1)
        if len(passes) == 1:
            sweeper.wake()  # new work while the task is deciding to end
        return False

    sweeper = threaded_sweeper(tick)
    sweeper.wake()
    wait_for(lambda: not sweeper.running)
    assert len(passes) == 2


def test_a_failing_pass_is_logged_and_the_sweeper_keeps_going(caplog):
    calls = []

    def tick():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return False

    sweeper = threaded_sweeper(tick)
    sweeper.wake()
    wait_for(lambda: not sweeper.running)
    assert len(calls) == 2
    assert "a pass failed" in caplog.text


def test_a_persistent_sweeper_runs_until_stopped_and_stays_stopped():
    sweeper = threaded_sweeper(lambda: False, persistent=True)
    sweeper.wake()
    wait_for(lambda: sweeper.passes >= 3)
    assert sweeper.running
    sweeper.stop()
    wait_for(lambda: not sweeper.running)
    assert sweeper.wake() is False


def test_an_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        Sweeper("bad", 0, lambda: False, spawn=lambda fn: None, sleep=time.sleep)
