"""The disk guard on a real site (FR-013, FR-014, SC-007): one alert per low-space episode to every System
Manager, a recovery notice, nothing in between; content saved meanwhile waits and is written after.

The disk cannot be filled here, so "low" is made by setting CDN Settings' Minimum Free Disk above the real
free share of the disk (99.99 %: no disk holding a site has that much free); "recovered" by setting it
back to 0. The guard reads the real free space through psutil either way.
"""

import frappe

from memora_storage import alerts, content_files, disk_guard, publishing
from memora_storage.tests.utils import ContentTestCase, ensure_outgoing_email_account, set_cdn_settings
from memora_storage.utils import disk, paths

ABOVE_REAL_FREE = 99.99


class TestDiskGuard(ContentTestCase):
	def setUp(self) -> None:
		super().setUp()
		free = disk.disk_status(paths.content_root(frappe.get_site_path())).free_percent
		if free >= ABOVE_REAL_FREE or free < 2:
			self.skipTest(f"the disk is {free:.2f}% free: a threshold cannot be set on both sides of it")
		ensure_outgoing_email_account()
		frappe.db.set_default(disk_guard.STATE_KEY, None, parent=disk_guard.STATE_PARENT)
		frappe.db.commit()
		self.addCleanup(self.reset_state)

	def reset_state(self) -> None:
		frappe.db.set_default(disk_guard.STATE_KEY, None, parent=disk_guard.STATE_PARENT)
		frappe.db.commit()

	def counts(self) -> tuple[dict[str, int], int]:
		"""Notification Logs per System Manager, and Email Queue rows, about the disk."""
		notes = {
			user: frappe.db.count(
				"Notification Log", {"for_user": user, "subject": ["like", "Memora Storage: disk space%"]}
			)
			for user in alerts.system_managers()
		}
		return notes, frappe.db.count("Email Queue", {"message": ["like", "%Memora Storage: disk space%"]})

	def test_one_alert_per_crossing_then_one_recovery_notice(self):
		managers = alerts.system_managers()
		self.assertIn("Administrator", managers)
		notes, emails = self.counts()
		self.assertEqual(disk_guard.check(), None)  # plenty of space: silence

		set_cdn_settings(min_free_disk_percent=ABOVE_REAL_FREE)
		self.assertEqual(disk_guard.check(), "low")
		low_notes, low_emails = self.counts()
		self.assertEqual(low_notes, {user: notes[user] + 1 for user in managers})
		self.assertEqual(low_emails, emails + 1)
		email = frappe.get_last_doc("Email Queue")
		self.assertIn("below the minimum of 99.99%", email.message)
		recipients = {r.recipient for r in email.recipients}
		self.assertTrue(recipients)  # one email, to the System Managers (Frappe drops unsubscribed ones)
		self.assertLessEqual(
			recipients, set(frappe.get_all("User", {"name": ["in", managers]}, pluck="email"))
		)
		self.assertEqual(frappe.db.get_default(disk_guard.STATE_KEY, disk_guard.STATE_PARENT), "low")

		# Still low, and the settings saved again meanwhile: no storm.
		set_cdn_settings(min_free_disk_percent=ABOVE_REAL_FREE, local_domain="http://memora.other")
		for _ in range(3):
			self.assertIsNone(disk_guard.check())
		self.assertEqual(self.counts(), (low_notes, low_emails))

		set_cdn_settings(min_free_disk_percent=0)
		self.assertEqual(disk_guard.check(), "recovered")
		recovered_notes, recovered_emails = self.counts()
		self.assertEqual(recovered_notes, {user: notes[user] + 2 for user in managers})
		self.assertEqual(recovered_emails, emails + 2)
		self.assertIn("free again", frappe.get_last_doc("Email Queue").message)
		self.assertIsNone(disk_guard.check())
		self.assertEqual(self.counts(), (recovered_notes, recovered_emails))

	def test_content_saved_while_low_waits_and_is_written_once_space_is_back(self):
		_plan, _subject, units = self.make_tree()
		path = f"units/{units[0].name}.json"
		before = self.store.read(path)
		set_cdn_settings(min_free_disk_percent=ABOVE_REAL_FREE)
		self.assertEqual(disk_guard.check(), "low")

		self.edit(units[0], body="saved while the disk is low")  # the save succeeds

		self.assertEqual(self.store.read(path), before)  # the old file, intact
		row = frappe.get_doc(content_files.DOCTYPE, content_files.row_name(path))
		self.assertEqual(row.local_status, "Pending")
		self.assertIn("generation is paused", row.local_error)
		log = frappe.get_last_doc("Error Log", filters={"reference_name": units[0].name})
		for line in (f"path: {path}", "operation: write", "errno: 28", f"document: Unit {units[0].name}"):
			self.assertIn(line, log.error)
		self.assertEqual(publishing.retry_pending_writes(), 0)  # still low: nothing written, nothing lost
		self.assertEqual(self.store.read(path), before)

		set_cdn_settings(min_free_disk_percent=0)
		self.assertEqual(disk_guard.check(), "recovered")
		self.assertGreaterEqual(publishing.retry_pending_writes(), 1)
		self.assertEqual(self.read_json(path)["body"], "saved while the disk is low")
		self.assertEqual(
			frappe.db.get_value(content_files.DOCTYPE, content_files.row_name(path), "local_status"),
			"Written",
		)
