"""A process-local copy of fields of one Redis hash, dropped the moment Redis says the hash changed.

The resolver reads one hash on every call; a round trip to Redis costs more than the whole rest of
the call (about 50 µs here). Redis 6's client-side caching in broadcasting mode (CLIENT TRACKING
... BCAST PREFIX key) sends an invalidation for every write to the key to a listener connection,
and a thread of this process empties the copy when one arrives. Whatever this process read before
that write is then never answered from memory again; the copy is used only while the listener and
the tracking connection are known to be alive, and a fill that raced with an invalidation is not
kept. The delay between a write and the drop is the listener thread's wake-up: well under a
millisecond on an idle process, up to Python's thread switch interval (5 ms) on a busy one.
"""

import os
import threading
import time
from collections.abc import Sequence

import redis

INVALIDATE_CHANNEL = "__redis__:invalidate"
HEALTH_CHECK_S = 1.0  # how often an idle listener proves the tracking connection still answers
RETRY_AFTER_S = 5.0  # after a broken listener, calls go to Redis this long before a new one starts


class HashMirror:
	"""Fields of the hash `key`, answered from memory while Redis keeps this process informed."""

	def __init__(self, client: redis.Redis, key: bytes, max_fields: int = 200_000):
		self.client = client
		self.key = key
		self.max_fields = max_fields
		self._values: dict = {}
		self._generation = 0
		self._live = False
		self._pid: int | None = None
		self._retry_at = 0.0
		self._lock = threading.Lock()

	def get(self, fields: Sequence) -> list[bytes | None]:
		"""The current value of each field: from memory where known, else one HMGET for the rest."""
		self._ensure_listener()
		if not self._live:
			return self.client.hmget(self.key, list(fields))
		values = self._values
		missing = [field for field in fields if field not in values]
		if missing:
			generation = self._generation
			fetched = dict(zip(missing, self.client.hmget(self.key, missing), strict=True))
			with self._lock:
				if self._live and generation == self._generation:
					if len(self._values) + len(fetched) > self.max_fields:
						self._values = {}
					self._values.update(fetched)
			values = {**values, **fetched}
		return [values[field] for field in fields]

	@property
	def live(self) -> bool:
		return self._live

	def invalidate(self) -> None:
		"""Forget what this process read, after it wrote the hash itself: it reads its own writes at
		once, without waiting for Redis's invalidation to reach the listener thread."""
		self._drop()

	def _drop(self) -> None:
		with self._lock:
			self._generation += 1
			self._values = {}

	def _broken(self) -> None:
		with self._lock:
			self._live = False
			self._generation += 1
			self._values = {}
			self._retry_at = time.monotonic() + RETRY_AFTER_S

	def _ensure_listener(self) -> None:
		"""Start the listener in this process: a forked child (an RQ job) inherits no thread."""
		pid = os.getpid()
		if self._pid == pid and (self._live or time.monotonic() < self._retry_at):
			return
		with self._lock:
			if self._pid == pid and (self._live or time.monotonic() < self._retry_at):
				return
			self._pid = pid
			self._live = False
			self._values = {}
			self._retry_at = time.monotonic() + RETRY_AFTER_S
		started = threading.Event()
		threading.Thread(target=self._listen, args=(started,), daemon=True, name="hash-mirror").start()
		started.wait(2.0)

	def _connection(self) -> redis.connection.Connection:
		"""A connection of its own, named so an administrator can tell it in CLIENT LIST."""
		pool = self.client.connection_pool
		connection = pool.connection_class(
			**{**pool.connection_kwargs, "client_name": f"hash-mirror-{os.getpid()}"}
		)
		connection.connect()
		return connection

	def _listen(self, started: threading.Event) -> None:
		subscriber = tracker = None
		try:
			subscriber = self._connection()
			subscriber.send_command("CLIENT", "ID")
			client_id = subscriber.read_response()
			subscriber.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
			subscriber.read_response()
			tracker = self._connection()
			tracker.send_command(
				"CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", self.key
			)
			if tracker.read_response() not in (b"OK", "OK"):
				raise redis.RedisError("CLIENT TRACKING was refused")
			with self._lock:
				self._values = {}
				self._generation += 1
				self._live = True
			started.set()
			pid = os.getpid()
			while self._pid == pid:
				if not subscriber.can_read(timeout=HEALTH_CHECK_S):
					tracker.send_command("PING")
					tracker.read_response()
					continue
				subscriber.read_response()
				self._drop()
		except (redis.RedisError, OSError):
			pass
		finally:
			started.set()
			if self._pid == os.getpid():
				self._broken()
			for connection in (subscriber, tracker):
				if connection is not None:
					connection.disconnect()
