"""HashMirror against a real Redis server: answers from memory, never after a write it missed."""

import os
import time
import uuid

import pytest
import redis

from memora_storage.utils.hash_mirror import HashMirror


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
	return redis.Redis.from_url(redis_url)


@pytest.fixture
def key(client: redis.Redis):
	key = f"memora-test:{uuid.uuid4().hex}".encode()
	yield key
	client.delete(key)


def calls(client: redis.Redis) -> int:
	return int(client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))


def wait_for(predicate, timeout: float = 2.0) -> float:
	"""Seconds until `predicate()` held; fails the test after `timeout`."""
	started = time.monotonic()
	while not predicate():
		assert time.monotonic() - started < timeout, "condition not reached in time"
		time.sleep(0.0005)
	return time.monotonic() - started


def test_repeated_reads_are_answered_from_memory(client: redis.Redis, key: bytes) -> None:
	client.hset(key, mapping={"a": "1", "b": "2"})
	mirror = HashMirror(client, key)
	assert mirror.get(["a", "b", "missing"]) == [b"1", b"2", None]
	assert mirror.live
	before = calls(client)
	for _ in range(1000):
		assert mirror.get(["a", "missing"]) == [b"1", None]
	assert calls(client) == before


def test_a_write_by_another_client_is_seen_at_once(client: redis.Redis, key: bytes, redis_url: str) -> None:
	other = redis.Redis.from_url(redis_url)
	client.hset(key, "path", "c1")
	mirror = HashMirror(client, key)
	assert mirror.get(["path"]) == [b"c1"]
	delays = []
	for version in range(2, 52):
		other.hset(key, "path", f"l{version}")
		delays.append(wait_for(lambda v=version: mirror.get(["path"]) == [f"l{v}".encode()]))
	other.delete(key)
	wait_for(lambda: mirror.get(["path"]) == [None])
	assert max(delays) < 0.1, delays


def test_a_read_racing_a_write_is_not_kept(client: redis.Redis, key: bytes, redis_url: str) -> None:
	"""Many writes while the mirror reads: once writes stop, it answers the last value, not a stale one."""
	other = redis.Redis.from_url(redis_url)
	mirror = HashMirror(client, key)
	for version in range(300):
		other.hset(key, "path", str(version))
		mirror.get(["path"])
	wait_for(lambda: mirror.get(["path"]) == [b"299"])
	time.sleep(0.05)
	assert mirror.get(["path"]) == [b"299"]


def test_a_forked_child_starts_its_own_listener(client: redis.Redis, key: bytes, redis_url: str) -> None:
	client.hset(key, "path", "parent")
	mirror = HashMirror(client, key)
	assert mirror.get(["path"]) == [b"parent"]
	read, write = os.pipe()
	pid = os.fork()
	if pid == 0:  # the child: an RQ work horse inherits the parent's copy but not its thread
		ok = False
		try:
			child_client = redis.Redis.from_url(redis_url)
			first = mirror.get(["path"]) == [b"parent"] and mirror.live
			child_client.hset(key, "path", "child")
			deadline = time.monotonic() + 2
			while time.monotonic() < deadline and mirror.get(["path"]) != [b"child"]:
				time.sleep(0.001)
			ok = first and mirror.get(["path"]) == [b"child"]
		finally:
			os.write(write, b"1" if ok else b"0")
			os._exit(0)
	os.waitpid(pid, 0)
	assert os.read(read, 1) == b"1"
	wait_for(lambda: mirror.get(["path"]) == [b"child"])


def test_a_killed_listener_means_no_answers_from_memory(client: redis.Redis, key: bytes) -> None:
	client.hset(key, "path", "before")
	mirror = HashMirror(client, key)
	assert mirror.get(["path"]) == [b"before"] and mirror.live
	for entry in client.client_list():
		if entry.get("name") == f"hash-mirror-{os.getpid()}":
			client.client_kill_filter(_id=entry["id"])
	wait_for(lambda: not mirror.live)
	client.hset(key, "path", "after")  # no invalidation can reach this process now
	assert mirror.get(["path"]) == [b"after"]


def test_invalidate_makes_this_process_read_its_own_write_at_once(client: redis.Redis, key: bytes) -> None:
	client.hset(key, "path", "l1")
	mirror = HashMirror(client, key)
	assert mirror.get(["path"]) == [b"l1"]
	for version in range(2, 200):
		client.hset(key, "path", f"c{version}")
		mirror.invalidate()
		assert mirror.get(["path"]) == [f"c{version}".encode()]
