"""Every transition of a Content File row, through `content_files` alone, including the refused ones."""

import datetime
import uuid

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import add_to_date, now_datetime

from memora_storage import content_files, delivery_hash
from memora_storage.utils import canonical
from memora_storage.utils.store import FileOperationError, WriteResult


def written(path: str, data: bytes, changed: bool = True) -> WriteResult:
	return WriteResult(path, canonical.sha256(data), len(data), changed)


class TestContentFileStates(FrappeTestCase):
	def setUp(self):
		self.prefix = f"units/states-{uuid.uuid4().hex[:8]}"
		self.addCleanup(self.cleanup)

	def cleanup(self):
		frappe.db.rollback()
		frappe.db.delete(content_files.DOCTYPE, {"path": ["like", f"{self.prefix}%"]})
		frappe.db.commit()

	def path(self, name: str = "u") -> str:
		return f"{self.prefix}-{name}.json"

	def row(self, path: str) -> frappe._dict | None:
		return frappe.db.get_value(content_files.DOCTYPE, content_files.row_name(path), "*", as_dict=True)

	def delivery(self, path: str) -> delivery_hash.Delivery | None:
		return delivery_hash.read([path]).deliveries[0]

	def claimed(self, path: str) -> frappe._dict:
		"""The row as the drain claims it (Pending and due → Syncing)."""
		rows = content_files.claim([self.row(path)], now_datetime())
		self.assertEqual([row.path for row in rows], [path])
		return rows[0]

	def synced(self, path: str, data: bytes) -> None:
		"""A new path written and its upload landed: Written and Synced."""
		content_files.record_write(written(path, data), None, None)
		row = self.claimed(path)
		outcomes, _ = content_files.finish(
			[row], {path: (row.sha256, None)}, now_datetime(), lambda *a: False
		)
		self.assertEqual(outcomes, {row.name: "synced"})

	def test_write_queues_an_upload_and_marks_the_path_local(self):
		path = self.path()
		left = content_files.record_write(written(path, b"v1"), "User", "Guest", parent_path="plans/p.json")
		self.assertFalse(left)  # it was never on the CDN
		row = self.row(path)
		self.assertEqual(
			(row.local_status, row.sync_status, row.sync_operation, row.attempts, row.parent_path),
			("Written", "Pending", "Upload", 0, "plans/p.json"),
		)
		self.assertEqual(self.delivery(path), (False, canonical.sha256(b"v1")))

	def test_claim_then_mark_synced(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		row = self.claimed(path)
		self.assertEqual(self.row(path).sync_status, "Syncing")
		self.assertTrue(row.sync_claim)
		outcomes, repaired = content_files.finish(
			[row], {path: (row.sha256, None)}, now_datetime(), lambda *a: False
		)
		self.assertEqual((outcomes, repaired), ({row.name: "synced"}, {}))
		now = self.row(path)
		self.assertEqual((now.sync_status, now.synced_sha256, now.sync_claim), ("Synced", now.sha256, None))
		self.assertTrue(
			content_files.is_on_cdn(now.sync_status, now.sha256, now.synced_sha256, now.local_status)
		)

	def test_a_row_not_due_is_not_claimed(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		frappe.db.set_value(
			content_files.DOCTYPE,
			content_files.row_name(path),
			"next_attempt_at",
			add_to_date(None, minutes=5),
		)
		self.assertEqual(content_files.claim([self.row(path)], now_datetime()), [])
		self.assertEqual(self.row(path).sync_status, "Pending")
		self.assertNotIn(path, [row.path for row in content_files.due(now_datetime(), 1000)])

	def test_an_unchanged_write_keeps_the_schedule_of_a_waiting_upload(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		later = add_to_date(None, minutes=2)
		frappe.db.set_value(
			content_files.DOCTYPE, content_files.row_name(path), {"next_attempt_at": later, "attempts": 3}
		)
		content_files.record_write(written(path, b"v1", changed=False), None, None)
		self.assertEqual(self.row(path).attempts, 3)  # refused: the same version keeps its backoff
		content_files.record_write(written(path, b"v2"), None, None)
		self.assertEqual(self.row(path).attempts, 0)  # a new version starts afresh

	def test_a_write_while_syncing_requeues_when_the_drain_finishes(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		row = self.claimed(path)
		content_files.record_write(written(path, b"v2"), None, None)
		self.assertEqual(self.row(path).sync_status, "Syncing")  # the claim stays with the drain
		outcomes, _ = content_files.finish(
			[row], {path: (row.sha256, None)}, now_datetime(), lambda *a: False
		)
		self.assertEqual(outcomes, {row.name: "requeued"})
		now = self.row(path)
		self.assertEqual(
			(now.sync_status, now.sha256, now.sync_claim), ("Pending", canonical.sha256(b"v2"), None)
		)

	def test_repair_when_the_file_holds_what_was_sent(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		row = self.claimed(path)
		sent = canonical.sha256(b"what the file holds")
		outcomes, repaired = content_files.finish(
			[row], {path: (sent, None)}, now_datetime(), lambda p, sha: (p, sha) == (path, sent)
		)
		self.assertEqual((outcomes, repaired), ({row.name: "synced"}, {path: row.sha256}))
		now = self.row(path)
		self.assertEqual((now.sync_status, now.sha256, now.synced_sha256), ("Synced", sent, sent))

	def test_record_error_backs_off_then_fails(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		row = self.claimed(path)
		now = now_datetime()
		outcomes, _ = content_files.finish([row], {path: (None, RuntimeError("503"))}, now, lambda *a: False)
		self.assertEqual(outcomes, {row.name: "retry"})
		after = self.row(path)
		self.assertEqual((after.sync_status, after.attempts, after.last_error), ("Pending", 1, "503"))
		self.assertEqual(after.next_attempt_at, now + datetime.timedelta(seconds=30))
		# An hour of failures later, the retries are exhausted.
		frappe.db.set_value(
			content_files.DOCTYPE,
			row.name,
			{"first_failure_at": add_to_date(now, hours=-2), "next_attempt_at": now},
		)
		row = self.claimed(path)
		outcomes, _ = content_files.finish([row], {path: (None, RuntimeError("503"))}, now, lambda *a: False)
		self.assertEqual(outcomes, {row.name: "failed"})
		self.assertEqual(self.row(path).sync_status, "Failed")
		self.assertIn(row.name, [r.name for r in content_files.failed_unalerted()])
		content_files.mark_alerted([row.name])
		self.assertNotIn(row.name, [r.name for r in content_files.failed_unalerted()])
		self.assertEqual(content_files.retry([row.name, "no-such-row"]), 1)
		after = self.row(path)
		self.assertEqual((after.sync_status, after.attempts, after.failure_alerted), ("Pending", 0, 0))

	def test_a_claim_freed_and_taken_anew_is_not_finished_by_the_old_drain(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		old = self.claimed(path)
		content_files.release(old.sync_claim)
		self.assertEqual(self.row(path).sync_status, "Pending")
		new = self.claimed(path)
		self.assertNotEqual(new.sync_claim, old.sync_claim)
		outcomes, _ = content_files.finish(
			[old], {path: (old.sha256, None)}, now_datetime(), lambda *a: False
		)
		self.assertEqual(outcomes, {old.name: "requeued"})
		self.assertEqual((self.row(path).sync_status, self.row(path).sync_claim), ("Syncing", new.sync_claim))

	def expire(self, path: str) -> None:
		"""As if the lease of the row's claim was last renewed longer ago than a lease lasts."""
		frappe.db.set_value(
			content_files.DOCTYPE,
			content_files.row_name(path),
			"modified",
			add_to_date(None, seconds=-content_files.LEASE_SECONDS - 1),
			update_modified=False,
		)

	def test_free_stuck_frees_only_expired_leases_and_marks_them_as_maybe_stored(self):
		old, recent = self.path("old"), self.path("recent")
		for path in (old, recent):
			content_files.record_write(written(path, path.encode()), None, None)
			self.claimed(path)
		self.expire(old)
		content_files.free_stuck()
		freed = self.row(old)
		self.assertEqual((freed.sync_status, freed.attempts), ("Pending", 0))  # a crash is no failure
		self.assertEqual(self.row(recent).sync_status, "Syncing")
		due = [row for row in content_files.due(now_datetime(), 1_000_000) if row.path == old]
		self.assertEqual(content_files.may_be_stored(due), {old})
		again = self.claimed(old)
		outcomes, _ = content_files.finish(
			[again], {old: (again.sha256, None)}, now_datetime(), lambda *a: False
		)
		self.assertEqual(outcomes, {again.name: "synced"})
		self.assertEqual((self.row(old).sync_status, self.row(old).sync_claim), ("Synced", None))

	def test_renew_keeps_a_live_drains_lease(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		row = self.claimed(path)
		self.expire(path)
		content_files.renew(row.sync_claim)
		content_files.free_stuck()
		self.assertEqual((self.row(path).sync_status, self.row(path).sync_claim), ("Syncing", row.sync_claim))

	def test_removal_queues_a_delete_and_its_finish_removes_the_row(self):
		path = self.path()
		self.synced(path, b"v1")
		content_files.record_removal(path, is_folder=False)
		row = self.row(path)
		self.assertEqual(
			(row.local_status, row.sync_status, row.sync_operation), ("Deleted", "Pending", "Delete")
		)
		self.assertEqual(self.delivery(path), (False, None))
		claimed = self.claimed(path)
		outcomes, _ = content_files.finish([claimed], {path: (None, None)}, now_datetime(), lambda *a: False)
		self.assertEqual(outcomes, {claimed.name: "synced"})
		self.assertIsNone(self.row(path))

	def test_local_failures(self):
		path = self.path()
		error = FileOperationError("write", path, OSError(28, "No space left on device"))
		content_files.record_failure(path, "User", "Guest", error)
		row = self.row(path)
		self.assertEqual((row.local_status, row.reference_name), ("Pending", "Guest"))
		self.assertIn(path, content_files.pending_write_errors())
		content_files.record_render_failure(path, "User", "Guest", ValueError("bad serialiser"))
		self.assertEqual(
			(self.row(path).local_status, self.row(path).local_error), ("Failed", "bad serialiser")
		)
		content_files.record_write(written(path, b"v1"), "User", "Guest")
		self.assertEqual(self.row(path).local_status, "Written")

	def test_resume_waiting_gives_a_fresh_schedule(self):
		path = self.path()
		content_files.record_write(written(path, b"v1"), None, None)
		frappe.db.set_value(
			content_files.DOCTYPE,
			content_files.row_name(path),
			{
				"attempts": 4,
				"first_failure_at": add_to_date(None, minutes=-30),
				"next_attempt_at": add_to_date(None, minutes=10),
			},
		)
		now = now_datetime()
		content_files.resume_waiting(now)
		row = self.row(path)
		self.assertEqual((row.attempts, row.first_failure_at, row.next_attempt_at), (0, None, now))

	def test_relinked_rows_are_synced_only_at_the_cdn_version(self):
		back, away, moved, sending = (self.path(n) for n in ("back", "away", "moved", "sending"))
		for path in (back, away, moved, sending):
			self.synced(path, b"cdn " + path.encode())
		self.claimed_after_write(sending, b"new " + sending.encode())
		# `back` was edited locally (Pending), and a relink brings its bytes back to the CDN's version.
		content_files.record_write(written(back, b"local edit"), None, None)
		rows = {row.path: row for row in content_files.relinkable() if row.path.startswith(self.prefix)}
		now = now_datetime()
		update = lambda path, data, old=None: {  # noqa: E731
			"name": rows[path].name,
			"old": old or rows[path].sha256,
			"sha256": canonical.sha256(data),
			"size": len(data),
			"now": now,
		}
		content_files.record_relinked(
			[
				update(back, b"cdn " + back.encode()),
				update(away, b"relinked " + away.encode()),
				update(moved, b"relinked " + moved.encode(), old="0" * 64),  # changed since it was read
				update(sending, b"relinked " + sending.encode()),
			]
		)
		self.assertEqual(self.row(back).sync_status, "Synced")
		self.assertEqual((self.row(away).sync_status, self.row(away).next_attempt_at), ("Pending", now))
		self.assertEqual(self.row(moved).sha256, canonical.sha256(b"cdn " + moved.encode()))  # refused
		self.assertEqual(self.row(sending).sync_status, "Syncing")  # the drain keeps its claim

	def claimed_after_write(self, path: str, data: bytes) -> None:
		content_files.record_write(written(path, data), None, None)
		self.claimed(path)

	def test_the_delivery_hash_is_rebuilt_from_the_rows(self):
		on_cdn, local = self.path("on"), self.path("local")
		self.synced(on_cdn, b"v1")
		content_files.record_write(written(local, b"v1"), None, None)
		frappe.db.commit()
		delivery_hash.forget([on_cdn, local])
		self.assertGreaterEqual(content_files.rebuild_delivery_hash(), 2)
		self.assertEqual(self.delivery(on_cdn), (True, canonical.sha256(b"v1")))
		self.assertEqual(self.delivery(local), (False, canonical.sha256(b"v1")))
		self.assertEqual(
			content_files.delivery_states([on_cdn, local, self.path("none")]),
			[self.delivery(on_cdn), self.delivery(local), None],
		)
