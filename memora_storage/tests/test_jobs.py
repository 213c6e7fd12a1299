"""Every job the app queues or schedules names a function that exists, and requests are never dropped."""

import frappe
from frappe.tests.utils import FrappeTestCase

from memora_storage import after_commit, hooks, jobs


class TestJobs(FrappeTestCase):
	def test_every_job_kind_and_scheduled_event_names_a_function(self):
		methods = [kind.method for kind in (*jobs.REQUESTS.values(), *jobs.ONCE.values())]
		methods += [method for entries in hooks.scheduler_events["cron"].values() for method in entries]
		for method in methods:
			with self.subTest(method=method):
				self.assertTrue(callable(frappe.get_attr(method)))

	def test_a_request_while_one_waits_queues_nothing_more(self):
		jobs.started(jobs.REBUILD)
		self.addCleanup(jobs.started, jobs.REBUILD)
		self.assertTrue(jobs.request(jobs.REBUILD))
		self.assertFalse(jobs.request(jobs.REBUILD))
		self.assertTrue(jobs.is_requested(jobs.REBUILD))
		jobs.started(jobs.REBUILD)  # the job starts: the next request queues the next run
		self.assertTrue(jobs.request(jobs.REBUILD))

	def test_after_commit_once_runs_once_and_never_after_a_rollback(self):
		ran = []
		self.assertTrue(after_commit.once("test-key", lambda: ran.append(1)))
		self.assertFalse(after_commit.once("test-key", lambda: ran.append(2)))
		frappe.db.commit()
		self.assertEqual(ran, [1])
		after_commit.once("test-key", lambda: ran.append(3), on_rollback=lambda: ran.append("rolled back"))
		frappe.db.rollback()
		frappe.db.commit()
		self.assertEqual(ran, [1, "rolled back"])
		with after_commit.suppressed("test-key"):
			self.assertFalse(after_commit.once("test-key", lambda: ran.append(4)))
		self.assertTrue(after_commit.once("test-key", lambda: ran.append(5)))
		frappe.db.commit()
		self.assertEqual(ran, [1, "rolled back", 5])
