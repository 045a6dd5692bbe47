"""redis-py (from PyPI) with its default settings against `greenfd serve --resp`.

Run by crates/greenfd/tests/cli_serve.rs, which starts the server and passes its port in
GREENFD_RESP_PORT. Every test uses a fresh key prefix; warnings fail the run (-W error),
and redis-py's own logged warnings (its HELLO fallback) fail the connect test.
"""

import concurrent.futures
import logging
import os
import time
import uuid

import pytest
import redis

PORT = int(os.environ["GREENFD_RESP_PORT"])


@pytest.fixture
def r():
    client = redis.Redis(host="127.0.0.1", port=PORT)
    yield client
    client.close()


@pytest.fixture
def k():
    """A unique key prefix per test."""
    return f"t:{uuid.uuid4().hex}:"


def test_connect_with_default_settings_logs_no_warning(caplog):
    caplog.set_level(logging.WARNING)
    client = redis.Redis(host="127.0.0.1", port=PORT)
    assert client.ping() is True
    conn = client.connection_pool.get_connection()
    try:
        # redis-py 8 asks for RESP3 with HELLO 3 by default; it must not fall back to RESP2.
        assert not getattr(conn, "_resp2_fallback", False)
        print("negotiated protocol", conn.protocol)
    finally:
        client.connection_pool.release(conn)
    client.close()
    assert [rec for rec in caplog.records if rec.levelno >= logging.WARNING] == []


def test_get_set_with_ex_px_nx_xx(r, k):
    assert r.set(k + "a", "1") is True
    assert r.get(k + "a") == b"1"
    assert r.get(k + "missing") is None
    assert r.set(k + "a", "2", nx=True) is None
    assert r.get(k + "a") == b"1"
    assert r.set(k + "a", "3", xx=True) is True
    assert r.get(k + "a") == b"3"
    assert r.set(k + "b", "x", xx=True) is None
    assert r.exists(k + "b") == 0
    assert r.set(k + "c", "v", ex=100) is True
    assert 98 <= r.ttl(k + "c") <= 100
    assert r.set(k + "d", "v", px=100000) is True
    assert 98000 <= r.pttl(k + "d") <= 100000
    assert r.set(k + "e", "v", px=50) is True
    time.sleep(0.2)
    assert r.get(k + "e") is None
    assert r.set(k + "a", "4", get=True) == b"3"
    assert r.set(k + "f", "v", nx=True, ex=5) is True
    assert r.append(k + "f", "w") == 2
    assert r.strlen(k + "f") == 2
    assert r.mget([k + "a", k + "nope", k + "f"]) == [b"4", None, b"vw"]


def test_incr_incrby_decr(r, k):
    assert r.incr(k + "n") == 1
    assert r.incr(k + "n", 10) == 11
    assert r.incrby(k + "n", 5) == 16
    assert r.decr(k + "n") == 15
    assert r.decr(k + "n", 5) == 10
    assert r.decrby(k + "n", 3) == 7
    r.set(k + "s", "abc")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.incr(k + "s")


def test_expire_ttl_persist(r, k):
    r.set(k + "a", "v")
    assert r.ttl(k + "a") == -1
    assert r.ttl(k + "missing") == -2
    assert r.expire(k + "a", 100) is True
    assert 98 <= r.ttl(k + "a") <= 100
    assert r.persist(k + "a") is True
    assert r.ttl(k + "a") == -1
    assert r.pexpire(k + "a", 50) is True
    time.sleep(0.2)
    assert r.exists(k + "a") == 0
    assert r.expire(k + "missing", 10) is False


def test_pipeline_with_and_without_transaction(r, k):
    with r.pipeline(transaction=True) as p:
        p.set(k + "a", "1").incr(k + "a").get(k + "a")
        assert p.execute() == [True, 2, b"2"]
    with r.pipeline(transaction=False) as p:
        p.set(k + "b", "x").get(k + "b").delete(k + "b").exists(k + "b")
        assert p.execute() == [True, b"x", 1, 0]


def test_client_name():
    client = redis.Redis(host="127.0.0.1", port=PORT, client_name="greenfd-test")
    assert client.client_getname() == "greenfd-test"
    assert client.client_setname("renamed") is True
    assert client.client_getname() == "renamed"
    assert isinstance(client.client_id(), int)
    assert client.client_info()["name"] == "renamed"
    client.close()


def test_lists(r, k):
    assert r.rpush(k + "l", "a", "b", "c") == 3
    assert r.lpush(k + "l", "z") == 4
    assert r.lrange(k + "l", 0, -1) == [b"z", b"a", b"b", b"c"]
    assert r.llen(k + "l") == 4
    assert r.lpop(k + "l") == b"z"
    assert r.rpop(k + "l") == b"c"
    assert r.lpop(k + "l", 5) == [b"a", b"b"]
    assert r.exists(k + "l") == 0
    assert r.lpop(k + "l") is None


def test_sets(r, k):
    assert r.sadd(k + "s", "a", "b", "c", "a") == 3
    assert r.smembers(k + "s") == {b"a", b"b", b"c"}
    assert r.scard(k + "s") == 3
    assert r.sismember(k + "s", "a") in (True, 1)
    assert r.sismember(k + "s", "x") in (False, 0)
    assert r.srem(k + "s", "a", "x") == 1
    popped = r.spop(k + "s")
    assert popped in (b"b", b"c")
    assert r.scard(k + "s") == 1


def test_hashes(r, k):
    assert r.hset(k + "h", mapping={"f1": "v1", "f2": "v2"}) == 2
    assert r.hset(k + "h", "f1", "v3") == 0
    assert r.hget(k + "h", "f1") == b"v3"
    assert r.hget(k + "h", "nope") is None
    assert r.hgetall(k + "h") == {b"f1": b"v3", b"f2": b"v2"}
    assert r.hlen(k + "h") == 2
    assert r.hdel(k + "h", "f1", "nope") == 1
    assert r.hgetall(k + "missing") == {}


def test_sorted_sets(r, k):
    assert r.zadd(k + "z", {"a": 1, "b": 2.5, "c": 0.5}) == 3
    assert r.zcard(k + "z") == 3
    assert r.zscore(k + "z", "b") == 2.5
    assert r.zscore(k + "z", "nope") is None
    assert r.zrange(k + "z", 0, -1) == [b"c", b"a", b"b"]
    assert r.zrange(k + "z", 0, -1, withscores=True) == [(b"c", 0.5), (b"a", 1.0), (b"b", 2.5)]
    assert r.zrange(k + "z", 0, 0, desc=True) == [b"b"]
    assert r.zpopmin(k + "z") == [(b"c", 0.5)]
    assert r.zpopmin(k + "z", 2) == [(b"a", 1.0), (b"b", 2.5)]
    assert r.zcard(k + "z") == 0


def test_wrongtype(r, k):
    r.set(k + "str", "v")
    r.rpush(k + "list", "a")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        r.lpush(k + "str", "x")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        r.get(k + "list")
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
        r.hget(k + "list", "f")
    assert r.type(k + "list") == b"list"


def test_keys_scan_type(r, k):
    for i in range(25):
        r.set(f"{k}scan:{i}", i)
    assert sorted(r.keys(k + "scan:*")) == sorted(f"{k}scan:{i}".encode() for i in range(25))
    assert sorted(r.scan_iter(match=k + "scan:*", count=7)) == sorted(
        f"{k}scan:{i}".encode() for i in range(25)
    )


def test_fifty_threads_ten_thousand_incrs_exact(k):
    pool = redis.BlockingConnectionPool(host="127.0.0.1", port=PORT, max_connections=50)
    client = redis.Redis(connection_pool=pool)

    def work(_):
        for _ in range(200):
            client.incr(k + "counter")

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as ex:
        list(ex.map(work, range(50)))
    assert int(client.get(k + "counter")) == 10_000
    client.close()
    pool.disconnect()
