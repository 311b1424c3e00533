"""The Redis deployments of ``tests/redis_servers.py`` start, serve what redis-py asks of them and stop clean."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, RedisClusterException, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

import redis_servers
from redis_servers import RedisCluster, RedisSentinel, RedisStartError, TlsRedis, port_is_free

pytestmark = pytest.mark.skipif(redis_servers.redis_server_binary() is None, reason="redis-server is not installed")


def _prefix() -> str:
    return f"harness-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------------------
# Cluster


async def test_cluster_spreads_keys_over_every_master(redis_cluster: RedisCluster) -> None:
    prefix = _prefix()
    keys = [f"{prefix}:{i}" for i in range(100)]
    rc = AsyncRedisCluster.from_url(redis_cluster.url, decode_responses=True)
    try:
        for i, k in enumerate(keys):
            assert await rc.set(k, str(i))
        assert [await rc.get(k) for k in keys] == [str(i) for i in range(len(keys))]
        assert len({key_slot(k.encode()) for k in keys}) > 90
        owners = {rc.get_node_from_key(k).port for k in keys}
        assert owners == {port for _, port in redis_cluster.nodes}  # every master holds some of them
        # The keys really live on the node the slot map names: ask that node alone.
        k = keys[0]
        async with aioredis.Redis(host="127.0.0.1", port=rc.get_node_from_key(k).port, decode_responses=True) as r:
            assert await r.get(k) == "0"
        for k in keys:
            await rc.delete(k)
    finally:
        await rc.aclose()


async def test_cluster_runs_a_script_on_keys_of_one_hash_tag(redis_cluster: RedisCluster) -> None:
    prefix = _prefix()
    a, b = f"{{x}}:{prefix}:a", f"{{x}}:{prefix}:b"
    assert key_slot(a.encode()) == key_slot(b.encode())
    rc = AsyncRedisCluster.from_url(redis_cluster.url, decode_responses=True)
    try:
        script = rc.register_script("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('INCRBY', KEYS[2], ARGV[2])")
        assert await script(keys=[a, b], args=["hello", 5]) == 5
        assert await script(keys=[a, b], args=["again", 2]) == 7  # the second call runs by EVALSHA
        assert await rc.get(a) == "again"
        await rc.delete(a)
        await rc.delete(b)
    finally:
        await rc.aclose()


async def test_cluster_refuses_a_command_across_slots(redis_cluster: RedisCluster) -> None:
    prefix = _prefix()
    a, b = f"{prefix}:a", f"{prefix}:b"
    assert key_slot(a.encode()) != key_slot(b.encode())
    rc = AsyncRedisCluster.from_url(redis_cluster.url, decode_responses=True)
    try:
        # redis-py 8 sends it to the first key's node, which refuses it (older versions refused before sending).
        with pytest.raises((ClusterCrossSlotError, RedisClusterException)):
            await rc.execute_command("MSET", a, "1", b, "2")
        # Sent straight to a node, the server refuses it (a CROSSSLOT error reply is a ClusterCrossSlotError).
        with pytest.raises(ClusterCrossSlotError):
            await rc.execute_command("MSET", a, "1", b, "2", target_nodes=rc.get_node_from_key(a))
        async with aioredis.Redis(host="127.0.0.1", port=redis_cluster.nodes[0][1]) as node:
            with pytest.raises(ResponseError, match="hash to the same slot") as refused:
                await node.execute_command("MGET", a, b)
            assert isinstance(refused.value, ClusterCrossSlotError)
        assert await rc.exists(a) == 0
        assert await rc.exists(b) == 0
    finally:
        await rc.aclose()


@pytest.mark.slow
async def test_cluster_made_with_commands_and_replicas() -> None:
    """Without redis-cli (CLUSTER MEET/ADDSLOTS/REPLICATE), with a replica per master."""
    with RedisCluster(masters=3, replicas=1, use_redis_cli=False) as cluster:
        assert cluster.created_with == "cluster commands"
        roles = cluster.roles()
        assert len(roles["master"]) == 3
        assert len(roles["replica"]) == 3
        rc = AsyncRedisCluster.from_url(cluster.url, decode_responses=True)
        try:
            assert await rc.set("k", "v")
            assert await rc.get("k") == "v"
            assert {n.port for n in rc.get_primaries()} == {port for _, port in roles["master"]}
            assert {n.port for n in rc.get_replicas()} == {port for _, port in roles["replica"]}
        finally:
            await rc.aclose()


@pytest.mark.slow
async def test_cluster_over_tls() -> None:
    pytest.importorskip("trustme")
    if not redis_servers.tls_supported():
        pytest.skip("redis-server was built without TLS support")
    with RedisCluster(tls=True) as cluster:
        assert cluster.url.startswith("rediss://")
        rc = AsyncRedisCluster.from_url(cluster.url_with_ca(), decode_responses=True)
        try:
            for i in range(20):
                assert await rc.set(f"k{i}", str(i))
            assert await rc.get("k7") == "7"
        finally:
            await rc.aclose()
        rc = AsyncRedisCluster.from_url(cluster.url, ssl_ca_certs=str(cluster.ca_file))
        try:
            assert await rc.ping()
        finally:
            await rc.aclose()


# ---------------------------------------------------------------------------------------------------------
# TLS


async def test_tls_serves_a_client_that_trusts_its_ca(tls_redis: TlsRedis) -> None:
    assert tls_redis.url.startswith("rediss://127.0.0.1:")
    key = _prefix()
    for client in (aioredis.from_url(tls_redis.url_with_ca(), decode_responses=True),
                   aioredis.from_url(tls_redis.url_with_ca("required"), decode_responses=True),
                   aioredis.from_url(tls_redis.url, ssl_ca_certs=str(tls_redis.ca_file), decode_responses=True)):
        async with client:
            assert await client.ping()
            assert await client.set(key, "secret")
            assert await client.get(key) == "secret"
            assert await client.delete(key) == 1


async def test_tls_refuses_a_client_without_its_ca(tls_redis: TlsRedis) -> None:
    async with aioredis.from_url(tls_redis.url, socket_connect_timeout=5) as client:
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await client.ping()
    # Without TLS at all there is nothing to talk to: the plain port is off.
    async with aioredis.from_url(tls_redis.url.replace("rediss://", "redis://"), socket_timeout=5) as client:
        with pytest.raises(RedisConnectionError):
            await client.ping()


# ---------------------------------------------------------------------------------------------------------
# Sentinel


async def test_sentinel_gives_the_master(redis_sentinel: RedisSentinel) -> None:
    sentinel = Sentinel(redis_sentinel.sentinels, socket_timeout=5)
    try:
        assert await sentinel.discover_master(redis_sentinel.master_name) == ("127.0.0.1", redis_sentinel.master_port)
        master = sentinel.master_for(redis_sentinel.master_name, socket_timeout=5, decode_responses=True)
        key = _prefix()
        async with master:
            assert await master.set(key, "v")
            assert await master.get(key) == "v"
            assert await master.delete(key) == 1
    finally:
        for s in sentinel.sentinels:
            await s.aclose()


@pytest.mark.slow
async def test_sentinels_with_a_replica() -> None:
    with RedisSentinel("other", sentinels=3, replicas=1) as deployment:
        assert len(deployment.sentinels) == 3
        sentinel = Sentinel(deployment.sentinels, socket_timeout=5)
        try:
            assert await sentinel.discover_slaves("other") == [("127.0.0.1", deployment.replica_ports[0])]
            master = sentinel.master_for("other", socket_timeout=5, decode_responses=True)
            async with master:
                assert await master.set("k", "v")
        finally:
            for s in sentinel.sentinels:
                await s.aclose()


# ---------------------------------------------------------------------------------------------------------
# Stopping


KINDS: dict[str, Callable[[], redis_servers._Deployment]] = {
    "cluster": lambda: RedisCluster(),
    "tls": lambda: TlsRedis(),
    "sentinel": lambda: RedisSentinel(sentinels=3, replicas=1),
}


def _assert_gone(pids: list[int], ports: list[int], tmp: Path | None) -> None:
    assert pids
    alive = [p for p in pids if psutil.pid_exists(p)]
    assert not alive, f"still running: {alive}"
    assert ports
    taken = [p for p in ports if not port_is_free(p)]
    assert not taken, f"ports still taken: {taken}"
    assert tmp is not None
    assert not tmp.exists()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_stop_leaves_nothing_running(kind: str) -> None:
    if kind == "tls" and not (redis_servers.tls_supported() and _has_trustme()):
        pytest.skip("no TLS support or no trustme")
    deployment = KINDS[kind]()
    with deployment:
        pids, ports, tmp = deployment.pids, deployment.ports, deployment.tmp
        assert all(psutil.pid_exists(p) for p in pids)
        assert not any(port_is_free(p) for p in ports)
        assert tmp is not None and tmp.is_dir()
        me = psutil.Process()
        assert set(pids) <= {c.pid for c in me.children()}  # our children: the leak checker sees them
    _assert_gone(pids, ports, tmp)
    deployment.stop()  # a second stop does nothing


def test_a_start_failing_half_way_stops_what_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fail(self: RedisCluster) -> None:
        seen.update(pids=self.pids, ports=self.ports, tmp=self.tmp)
        assert all(psutil.pid_exists(p) for p in self.pids)
        raise RedisStartError("made to fail after the nodes started")

    monkeypatch.setattr(RedisCluster, "_create_with_cli", fail)
    monkeypatch.setattr(RedisCluster, "_create_with_commands", fail)
    cluster = RedisCluster()
    with pytest.raises(RedisStartError, match="made to fail"):
        cluster.start()
    _assert_gone(seen["pids"], seen["ports"], seen["tmp"])  # type: ignore[arg-type]
    assert cluster.pids == []


def test_a_server_that_cannot_start_fails_with_its_log() -> None:
    deployment = RedisSentinel(extra_args=["--no-such-directive", "1"])
    with pytest.raises(RedisStartError, match=r"(?s)master exited with status \d+.*no-such-directive"):
        deployment.start()
    assert deployment.pids == []
    assert deployment.tmp is None


def test_a_port_taken_meanwhile_is_retried_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process binding the port between our check and redis-server's bind costs a retry, not a failure."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = redis_servers._free_ports
    calls: list[int] = []

    def first_one_taken(n: int) -> list[int]:
        calls.append(n)
        ports = real(n)
        return [taken.getsockname()[1], *ports[1:]] if len(calls) == 1 else ports

    monkeypatch.setattr(redis_servers, "_free_ports", first_one_taken)
    try:
        with RedisSentinel() as deployment:
            assert len(calls) == 2
            assert deployment.master_port != taken.getsockname()[1]
    finally:
        taken.close()


def _has_trustme() -> bool:
    try:
        import trustme  # noqa: F401
    except ImportError:
        return False
    return True
