"""The app's clock: when the scheduler last ran the app's per-minute jobs, and keeping it running on a
site whose only traffic is students reading content.

Frappe v15 calls a site dormant when its newest Activity Log (a Desk login, mostly) is older than
System Settings' `dormant_days` (4), and then queues scheduled jobs once a day
(`frappe.utils.scheduler.schedule_jobs_based_on_activity`, its verdict cached an hour). Students
reading through the guest API leave no Activity Log, so on a site whose staff do not log in the
probe, the dispatcher, the disk guard and the write retries would stop, and failover with them.

Chosen: while the CDN is enabled, the app keeps the site out of dormancy, and says so in the
Activity Log it writes (who and why, visible in Desk). The dispatcher, every minute, notes that it
ran (`beat`) and writes that entry once a day; should the site be dormant anyway (the scheduler was
off for days, a backup restored, the app installed on a sleeping site), the first guest API call
that finds the app's jobs stale queues `revive`, which writes the entry and clears Frappe's cached
verdict, so the next scheduler tick runs the jobs again. Not chosen: a check that fails loudly would
fail where nobody looks (the administrator does not log in), and a documented setting
(`dormant_days`) is one more thing to forget on every site. CDN Settings and the workspace show when
the jobs last ran and, when that is stale, why (`status`).
"""

import datetime
import time

import frappe
from frappe import _
from frappe.utils import get_datetime, now_datetime
from frappe.utils.scheduler import is_dormant, is_scheduler_inactive, schedule_jobs_based_on_activity

from memora_storage import jobs, settings

LAST_RAN = "memora_storage:scheduler_last_ran"  # when the dispatcher last ran (Redis cache)
STALE_AFTER = datetime.timedelta(minutes=3)  # the dispatcher runs every minute
AWAKE_EVERY = datetime.timedelta(hours=12)  # the app's Activity Log entry, well within dormant_days
CHECK_EVERY_S = 10.0  # a guest request looks at the clock at most this often per process
_looked_at = 0.0


def beat() -> None:
	"""Every minute (the dispatcher): the app's jobs ran now; once in AWAKE_EVERY, an Activity Log
	entry keeps the site out of dormancy while the CDN is enabled."""
	frappe.cache.set_value(LAST_RAN, now_datetime().isoformat())
	if settings.get_settings()["enable_cdn"]:
		newest = frappe.db.get_value("Activity Log", {}, "modified", order_by="modified desc")
		if not newest or now_datetime() - get_datetime(newest) > AWAKE_EVERY:
			_stay_awake()


def last_ran() -> datetime.datetime | None:
	value = frappe.cache.get_value(LAST_RAN)
	return get_datetime(value) if value else None


def keep_running() -> None:
	"""On guest API calls: when the app's jobs have not run for a while on a site with the CDN on,
	queue `revive` (a worker runs it: workers keep running on a dormant site, only the scheduler
	sleeps). Costs a clock comparison, and a Redis read every CHECK_EVERY_S per process."""
	global _looked_at
	if time.monotonic() - _looked_at < CHECK_EVERY_S:
		return
	_looked_at = time.monotonic()
	ran = last_ran()
	if ran and now_datetime() - ran < STALE_AFTER:
		return
	if settings.get_settings()["enable_cdn"]:
		jobs.enqueue_once(jobs.REVIVE)


def revive() -> bool:
	"""Queued by `keep_running`: if Frappe calls the site dormant, write the app's Activity Log entry
	and clear Frappe's cached verdict, so the next scheduler tick queues the app's jobs again."""
	if not (settings.get_settings()["enable_cdn"] and is_dormant()):
		return False
	_stay_awake()
	return True


def _stay_awake() -> None:
	frappe.get_doc(
		{
			"doctype": "Activity Log",
			"subject": _(
				"Memora Storage keeps the scheduler running: CDN failover probes the CDN every few "
				"seconds, also when nobody logs in"
			),
			"status": "Success",
			"user": "Administrator",
			"communication_date": now_datetime(),
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()
	schedule_jobs_based_on_activity.clear_cache()


def status() -> dict:
	"""When the app's per-minute jobs last ran, whether that is stale, and the likely reason."""
	ran = last_ran()
	stale = not ran or now_datetime() - ran > STALE_AFTER
	reason = None
	if stale:
		if is_scheduler_inactive(verbose=False):
			reason = _(
				"the scheduler is disabled or paused on this site: run bench --site {0} enable-scheduler"
			).format(frappe.local.site)
		elif not schedule_jobs_based_on_activity():
			reason = _(
				"Frappe considers this site dormant (no Desk login for {0} days) and runs scheduled jobs "
				"only once a day; with the CDN enabled the app wakes it on the next student request"
			).format(frappe.get_system_settings("dormant_days") or 4)
		else:
			reason = _(
				"the scheduler or the background workers are not running (bench schedule, bench worker)"
			)
	return {
		"last_ran": ran,
		"minutes_ago": None if not ran else int((now_datetime() - ran).total_seconds() // 60),
		"stale": stale,
		"reason": reason,
	}
