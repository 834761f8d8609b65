"""The features over two ``serve`` processes on a local Redis Cluster, each given another
node's URL: chat's one gap-free seq order under concurrent senders on both processes, a
notification pushed live to the other process, a collab update relayed across, one offset
order on a channel under concurrent publishers, a killed process's presence reaped and its
client's missed publications recovered on the other process.

The same scenarios on one Redis are in ``test_features_multiprocess.py`` and
``test_channels_multiprocess.py``; here they prove that sharded pub/sub and keys spread over
three primaries change nothing a client can see.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dihya_realtime.kernel.auth import hash_api_key
from tests.conftest import POSTGRES_ADMIN_URL, free_port
from tests.integration.conftest import TEST_API_KEY, ServerProcess, SioClient, clean_environ
from tests.integration.redis_cluster import RedisCluster, redis_cluster  # noqa: F401
from tests.integration.test_features_multiprocess import (
    RemoteEditor,
    connected,
    counts_after_new,
    ok,
    room_messages,
    send_concurrently,
    settle,
    share,
    wait_until,
)

Pair = tuple[ServerProcess, ServerProcess]
PRESENCE_TTL = 3.0


def node_url(cluster: RedisCluster, node: int) -> str:
    return f"redis://127.0.0.1:{cluster.ports[node]}/0"


@pytest.fixture(scope="module")
def jwt_secret() -> str:
    """One secret for the module: the shared pair outlives any one test's fixtures."""
    return "cluster-secret-" + "x" * 32


@pytest.fixture(scope="module")
def cluster_db() -> Iterator[str]:
    """A PostgreSQL database of this module's own, shared by the pair's two processes."""
    import sqlalchemy as sa

    name = f"dihya_cluster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def cluster_pair(tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, cluster_db: str,
                 redis_cluster: RedisCluster) -> Iterator[Pair]:  # noqa: F811
    """Process ``a`` on the first node, ``b`` on the second, one PostgreSQL; started once.

    Tests sharing it stay apart by their own user ids (the ``u`` fixture), rooms, documents
    and channels.
    """
    root = tmp_path_factory.mktemp("cluster-pair")
    prefix = f"dihya-cluster-{uuid.uuid4().hex[:8]}"
    servers: list[ServerProcess] = []
    for node in (0, 1):
        workdir = root / f"server{node + 1}"
        workdir.mkdir()
        env = clean_environ()
        env.update({"DIHYA_RT_JWT_SECRET": jwt_secret,
                    "DIHYA_RT_API_KEYS": hash_api_key(TEST_API_KEY),
                    "DIHYA_RT_DATABASE_URL": cluster_db,
                    "DIHYA_RT_REDIS_URL": node_url(redis_cluster, node),
                    "DIHYA_RT_REDIS_PREFIX": prefix,
                    "DIHYA_RT_AUDIT_LOG": str(workdir / "audit.log")})
        servers.append(ServerProcess(Path(workdir), env, free_port()))
    migrated = servers[0].cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    try:
        for server in servers:
            server.launch()
        yield servers[0].wait_ready(), servers[1].wait_ready()
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def u() -> Callable[[str], str]:
    """``u("alice")``: a user id of this test's own (the shared pair keeps users' state)."""
    tag = uuid.uuid4().hex[:6]
    return lambda name: f"{name}-{tag}"


def test_chat_concurrent_senders_on_both_processes_reach_a_member_once_with_one_seq_order(
        cluster_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = cluster_pair
    owner = sio_client(a, token(u("owner")))
    reader = sio_client(b, token(u("reader")))  # the member who only listens, on b
    room = ok(owner, "chat:create_room", {"name": "cluster", "visibility": "public"})["id"]
    ok(reader, "chat:join", {"room_id": room})
    senders = [sio_client(a, token(u("sa"))), sio_client(b, token(u("sb")))]
    for sender in senders:
        ok(sender, "chat:join", {"room_id": room})
    per_sender = 20  # chat:send's burst per connection
    total = per_sender * len(senders)
    acks = send_concurrently(senders, room, per_sender)
    assert sorted(m["seq"] for m in acks) == list(range(1, total + 1))
    assert wait_until(lambda: len(room_messages(reader, room)) >= total), \
        len(room_messages(reader, room))
    settle()
    got = room_messages(reader, room)
    # once each, gap-free; two senders' pushes may cross (chat/messages.py: clients order by seq)
    assert len(got) == total
    assert sorted(m["seq"] for m in got) == list(range(1, total + 1))
    assert {m["seq"]: m["id"] for m in got} == {m["seq"]: m["id"] for m in acks}
    history = ok(reader, "chat:history", {"room_id": room, "limit": 100})
    assert [m["seq"] for m in history["messages"]] == list(range(1, total + 1))
    for tag in range(len(senders)):  # each sender's messages in its sending order
        assert [m["text"] for m in got if m["text"].startswith(f"{tag}-")] == \
            [f"{tag}-{i}" for i in range(per_sender)]


def test_notification_created_over_http_on_one_process_reaches_the_user_on_the_other(
        cluster_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = cluster_pair
    tab = connected(sio_client(b, token(u("alice"))))
    other = connected(sio_client(b, token(u("bob"))))
    status, body = a.http("POST", "/api/v1/notifications",
                          {"user_id": u("alice"), "category": "builds",
                           "title": "Build 42 finished", "data": {"build": 42}}, api_key=True)
    assert status == 201, body
    created = body["data"]["notifications"][0]
    new = tab.wait_for("notifications:new")
    assert new["id"] == created["id"] and new["data"] == {"build": 42}
    assert new["user_id"] == u("alice")
    assert counts_after_new(tab, created["id"]) == {"unseen": 1, "unread": 1}
    settle()
    assert len(tab.events("notifications:new")) == 1
    assert other.events("notifications:new") == []


def test_collab_update_from_a_participant_on_one_process_reaches_the_other(
        cluster_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = cluster_pair
    doc_id = f"cluster-{u('doc')}"
    alice = RemoteEditor(sio_client(a, token(u("alice"))), doc_id)
    alice.join()
    share(alice, doc_id)
    bob = RemoteEditor(sio_client(b, token(u("bob"))), doc_id)
    bob.join()
    seq = alice.edit(0, "hello from a")
    relayed = bob.client.wait_for("doc:update", lambda e: e["doc_id"] == doc_id)
    assert relayed["seq"] == seq
    assert bob.receive() == 1
    assert bob.content == "hello from a"
    bob.edit(len(bob.content), ", and b")
    assert wait_until(lambda: alice.receive() >= 1 and alice.content == bob.content)
    assert alice.content == "hello from a, and b"


def test_concurrent_publishers_on_both_processes_give_one_gap_free_offset_order(
        cluster_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = cluster_pair
    channel = f"chat:{u('cluster')}"
    watchers = [sio_client(a, token(u("w1"))), sio_client(b, token(u("w2")))]
    for w in watchers:
        ok(w, "subscribe", {"channel": channel})
    publishers = [sio_client(a, token(u("p1"))), sio_client(b, token(u("p2")))]
    per_publisher = 40
    errors: list[Any] = []
    start = threading.Barrier(len(publishers))

    def run(client: SioClient, tag: int) -> None:
        start.wait()
        for i in range(per_publisher):
            reply = client.call("publish", {"channel": channel, "data": {"p": tag, "i": i}},
                                timeout=10)
            if not reply["ok"]:
                errors.append(reply)

    threads = [threading.Thread(target=run, args=(p, n)) for n, p in enumerate(publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    total = per_publisher * len(publishers)

    def seen(w: SioClient) -> list[tuple[int, str]]:
        return [(p["offset"], p["id"]) for p in w.events("publication")
                if p["channel"] == channel]

    for w in watchers:
        assert wait_until(lambda w=w: len(seen(w)) >= total), len(seen(w))
    settle()
    assert [o for o, _ in seen(watchers[0])] == list(range(1, total + 1))
    assert seen(watchers[0]) == seen(watchers[1])  # the same publications, the same order
    for tag in range(len(publishers)):  # each publisher's in its publishing order
        mine = [p["data"]["i"] for p in watchers[1].events("publication")
                if p["channel"] == channel and p["data"]["p"] == tag]
        assert mine == list(range(per_publisher))


@pytest.fixture
def doomed_pair(start_server, redis_cluster: RedisCluster) -> Pair:  # noqa: F811
    """A pair of its own (``a`` is to be killed), each on its own SQLite (channels need no
    shared database), with a short presence TTL so a dead process's entries go quickly."""
    prefix = f"dihya-cluster-{uuid.uuid4().hex[:8]}"
    a, b = (start_server(start=False, REDIS_PREFIX=prefix, PRESENCE_TTL=str(PRESENCE_TTL),
                         REDIS_URL=node_url(redis_cluster, node)) for node in (0, 1))
    a.launch()
    b.launch()
    return a.wait_ready(), b.wait_ready()


def api_publish(server: ServerProcess, channel: str, data: Any) -> int:
    status, body = server.http("POST", "/api/v1/publish", {"channel": channel, "data": data},
                               api_key=True)
    assert status == 200, body
    return body["data"]["offset"]


def test_presence_of_a_killed_process_is_reaped_for_the_other_within_the_ttl(
        doomed_pair: Pair, sio_client, token) -> None:
    a, b = doomed_pair
    channel = "chat:reaped"
    watcher = sio_client(b, token("watcher"))
    ok(watcher, "subscribe", {"channel": channel})
    doomed = sio_client(a, token("carol"))
    ok(doomed, "subscribe", {"channel": channel})
    watcher.wait_for("presence:join", lambda e: e["user"]["user_id"] == "carol")
    assert "carol" in [m["user_id"] for m in ok(watcher, "presence",
                                                {"channel": channel})["members"]]

    killed_at = time.monotonic()
    a.kill()  # kill -9: no goodbye, no presence cleanup
    leave = watcher.wait_for("presence:leave", lambda e: e["user"]["user_id"] == "carol",
                             timeout=15)
    assert leave["channel"] == channel
    assert time.monotonic() - killed_at <= PRESENCE_TTL * 2 + 2  # ttl, one interval, slack
    members = ok(watcher, "presence", {"channel": channel})["members"]
    assert [m["user_id"] for m in members] == ["watcher"]


def test_a_killed_process_client_recovers_every_missed_publication_on_the_other(
        doomed_pair: Pair, sio_client, token) -> None:
    a, b = doomed_pair
    channel = "chat:recovered"
    victim = sio_client(a, token("alice"))
    first = ok(victim, "subscribe", {"channel": channel})
    assert [api_publish(b, channel, {"i": i}) for i in range(5)] == [1, 2, 3, 4, 5]
    assert wait_until(lambda: len(victim.events("publication")) == 5)
    last = victim.events("publication")[-1]["offset"]
    assert last == 5
    a.kill()  # kill -9
    for i in range(5, 12):
        api_publish(b, channel, {"i": i})
    again = sio_client(b, token("alice"))
    reply = ok(again, "subscribe", {"channel": channel,
                                    "since": {"offset": last, "epoch": first["epoch"]}})
    assert reply["recovered"] is True
    assert [p["offset"] for p in reply["publications"]] == list(range(last + 1, 13))
    assert [p["data"]["i"] for p in reply["publications"]] == list(range(5, 12))
    api_publish(b, channel, {"i": 12})
    assert again.wait_for("publication")["offset"] == 13  # live goes on, nothing repeated
    settle()
    assert [p["offset"] for p in again.events("publication")] == [13]
