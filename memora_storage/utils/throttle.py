"""Back-pressure for a store that says "slow down" (503 SlowDown, 429): not an outage, a rate.

A throttled request is retried within the same pass after a jittered exponential pause (from
100 ms, at most 5 s), and the pass's concurrency follows the store: it halves on each refusal and
grows by one request per window of accepted ones (additive increase, multiplicative decrease, as
TCP does). Only a path refused for `SUSTAINED_S` in a row gives up, and then enters the durable
schedule (`backoff`) like any failure.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

FIRST_PAUSE_S = 0.1
MAX_PAUSE_S = 5.0
SUSTAINED_S = 30.0  # refused this long in a row: the row goes to the durable retry schedule


def pause(attempt: int, rand: Callable[[], float] = random.random) -> float:
	"""Seconds to wait before retry `attempt` (1 = the first retry): full jitter over 100 ms · 2^(n-1),
	so threads refused together do not come back together."""
	return rand() * min(MAX_PAUSE_S, FIRST_PAUSE_S * 2 ** (attempt - 1))


class Aimd:
	"""How many requests may be in flight: `limit` of at most `ceiling`, at least one.

	`slot()` waits for a free place; `accepted()` adds 1/limit (one more place per window of
	accepted requests); `refused()` halves the limit, at most once per `cooldown` seconds, so a
	burst of refusals answered to requests sent together counts as one signal.
	"""

	def __init__(self, ceiling: int, cooldown: float = FIRST_PAUSE_S):
		self.ceiling = max(1, ceiling)
		self.limit = float(self.ceiling)
		self.lowest = self.limit  # the smallest limit reached, for reports
		self.cooldown = cooldown
		self._in_flight = 0
		self._last_cut = 0.0
		self._cond = threading.Condition()

	def slot(self) -> _Slot:
		return _Slot(self)

	def accepted(self) -> None:
		with self._cond:
			self.limit = min(self.ceiling, self.limit + 1 / self.limit)
			self._cond.notify_all()

	def refused(self) -> None:
		with self._cond:
			now = time.monotonic()
			if now - self._last_cut >= self.cooldown:
				self.limit = max(1.0, self.limit / 2)
				self.lowest = min(self.lowest, self.limit)
				self._last_cut = now

	def _acquire(self) -> None:
		with self._cond:
			while self._in_flight >= int(self.limit):
				self._cond.wait()
			self._in_flight += 1

	def _release(self) -> None:
		with self._cond:
			self._in_flight -= 1
			self._cond.notify_all()


class _Slot:
	def __init__(self, aimd: Aimd):
		self._aimd = aimd

	def __enter__(self) -> None:
		self._aimd._acquire()

	def __exit__(self, *exc: object) -> None:
		self._aimd._release()
