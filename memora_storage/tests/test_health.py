"""Health scans on a real site: the schedule, planted faults reported exactly, missing files regenerated,
orphans deleted only on request and only while still orphans, failures logged (FR-015, FR-016, SC-006).

The test site holds other content (the demo's files, other tests'), so every assertion about a report
looks only at the paths this test planted, which all carry the test's tag.
"""

import datetime
import json
import os
import stat
import time
from unittest.mock import patch

import frappe
from frappe.model.base_document import get_controller
from frappe.utils import add_days, now_datetime
from frappe.utils.background_jobs import get_job

from memora_storage import api, content_files, jobs, publishing, reports, scans
from memora_storage.memora_storage.dashboard_chart_source.content_files_by_sync_status import (
	content_files_by_sync_status as sync_status_chart,
)
from memora_storage.tests.utils import ContentTestCase, set_cdn_settings, start_worker, stop
from memora_storage.utils.paths import file_path, prev_path

SCHEDULE = {
	"memora_storage.disk_guard.check": "* * * * *",
	"memora_storage.publishing.retry_pending_writes": "* * * * *",
	"memora_storage.uploads.dispatch": "* * * * *",
	"memora_storage.scans.hourly": "0 * * * *",
	"memora_storage.scans.nightly": "30 1 * * *",
}
LONG_AGO = time.time() - 3600  # older than the scan's one-minute grace for new files


class HealthTestCase(ContentTestCase):
	def make_units(self, count: int):
		"""A Plan, a Subject and `count` Units, committed, so their files are written."""
		plan = self.make("Plan", f"plan-{self.tag}", commit=False)
		subject = self.make("Subject", f"subject-{self.tag}", commit=False, plan=plan.name)
		units = [
			self.make("Unit", f"unit-{self.tag}-{i}", commit=False, subject=subject.name, body=f"body {i}")
			for i in range(count)
		]
		frappe.db.commit()
		return subject, [f"units/{unit.name}.json" for unit in units]

	def plant(self, path: str, data: bytes = b"{}\n", mtime: float = LONG_AGO) -> None:
		"""A file no record expects, old enough to be called an orphan; removed after the test."""
		target = file_path(self.store.root, path)
		target.parent.mkdir(parents=True, exist_ok=True)
		target.write_bytes(data)
		os.utime(target, (mtime, mtime))
		self.addCleanup(self.store.remove, path)

	def file(self, path: str):
		return file_path(self.store.root, path)

	def mine(self, report) -> set[tuple[str, str]]:
		"""The report's (problem, path) pairs for this test's paths."""
		return {(p.problem, p.path) for p in reports.report_problems(report) if self.tag in p.path}

	def detail(self, report, path: str) -> str:
		return next(p.detail for p in reports.report_problems(report) if p.path == path)


class TestHealthSchedule(HealthTestCase):
	def test_scheduler_entries_exist_after_migrate(self):
		for method, cron in SCHEDULE.items():
			with self.subTest(method=method):
				job = frappe.db.get_value(
					"Scheduled Job Type",
					{"method": method},
					["frequency", "cron_format", "stopped"],
					as_dict=True,
				)
				self.assertEqual((job.frequency, job.cron_format, job.stopped), ("Cron", cron, 0))

	def test_business_hours_window(self):
		at = lambda hour: datetime.datetime(2026, 1, 1, hour, 0)  # noqa: E731
		set_cdn_settings(health_check_start_hour=8, health_check_end_hour=18)
		self.assertEqual([h for h in range(24) if scans.in_business_hours(at(h))], list(range(8, 19)))
		set_cdn_settings(health_check_start_hour=22, health_check_end_hour=5)  # across midnight
		self.assertEqual([h for h in range(24) if scans.in_business_hours(at(h))], [0, 1, 2, 3, 4, 5, 22, 23])
		with self.assertRaises(frappe.ValidationError):
			set_cdn_settings(health_check_start_hour=24)
		frappe.db.rollback()

	def test_hourly_job_queues_one_scan_on_the_long_queue_within_hours(self):
		self.addCleanup(_drop_scan_job)
		_drop_scan_job()
		hour = now_datetime().hour
		set_cdn_settings(health_check_start_hour=(hour + 1) % 24, health_check_end_hour=(hour + 2) % 24)
		scans.hourly()
		self.assertIsNone(get_job(jobs.job_id(jobs.SCAN)))  # outside the hours: nothing queued

		set_cdn_settings(health_check_start_hour=hour, health_check_end_hour=hour)
		scans.hourly()
		job = get_job(jobs.job_id(jobs.SCAN))
		self.assertTrue(job.origin.endswith("long"), job.origin)
		self.assertEqual(job.kwargs["kwargs"], {"full": False, "deep": False, "scope": "Hourly"})
		scans.nightly()  # a scan is queued: the full one is not queued beside it
		self.assertEqual(get_job(jobs.job_id(jobs.SCAN)).kwargs["kwargs"]["scope"], "Hourly")
		self.assertFalse(api.run_health_check(full=True))


def _drop_scan_job() -> None:
	if job := get_job(jobs.job_id(jobs.SCAN)):
		job.delete()


class TestHealthScan(HealthTestCase):
	def test_deep_scan_reports_exactly_the_planted_faults(self):
		_subject, unit_paths = self.make_units(7)
		missing, invalid, stale, pending = unit_paths[:2], unit_paths[2:4], unit_paths[4], unit_paths[5]
		for path in missing:
			self.file(path).unlink()
		for path in invalid:
			self.file(path).write_bytes(b'{"name": "cut sho')
		self.file(stale).write_bytes(b'{"name": "edited by hand"}\n')
		orphans = [
			f"units/orphan-{self.tag}-1.json",
			f"units/orphan-{self.tag}-2.json",
			f"plans/gone-{self.tag}/manifest.json",  # the folder of a plan that no longer exists
		]
		for path in orphans:
			self.plant(path)
		# A save while the disk is low: the old file is deleted here, the new one waits as Pending.
		self.file(pending).unlink()
		set_cdn_settings(min_free_disk_percent=99.99)  # above the real free share of any disk here
		unit = frappe.get_doc("Unit", f"unit-{self.tag}-5")
		unit.body = "saved while low"
		unit.save()
		frappe.db.commit()
		set_cdn_settings()

		full = frappe.get_doc(reports.DOCTYPE, scans.run(full=True))
		report = frappe.get_doc(reports.DOCTYPE, scans.run(deep=True))

		# The nightly full scan judges metadata: what is cut short or edited by hand (and newer than
		# its record) waits for the deep scan, which reads every file and renders every record.
		self.assertEqual((full.contents_checked, report.contents_checked), (0, 1))
		self.assertEqual(
			self.mine(full),
			{
				*(("Missing", path) for path in [*missing, pending]),
				*(("Orphaned", path) for path in orphans),
			},
		)
		self.assertEqual(report.scope, "Manual")
		self.assertEqual(report.status, "Problems Found")
		self.assertEqual(
			self.mine(report),
			{
				*(("Missing", path) for path in [*missing, pending]),
				*(("Invalid", path) for path in invalid),
				("Stale", stale),
				*(("Orphaned", path) for path in orphans),
			},
		)
		self.assertEqual(self.detail(report, missing[0]), "no file")
		self.assertIn("write pending", self.detail(report, pending))
		self.assertIn("not valid JSON", self.detail(report, invalid[0]))
		self.assertEqual(self.detail(report, stale), "differs from a fresh render")
		self.assertGreaterEqual(report.missing_count, 3)
		self.assertGreaterEqual(report.orphaned_count, 3)
		self.assertGreaterEqual(report.expected_count, 9)
		self.assertEqual(report.regenerated_count, 0)
		self.assertEqual(report.disk_status, "Healthy")
		self.assertGreater(report.disk_free_percent, 0)
		for path in missing:  # nothing was written: regeneration is off
			self.assertFalse(self.file(path).exists())
		for path in orphans:  # nor deleted
			self.assertTrue(self.file(path).exists())

		# FR-016: the invalid files reach Error Log with path and document, once.
		logged = frappe.get_all(
			"Error Log", filters={"reference_name": report.name}, fields=["method", "error"]
		)
		self.assertEqual(len(logged), 1)
		for path in invalid:
			self.assertIn(f"path: {path}", logged[0].error)
		self.assertIn(f"document: Unit unit-{self.tag}-2", logged[0].error)
		again = frappe.get_doc(reports.DOCTYPE, scans.run(deep=True))
		self.assertFalse(frappe.db.exists("Error Log", {"reference_name": again.name}))

	def test_the_sunday_night_scan_is_deep(self):
		_drop_scan_job()
		self.addCleanup(_drop_scan_job)
		for day, deep in (
			(datetime.datetime(2026, 12, 5, 1, 30), False),
			(datetime.datetime(2026, 12, 6, 1, 30), True),
		):
			with patch("memora_storage.scans.now_datetime", return_value=day):
				scans.nightly()
			job = get_job(jobs.job_id(jobs.SCAN))
			self.assertEqual(job.kwargs["kwargs"], {"full": True, "deep": deep, "scope": "Full"}, day)
			job.delete()
		self.assertTrue(api.run_health_check(deep=True))
		self.assertEqual(get_job(jobs.job_id(jobs.SCAN)).kwargs["kwargs"]["deep"], True)

	def test_incremental_scan_finds_what_changed_since_the_last_scan(self):
		_subject, unit_paths = self.make_units(2)
		scans.run(full=True)
		unit = frappe.get_doc("Unit", f"unit-{self.tag}-0")
		unit.body = "changed after the scan"
		unit.save()
		frappe.db.commit()
		self.file(unit_paths[0]).unlink()
		self.plant(f"units/orphan-{self.tag}.json")

		report = frappe.get_doc(reports.DOCTYPE, scans.run())

		self.assertEqual(report.scope, "Manual")
		self.assertEqual(
			self.mine(report), {("Missing", unit_paths[0]), ("Orphaned", f"units/orphan-{self.tag}.json")}
		)
		self.assertGreaterEqual(report.expected_count, report.missing_count)

	def test_missing_files_are_regenerated_when_enabled(self):
		_subject, unit_paths = self.make_units(3)
		expected = {path: self.file(path).read_bytes() for path in unit_paths}
		for path in unit_paths[:2]:
			self.file(path).unlink()
		set_cdn_settings(regenerate_missing_files=1)

		report = frappe.get_doc(reports.DOCTYPE, scans.run(full=True))

		self.assertEqual(self.mine(report), {("Missing", path) for path in unit_paths[:2]})
		self.assertEqual(self.detail(report, unit_paths[0]), "regenerated")
		self.assertGreaterEqual(report.regenerated_count, 2)
		for path in unit_paths:
			self.assertEqual(self.file(path).read_bytes(), expected[path])
			self.assertEqual(
				frappe.db.get_value(content_files.DOCTYPE, content_files.row_name(path), "local_status"),
				"Written",
			)
		self.assertEqual(self.mine(frappe.get_doc(reports.DOCTYPE, scans.run(full=True))), set())

	def test_failed_scan_leaves_a_failed_report(self):
		with patch("memora_storage.scans.full_scan", side_effect=OSError("disk went away")):
			with self.assertRaises(OSError):
				scans.run(full=True, scope="Full")
		report = frappe.get_last_doc(reports.DOCTYPE, filters={"scope": "Full"})
		self.assertEqual(report.status, "Failed")
		self.assertIn("disk went away", report.summary)
		self.assertNotEqual(scans.last_scan_start(), report.checked_at)


class TestDeleteOrphans(HealthTestCase):
	def test_deletes_exactly_the_orphans_that_are_still_orphans(self):
		subject, unit_paths = self.make_units(1)
		names = [f"orphan-{self.tag}-{i}" for i in range(4)]
		orphans = [f"units/{name}.json" for name in names]
		for path in orphans:
			self.plant(path)
		backup = prev_path(self.store.private_root, orphans[0])
		backup.parent.mkdir(parents=True, exist_ok=True)
		backup.write_bytes(b"{}\n")  # a backup goes with its file
		report = reports.save_report(
			"Manual",
			[reports.Problem("Orphaned", path) for path in [*orphans, unit_paths[0]]],
			"planted orphans",
			checked_at=now_datetime(),
			orphaned_count=5,
		)
		frappe.db.commit()
		# After the scan: one orphan gets its document, one is written again, one disappears.
		self.make("Unit", names[1], subject=subject.name)
		self.plant(orphans[2], mtime=time.time())
		self.file(orphans[3]).unlink()

		counts = report.run_delete_orphans()  # the job, in this process

		self.assertEqual(counts, {"deleted": 1, "gone": 1, "kept": 3, "failed": 0})
		self.assertFalse(self.file(orphans[0]).exists())
		self.assertFalse(backup.exists())
		for path in (orphans[1], orphans[2], unit_paths[0]):
			self.assertTrue(self.file(path).exists(), path)
		self.assertEqual(json.loads(self.store.read(orphans[1]))["name"], names[1])
		report.reload()
		self.assertEqual(report.orphans_deleted_count, 1)
		self.assertTrue(
			frappe.db.exists(
				"Comment", {"reference_name": report.name, "content": ["like", "%Delete Orphans: 1 deleted%"]}
			)
		)
		self.assertEqual(report.run_delete_orphans()["deleted"], 0)  # nothing left to delete
		self.assertEqual(frappe.db.get_value(reports.DOCTYPE, report.name, "orphans_deleted_count"), 1)

	def test_delete_orphans_is_one_long_job_per_report(self):
		report = self.orphan_report()
		job_id = f"memora_storage:run_delete_orphans:{frappe.local.site}:{report.name}"
		self.addCleanup(_drop_job, job_id)
		self.assertTrue(report.delete_orphans())
		job = get_job(job_id)
		self.assertTrue(job.origin.endswith("long"), job.origin)
		self.assertEqual(job.kwargs["kwargs"]["doc_method"], "run_delete_orphans")
		self.assertFalse(report.delete_orphans())  # queued already: not twice
		with self.assertRaises(frappe.ValidationError):
			reports.save_report("CDN Verification", [], "not a scan").delete_orphans()

	def test_a_real_worker_deletes_and_tells_the_user_who_asked(self):
		report = self.orphan_report()
		orphan = reports.report_problems(report)[0].path
		worker = start_worker()
		try:
			self.assertTrue(report.delete_orphans())
			deadline = time.monotonic() + 60
			while time.monotonic() < deadline and not self.told(report):
				time.sleep(0.5)
				frappe.db.rollback()  # see the worker's commits
		finally:
			stop(worker)
		self.assertFalse(self.file(orphan).exists())
		self.assertEqual(frappe.db.get_value(reports.DOCTYPE, report.name, "orphans_deleted_count"), 1)
		self.assertIn("1 orphaned files deleted", self.told(report))

	def orphan_report(self):
		orphan = f"units/orphan-{self.tag}.json"
		self.plant(orphan)
		report = reports.save_report(
			"Manual",
			[reports.Problem("Orphaned", orphan)],
			"planted orphan",
			checked_at=now_datetime(),
			orphaned_count=1,
		)
		frappe.db.commit()
		return report

	def told(self, report) -> str | None:
		"""The subject of the Notification Log the job's end left for Administrator, who asked."""
		return frappe.db.get_value(
			"Notification Log",
			{"for_user": "Administrator", "document_type": reports.DOCTYPE, "document_name": report.name},
			"subject",
		)


def _drop_job(job_id: str) -> None:
	if job := get_job(job_id):
		job.delete()


class TestReportRetention(HealthTestCase):
	def test_log_settings_clears_reports_past_their_days(self):
		old = reports.save_report(
			"Manual", [reports.Problem("Orphaned", f"units/old-{self.tag}.json")], "an old scan"
		)
		frappe.db.set_value(reports.DOCTYPE, old.name, "creation", add_days(now_datetime(), -91))
		recent = reports.save_report("Manual", [], "a recent scan")
		frappe.db.commit()
		log_settings = frappe.get_doc("Log Settings")
		log_settings.add_default_logtypes()
		self.assertIn(reports.DOCTYPE, {row.ref_doctype for row in log_settings.logs_to_clear})

		get_controller(reports.DOCTYPE).clear_old_logs(days=90)

		self.assertFalse(frappe.db.exists(reports.DOCTYPE, old.name))
		self.assertFalse(frappe.db.exists("Content Health Issue", {"parent": old.name}))
		self.assertTrue(frappe.db.exists(reports.DOCTYPE, recent.name))


class TestFailureLogging(HealthTestCase):
	def test_plan_folder_that_cannot_be_deleted_is_logged_and_removed_later(self):
		if os.geteuid() == 0:
			self.skipTest("running as root: file permissions do not stop root")
		subject, _unit_paths = self.make_units(1)
		plan = subject.plan
		folder = self.file(f"plans/{plan}")
		plans_dir = folder.parent
		mode = plans_dir.stat().st_mode
		os.chmod(plans_dir, stat.S_IRUSR | stat.S_IXUSR)  # the plan's folder cannot leave `plans/`
		try:
			for doctype, name in (("Unit", f"unit-{self.tag}-0"), ("Subject", subject.name), ("Plan", plan)):
				frappe.delete_doc(doctype, name)
			frappe.db.commit()  # the deletes themselves succeed: no traceback reaches the user
			self.assertTrue(folder.exists())
			log = frappe.get_last_doc(
				"Error Log", filters={"method": ["like", f"%could not delete plans/{plan}%"]}
			)
			self.assertIn(f"path: plans/{plan}", log.error)
			self.assertIn("errno: 13", log.error)
			self.assertIn("operation: delete", log.error)
			self.assertEqual(
				publishing.retry_pending_writes(), 0
			)  # still refused: logged once, not every minute
			self.assertEqual(
				frappe.db.count("Error Log", {"method": ["like", f"%could not delete plans/{plan}%"]}), 1
			)
		finally:
			os.chmod(plans_dir, mode)
		self.assertGreaterEqual(publishing.retry_pending_writes(), 1)
		self.assertFalse(folder.exists())
		self.assertFalse(frappe.db.exists(content_files.DOCTYPE, content_files.row_name(f"plans/{plan}")))
		self.assertEqual(
			frappe.db.get_value(
				content_files.DOCTYPE, content_files.row_name(f"plans/{plan}/manifest.json"), "local_status"
			),
			"Deleted",
		)

	def test_file_removal_failure_names_the_deleted_document(self):
		if os.geteuid() == 0:
			self.skipTest("running as root: file permissions do not stop root")
		_subject, unit_paths = self.make_units(2)
		units_dir = self.file(unit_paths[0]).parent
		mode = units_dir.stat().st_mode
		os.chmod(units_dir, stat.S_IRUSR | stat.S_IXUSR)
		try:
			frappe.delete_doc("Unit", f"unit-{self.tag}-0")
			frappe.db.commit()
		finally:
			os.chmod(units_dir, mode)
		log = frappe.get_last_doc(
			"Error Log", filters={"method": ["like", f"%could not delete {unit_paths[0]}%"]}
		)
		self.assertIn(f"document: Unit unit-{self.tag}-0", log.error)
		self.assertEqual(log.reference_name, f"unit-{self.tag}-0")
		self.assertGreaterEqual(publishing.retry_pending_writes(), 1)
		self.assertFalse(self.file(unit_paths[0]).exists())

	def test_a_document_that_cannot_be_rendered_does_not_hold_up_the_retries(self):
		_subject, unit_paths = self.make_units(2)
		names = [f"unit-{self.tag}-{i}" for i in range(2)]
		for path in unit_paths:
			frappe.db.set_value(
				content_files.DOCTYPE, content_files.row_name(path), "local_status", "Pending"
			)
		frappe.db.commit()
		render = publishing.render

		def broken(doc, ctx):
			if doc.name == names[0]:
				raise ValueError("serialiser bug")
			return render(doc, ctx)

		with patch("memora_storage.publishing.render", side_effect=broken):
			self.assertEqual(publishing.retry_pending_writes(), 1)
		statuses = [
			frappe.db.get_value(
				content_files.DOCTYPE, content_files.row_name(path), ["local_status", "local_error"]
			)
			for path in unit_paths
		]
		self.assertEqual(statuses[0], ("Failed", "serialiser bug"))
		self.assertEqual(statuses[1][0], "Written")
		self.assertTrue(
			frappe.db.exists(
				"Error Log", {"reference_name": names[0], "method": ["like", "%could not render%"]}
			)
		)
		self.assertEqual(publishing.retry_pending_writes(), 0)  # a Failed row is not retried every minute

	def test_rollback_failure_is_logged(self):
		_subject, unit_paths = self.make_units(1)
		with self.assertRaises(frappe.ValidationError):
			api.rollback(unit_paths[0])  # never saved twice: no previous version
		log = frappe.get_last_doc("Error Log", filters={"method": ["like", "%could not roll back%"]})
		self.assertIn(f"path: {unit_paths[0]}", log.error)
		self.assertIn("operation: roll back", log.error)


class TestWorkspace(HealthTestCase):
	def test_workspace_cards_and_chart_are_installed_and_answer(self):
		workspace = frappe.get_doc("Workspace", "Memora Storage")
		self.assertEqual(workspace.module, "Memora Storage")
		self.assertEqual({row.role for row in workspace.roles}, {"System Manager"})
		self.assertEqual(
			{row.link_to for row in workspace.shortcuts},
			{"CDN Settings", "Content File", "Content Health Report", "CDN Probe"},
		)
		self.assertEqual([row.document_type for row in workspace.quick_lists], ["CDN Probe"])
		for row in workspace.number_cards:
			self.assertTrue(frappe.db.exists("Number Card", row.number_card_name), row.number_card_name)
		chart = sync_status_chart.get(chart_name="Content Files by Sync Status")
		# One slice per status in a fixed order: the chart's colours are by position.
		self.assertEqual(len(chart["labels"]), len(sync_status_chart.STATUSES))
		self.assertEqual(chart["labels"][:3], ["Synced", "Syncing", "Failed"])
		self.assertEqual(
			chart["datasets"][0]["values"],
			[
				frappe.db.count("Content File", {"sync_status": status})
				for status in sync_status_chart.STATUSES
			],
		)
		free = api.disk_free()
		self.assertTrue(0 < free["value"] <= 100, free)
		self.assertEqual(free["fieldtype"], "Percent")
		report = frappe.get_doc(reports.DOCTYPE, scans.run())
		problems = api.last_health_problems()
		self.assertEqual(problems["route"], ["Form", reports.DOCTYPE, report.name])
		self.assertEqual(
			problems["value"],
			report.missing_count + report.orphaned_count + report.stale_count + report.invalid_count,
		)


class TestUnsafeRecords(HealthTestCase):
	def test_a_record_whose_name_cannot_be_a_path_is_reported_not_checked(self):
		"""Saves refuse such names; one written behind the app's back is named in the report, with why."""
		subject, _paths = self.make_units(1)
		for name in (f"bad/{self.tag}", f".hidden-{self.tag}"):
			frappe.db.sql(
				"insert into `tabUnit` (name, title, subject, creation, modified) values (%s, %s, %s, now(), now())",
				(name, name, subject.name),
			)
			self.created.append(("Unit", name))
		frappe.db.commit()
		report = scans.scan(full=True, scope="Manual")
		refused = {p.reference_name: p for p in reports.report_problems(report) if p.problem == "Not Checked"}
		self.assertIn("path separator", refused[f"bad/{self.tag}"].detail)
		self.assertIn("reserved for temporary files", refused[f".hidden-{self.tag}"].detail)
