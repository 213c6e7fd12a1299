"""The app's clock on a site nobody logs in to: Frappe's dormancy must not stop failover.

On this site, with a real worker and a scheduler that queues jobs only when Frappe's own
`schedule_jobs_based_on_activity` says so (as `bench schedule` does): no Activity Log newer than six
days, Frappe's cached verdict cleared, the CDN endpoint stopped, nobody acting but students walking
the content. Their walks become all local within the usual failover time, plus the time a guest
request takes to notice the app's stale clock (`clock.CHECK_EVERY_S`).
"""

import time
import unittest

import frappe
from frappe.utils import add_days, now_datetime
from frappe.utils.scheduler import schedule_jobs_based_on_activity

from memora_storage import clock, failover
from memora_storage.tests.student import PublishingTestCase
from memora_storage.tests.utils import S3_ENDPOINT, S3_SKIP_REASON, start_scheduler, start_worker, stop

INTERVAL = 5  # seconds between probes (CDN Settings' minimum)
RELINK_ALLOWANCE = 20  # seconds for a forked job to start and re-link a small tree, with margin
REVIVE_ALLOWANCE = clock.CHECK_EVERY_S + 10  # a guest request notices, a worker runs `revive`


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
class TestDormancy(PublishingTestCase):
	def setUp(self) -> None:
		super().setUp()
		self.use(self.proxy.url, auto_failover=1, probe_interval=INTERVAL, failover_after=2, recover_after=3)
		failover.reset("test")
		frappe.db.commit()

	def make_dormant(self) -> None:
		"""Every Activity Log six days old (put back afterwards), the app's clock and Frappe's verdict
		forgotten: the site as its staff left it five days ago."""
		recent = frappe.get_all(
			"Activity Log",
			filters={"modified": [">", add_days(now_datetime(), -6)]},
			fields=["name", "modified", "creation"],
		)
		old = add_days(now_datetime(), -6)
		for row in recent:
			frappe.db.set_value(
				"Activity Log", row.name, {"creation": old, "modified": old}, update_modified=False
			)
		# A dormant site runs its scheduled jobs once a day: the last pass left a log within the day (a
		# site whose log is empty, as a fresh test site's may be, would be scheduled at once).
		log = frappe.get_doc(
			{
				"doctype": "Scheduled Job Log",
				"scheduled_job_type": frappe.db.get_value("Scheduled Job Type", {}, "name"),
				"status": "Complete",
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		self.addCleanup(self.restore, recent)
		self.addCleanup(frappe.db.delete, "Scheduled Job Log", {"name": log.name})
		frappe.cache.delete_value(clock.LAST_RAN)
		schedule_jobs_based_on_activity.clear_cache()
		self.assertFalse(schedule_jobs_based_on_activity(), "the site should be dormant now")

	def restore(self, rows: list[frappe._dict]) -> None:
		for row in rows:
			frappe.db.set_value(
				"Activity Log",
				row.name,
				{"creation": row.creation, "modified": row.modified},
				update_modified=False,
			)
		frappe.db.commit()
		schedule_jobs_based_on_activity.clear_cache()

	def start(self) -> None:
		worker = start_worker()
		scheduler = start_scheduler(tick=1.0, dormancy=True)
		self.addCleanup(stop, worker)
		self.addCleanup(stop, scheduler)

	def walk_where(self, plan: str) -> set[str] | None:
		frappe.db.rollback()  # see the worker's commits
		try:
			return set(self.walk(plan).values())
		except (AssertionError, OSError):
			return None

	def test_an_outage_on_a_site_nobody_logged_in_to_for_five_days_is_survived(self):
		plan, _subjects, _units = self.tree(subjects=2, units=3)
		self.drain()
		self.assertEqual(set(self.walk(plan).values()), {"cdn"})
		self.make_dormant()
		self.start()
		self.proxy.stop()  # the CDN endpoint goes down; nobody logs in, nobody touches anything
		started = time.monotonic()
		limit = 2 * INTERVAL + RELINK_ALLOWANCE + REVIVE_ALLOWANCE
		while self.walk_where(plan) != {"local"}:
			if time.monotonic() - started > limit:
				self.fail(f"students' walks not all local within {limit:g} s: {clock.status()}")
			time.sleep(0.5)
		seconds = time.monotonic() - started
		frappe.db.rollback()
		self.assertTrue(
			frappe.db.exists("Activity Log", {"subject": ["like", "Memora Storage keeps the scheduler%"]})
		)
		self.assertTrue(schedule_jobs_based_on_activity(), "Frappe's verdict: no longer dormant")
		print(f"\ndormant site: students' walks all local {seconds:.1f} s after the CDN endpoint stopped")

	def test_a_stale_clock_says_why(self):
		frappe.cache.delete_value(clock.LAST_RAN)
		status = clock.status()
		self.assertTrue(status["stale"])
		self.assertIsNone(status["minutes_ago"])
		self.assertTrue(status["reason"])
		clock.beat()
		self.assertEqual((clock.status()["stale"], clock.status()["minutes_ago"]), (False, 0))
