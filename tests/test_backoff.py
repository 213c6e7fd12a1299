"""The retry schedule, with the clock driven by the test: 30 s, 1 m, 2 m, 5 m, then 15 m, for about one hour."""

import datetime

import pytest

from memora_storage.utils.backoff import RETRY_WINDOW, delay_after, next_attempt_at

T0 = datetime.datetime(2026, 1, 25, 9, 0, 0, tzinfo=datetime.timezone.utc)


def at(minutes: int, seconds: int = 0) -> datetime.datetime:
	return T0 + datetime.timedelta(minutes=minutes, seconds=seconds)


def run_until_exhausted(
	first_failure: datetime.datetime, lateness: datetime.timedelta = datetime.timedelta()
):
	"""Fail every attempt, each starting `lateness` after it is due; return the failure times."""
	failures = [first_failure]
	while True:
		due = next_attempt_at(len(failures), first_failure, failures[-1])
		if due is None:
			return failures
		assert due > failures[-1]
		failures.append(due + lateness)


def test_delays_follow_the_spec() -> None:
	assert [delay_after(n).total_seconds() for n in range(1, 9)] == [30, 60, 120, 300, 900, 900, 900, 900]


def test_exact_sequence_when_every_attempt_runs_on_time() -> None:
	failures = run_until_exhausted(T0)
	assert failures == [at(0), at(0, 30), at(1, 30), at(3, 30), at(8, 30), at(23, 30), at(38, 30), at(53, 30)]
	# The 8th failure at 53:30 would put the next attempt at 68:30, past the hour: exhausted there.
	assert next_attempt_at(8, T0, at(53, 30)) is None


def test_next_attempt_times_one_by_one() -> None:
	assert next_attempt_at(1, T0, T0) == at(0, 30)
	assert next_attempt_at(4, T0, at(3, 30)) == at(8, 30)
	assert next_attempt_at(5, T0, at(8, 30)) == at(23, 30)
	assert next_attempt_at(7, T0, at(38, 30)) == at(53, 30)


def test_window_boundary_is_inclusive() -> None:
	# A next attempt due exactly one hour after the first failure still happens; one second later does not.
	assert next_attempt_at(6, T0, at(45)) == at(60)
	assert next_attempt_at(6, T0, at(45, 1)) is None
	assert RETRY_WINDOW == datetime.timedelta(hours=1)


def test_late_attempts_get_fewer_tries_not_a_longer_window() -> None:
	# The dispatcher runs once a minute, so attempts start up to a minute late: still 8 tries, the
	# last one due at 59:24 and failing at 60:23.
	failures = run_until_exhausted(T0, lateness=datetime.timedelta(seconds=59))
	assert len(failures) == 8
	assert failures[-1] == at(60, 23)
	# Busy workers, two minutes late each time: 7 tries, declared Failed at 50:30.
	failures = run_until_exhausted(T0, lateness=datetime.timedelta(minutes=2))
	assert failures == [at(0), at(2, 30), at(5, 30), at(9, 30), at(16, 30), at(33, 30), at(50, 30)]


def test_naive_datetimes_work_as_frappe_stores_them() -> None:
	naive = datetime.datetime(2026, 1, 25, 9, 0, 0)
	assert next_attempt_at(2, naive, naive + datetime.timedelta(seconds=30)) == naive + datetime.timedelta(
		seconds=90
	)


def test_attempts_start_at_one() -> None:
	with pytest.raises(ValueError, match="starts at 1"):
		delay_after(0)
