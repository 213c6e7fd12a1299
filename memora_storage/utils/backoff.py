"""The CDN retry schedule (EDGE-partition, EDGE-retry-exhaustion and FR-017 in docs/requirements.md).

After a failed attempt the next one is due 30 s, 1 min, 2 min, 5 min later, then every 15 min.
An item whose next attempt would fall more than one hour after its first failure is exhausted:
it is marked Failed, administrators are alerted, and only a manual Retry starts a new schedule.

With every attempt failing the moment it is due, relative to the first failure:

	failure   1     2     3      4      5      6       7       8
	at        0:00  0:30  1:30   3:30   8:30   23:30   38:30   53:30
	next due  0:30  1:30  3:30   8:30   23:30  38:30   53:30   (68:30 > 60:00: exhausted)

so an item gets 8 attempts and is declared Failed 53 min 30 s after its first failure. A next
attempt due at exactly 60:00 would still be allowed. Attempts that start late (the dispatcher runs
once a minute) push later ones back, so a slow item gets fewer attempts, never a longer window.

The functions are pure and take `now` explicitly, so the durable state (attempts, first failure,
next attempt) lives in the caller's rows and tests drive the clock.
"""

import datetime

RETRY_DELAYS = (
	datetime.timedelta(seconds=30),
	datetime.timedelta(minutes=1),
	datetime.timedelta(minutes=2),
	datetime.timedelta(minutes=5),
)
STEADY_DELAY = datetime.timedelta(minutes=15)
RETRY_WINDOW = datetime.timedelta(hours=1)


def delay_after(attempts: int) -> datetime.timedelta:
	"""How long to wait after the `attempts`-th consecutive failed attempt (1 = the first failure)."""
	if attempts < 1:
		raise ValueError(f"attempts counts failed attempts and starts at 1, got {attempts}")
	return RETRY_DELAYS[attempts - 1] if attempts <= len(RETRY_DELAYS) else STEADY_DELAY


def next_attempt_at(
	attempts: int, first_failure_at: datetime.datetime, now: datetime.datetime
) -> datetime.datetime | None:
	"""When to try again after the `attempts`-th failure, which happened at `now`; None = exhausted (Failed)."""
	due = now + delay_after(attempts)
	if due - first_failure_at > RETRY_WINDOW:
		return None
	return due
