"""A local Redis Cluster for the tests: three primaries and three replicas on random ports.

Built from the machine's ``redis-server`` and ``redis-cli --cluster create``, torn down after
(processes killed, their directory removed): ``redis_cluster`` once per session, shared;
``failover_cluster`` one per test, with a short ``cluster-node-timeout``, for a test that
kills a primary (which would disturb every other test on a shared one). Skipped, with the
reason, only when ``redis-server`` or ``redis-cli`` is not installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port

NODES = 6


@dataclass
class RedisCluster:
    ports: list[int]
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Any node will do: the broker finds the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def state_ok(self) -> bool:
        try:
            for port in self.ports:
                if not self.alive(port):
                    continue
                with self.node(port) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return False
            return True
        except redis.RedisError:
            return False

    def replicas_synced(self) -> bool:
        """Every replica has finished its first sync (until then it may not take over)."""
        try:
            links = []
            for port in self.ports:
                with self.node(port) as client:
                    info = client.info("replication")
                if info.get("role") == "slave":
                    links.append(info.get("master_link_status") == "up")
            return len(links) == NODES // 2 and all(links)
        except redis.RedisError:
            return False

    def nodes(self) -> list[dict[str, str]]:
        """``CLUSTER NODES`` as seen by a live node: port, id, role, primary id, flags."""
        for port in self.ports:
            if not self.alive(port):
                continue
            try:
                with self.node(port) as client:
                    text = client.execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            text = text.decode() if isinstance(text, bytes) else str(text)
            rows = []
            for line in text.splitlines():
                fields = line.split()
                rows.append({"id": fields[0], "port": fields[1].split("@")[0].split(":")[-1],
                             "flags": fields[2], "primary": fields[3]})
            return rows
        raise RuntimeError("no live cluster node")

    def primary_of(self, key: str) -> int:
        """The port of the primary serving ``key``'s slot."""
        with self.node(next(p for p in self.ports if self.alive(p))) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(primary[1])
        raise RuntimeError(f"slot of {key!r} not served")

    def replica_of(self, port: int, timeout: float = 10.0) -> int:
        """The port of a replica of the primary at ``port``. A fresh cluster's nodes learn
        who replicates whom by gossip: the node asked may not list the replica yet (seen in
        CI: no row had this primary), so it is asked again until it does."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.nodes()
            primary = next(r["id"] for r in rows if r["port"] == str(port))
            replicas = [int(r["port"]) for r in rows if r["primary"] == primary]
            if replicas:
                return replicas[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica of {port} in CLUSTER NODES: {rows}")
            time.sleep(0.1)

    def alive(self, port: int) -> bool:
        return self.procs[self.ports.index(port)].poll() is None

    def kill(self, port: int) -> None:
        """SIGKILL one node: no goodbye to its clients nor to the cluster."""
        proc = self.procs[self.ports.index(port)]
        proc.kill()
        proc.wait(5)

    def is_primary(self, port: int) -> bool:
        return any(r["port"] == str(port) and "master" in r["flags"] for r in self.nodes())


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"local Redis Cluster: {what} not in {timeout} s")
        time.sleep(0.1)


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, so at most 55535."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _pings(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@contextmanager
def local_cluster(node_timeout_ms: int) -> Iterator[RedisCluster]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server / redis-cli not installed: no local Redis Cluster")
    workdir = Path(tempfile.mkdtemp(prefix="dihya-redis-cluster-"))
    cluster = RedisCluster(ports=[_cluster_port() for _ in range(NODES)])
    try:
        for port in cluster.ports:
            cluster.procs.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(workdir / f"nodes-{port}.conf"),
                 "--cluster-node-timeout", str(node_timeout_ms), "--save", "",
                 "--appendonly", "no", "--repl-diskless-sync-delay", "0",
                 "--enable-debug-command", "local",
                 "--daemonize", "no", "--dir", str(workdir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in cluster.ports:
            _wait(lambda port=port: _pings(port), 10, f"node {port} up")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        _wait(cluster.state_ok, 30, "cluster_state:ok")
        _wait(cluster.replicas_synced, 30, "replicas in sync")
        yield cluster
    finally:
        for proc in cluster.procs:
            proc.kill()
        for proc in cluster.procs:
            proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    with local_cluster(node_timeout_ms=2000) as cluster:
        yield cluster


@pytest.fixture
def failover_cluster() -> Iterator[RedisCluster]:
    """A cluster of the test's own: a primary is marked failed after 1 s of silence, so its
    replica takes over within a few seconds."""
    with local_cluster(node_timeout_ms=1000) as cluster:
        yield cluster
