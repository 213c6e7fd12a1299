"""Automatic failover on a real site: a real worker and a scheduler process, the CDN a moto bucket
behind a fault proxy that goes down and comes back with nobody touching the settings, and the
student's walk from the API's manifest URL through every link (memora_storage/tests/student.py).
"""

import time
import unittest

import frappe

from memora_storage import api, content_files, failover, reports, uploads, verification
from memora_storage.tests.student import PREFIX, PublishingTestCase
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	S3_SKIP_REASON,
	ensure_outgoing_email_account,
	s3_client,
	start_scheduler,
	start_worker,
	stop,
)

INTERVAL = 5  # seconds between probes (CDN Settings' minimum)
RELINK_ALLOWANCE = 20  # seconds for a forked job to start and re-link a small tree, with margin


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
class TestFailover(PublishingTestCase):
	def setUp(self) -> None:
		super().setUp()
		ensure_outgoing_email_account()
		self.configure(INTERVAL)
		failover.reset("test")
		frappe.db.commit()
		self.since = frappe.utils.now_datetime()

	def configure(self, interval: int, **values) -> None:
		"""CDN Settings as an administrator saves them, automatic failover on."""
		self.use(
			self.proxy.url,
			auto_failover=1,
			probe_interval=interval,
			failover_after=2,
			recover_after=3,
			**values,
		)

	def start(self) -> None:
		"""A worker and the scheduler, as production runs them; stopped at the end of the test."""
		worker, scheduler = start_worker(), start_scheduler()
		self.addCleanup(stop, worker)
		self.addCleanup(stop, scheduler)

	def try_walk(self, plan: str) -> dict[str, str] | None:
		"""The walk, or None where a GET failed (what a student's app meets before the outage is seen)."""
		try:
			return self.walk(plan)
		except (AssertionError, OSError) as e:
			self.last_failure = str(e)[:300]
			return None

	def wait_walk(self, plan: str, where: str, timeout: float) -> float:
		"""Seconds until the start of a walk that then succeeds wholly with every file served from
		`where` ('cdn' or 'local'): a walk of a thousand files takes seconds of its own."""
		started = time.monotonic()
		self.last_failure = ""
		while time.monotonic() - started < timeout:
			frappe.db.rollback()  # see the worker's commits
			walk_started = time.monotonic()
			seen = self.try_walk(plan)
			if seen and set(seen.values()) == {where}:
				self.walk_seconds = time.monotonic() - walk_started
				return walk_started - started
			time.sleep(0.5)
		self.fail(
			f"no walk served wholly from {where} within {timeout:g} s; last failure: {self.last_failure}"
		)

	def state(self) -> str:
		frappe.db.rollback()
		return frappe.db.get_single_value("CDN Health", "state", cache=False)

	def wait_state(self, state: str, timeout: float) -> None:
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if self.state() == state:
				return
			time.sleep(0.3)
		self.fail(f"CDN Health did not become {state} within {timeout:g} s")

	def probes(self) -> list[frappe._dict]:
		frappe.db.rollback()
		return frappe.get_all(
			"CDN Probe",
			filters={"probed_at": [">=", self.since]},
			fields=["probed_at", "outcome", "source"],
			order_by="probed_at asc, creation asc",
		)

	def notices(self, expected: int | None = None, timeout: float = 30) -> list[str]:
		"""The Administrator's failover notices since the test began (a job creates them: waited for)."""
		deadline = time.monotonic() + timeout
		while True:
			frappe.db.rollback()
			subjects = frappe.get_all(
				"Notification Log",
				filters={
					"creation": [">=", self.since],
					"for_user": "Administrator",
					"subject": ["like", "%Memora Storage: the CDN is%"],
				},
				pluck="subject",
				order_by="creation asc",
			)
			if expected is None or len(subjects) >= expected or time.monotonic() > deadline:
				return subjects
			time.sleep(0.3)

	def emails(self) -> int:
		frappe.db.rollback()
		return frappe.db.count(
			"Email Queue",
			{"creation": [">=", self.since], "message": ["like", "%Memora Storage: the CDN is%"]},
		)

	def test_an_outage_nobody_touches_is_survived_and_the_cdn_returns_by_itself(self):
		plan, _subjects, units = self.tree(subjects=2, units=3)
		self.drain()
		self.assertEqual(set(self.walk(plan).values()), {"cdn"})
		self.start()
		self.wait_for_probe("Healthy")  # the canary is in place and the edge serves it

		self.proxy.stop()  # the endpoint goes down; nobody touches CDN Settings
		local_after = self.wait_walk(plan, "local", 2 * INTERVAL + RELINK_ALLOWANCE)
		self.assertEqual(self.state(), "Down")
		self.assertEqual(api.get_content_url(f"units/{units[0]}.json")[: len(self.base)], self.base)
		failed = [probe for probe in self.probes() if probe.outcome == "Failed"]
		self.assertGreaterEqual(len(failed), 2)
		self.assertEqual(
			self.notices(1), ["Memora Storage: the CDN is down, content is served from this server"]
		)
		# The edit made during the outage is served at once, locally, with every link reachable.
		self.edit(frappe.get_doc("Unit", units[0]), body="edited during the outage")
		self.assertEqual(set(self.walk(plan).values()), {"local"})
		due = content_files.row_name(f"units/{units[0]}.json")
		self.assertEqual(frappe.db.get_value("Content File", due, "sync_status"), "Pending")
		self.assertEqual(uploads.waiting(), "the CDN is down (health probe)")

		self.proxy.start()  # back, still untouched
		cdn_after = self.wait_walk(plan, "cdn", 3 * INTERVAL + RELINK_ALLOWANCE + 30)
		self.assertEqual(self.state(), "Healthy")
		self.assertEqual(
			self.notices(2),
			[
				"Memora Storage: the CDN is down, content is served from this server",
				"Memora Storage: the CDN is back, content is served from it again",
			],
		)
		self.assertEqual(self.emails(), 2)  # one email per change, to the System Managers
		row = frappe.db.get_value("Content File", due, ["sync_status", "attempts"], as_dict=True)
		self.assertEqual((row.sync_status, row.attempts), ("Synced", 0))
		self.assertFalse(frappe.db.exists("Content File", {"sync_status": "Failed"}))
		print(
			f"\nfailover: local walk {local_after:.1f} s after the outage, CDN walk {cdn_after:.1f} s after"
		)

	def wait_for_probe(self, outcome: str, timeout: float = 3 * INTERVAL + 20) -> None:
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if any(probe.outcome == outcome for probe in self.probes()):
				return
			time.sleep(0.3)
		self.fail(f"no {outcome} probe within {timeout:g} s")

	def test_local_fallback_mode_during_recovery_keeps_delivery_local(self):
		plan, _subjects, _units = self.tree(subjects=1, units=2)
		self.drain()
		self.start()
		self.wait_for_probe("Healthy")
		self.proxy.stop()
		self.wait_walk(plan, "local", 2 * INTERVAL + RELINK_ALLOWANCE)
		self.proxy.start()
		self.since = frappe.utils.now_datetime()
		self.wait_for_probe("Healthy")  # recovering: one healthy probe of the three
		self.configure(INTERVAL, local_fallback_mode=1)  # the administrator's word, mid-recovery
		self.assertEqual(self.state(), "Down")  # the same CDN: its verdict is kept
		self.wait_state("Healthy", 4 * INTERVAL + 20)
		time.sleep(2 * INTERVAL)  # the relink a recovery asks for would have run by now
		self.assertEqual(set(self.walk(plan).values()), {"local"})
		self.assertIn(
			f"{self.base}/files/memora_content/", api.get_content_url(f"plans/{plan}/manifest.json")
		)
		self.assertEqual(
			self.notices(1),
			["Memora Storage: the CDN is back; Local Fallback Mode keeps content on this server"],
		)
		self.assertEqual(uploads.waiting(), "Local Fallback Mode is on")
		self.configure(INTERVAL, local_fallback_mode=0)
		self.wait_walk(plan, "cdn", RELINK_ALLOWANCE + 30)

	def test_flapping_for_five_minutes_changes_state_only_as_the_thresholds_allow(self):
		"""Up and down every 30 s: two failed probes 20 s apart fit in a down phase, three healthy ones
		(40 s) never fit in an up phase, so delivery goes local once and stays there until it settles."""
		self.configure(20)
		plan, _subjects, _units = self.tree(subjects=1, units=2)
		self.drain()
		self.start()
		self.align_with_probes(20)
		walks, failed_after_detection, detected_at, down = 0, [], None, False
		started = time.monotonic()
		while time.monotonic() - started < 300:
			phase_down = int((time.monotonic() - started) // 30) % 2 == 0
			if phase_down != down:
				self.proxy.stop() if phase_down else self.proxy.start()
				down = phase_down
			frappe.db.rollback()
			seen = self.try_walk(plan)
			if detected_at is None and seen and set(seen.values()) == {"local"}:
				detected_at = time.monotonic() - started
			elif detected_at is not None:
				walks += 1
				if seen is None:
					failed_after_detection.append(self.last_failure)
			time.sleep(1)
		if down:
			self.proxy.start()
		self.assertIsNotNone(detected_at, "the flapping endpoint was never taken for down")
		self.assertEqual(failed_after_detection, [], f"{walks} walks after detection")
		self.assertGreater(walks, 100)
		self.assertEqual(
			self.notices(1), ["Memora Storage: the CDN is down, content is served from this server"]
		)
		self.assert_streaks(self.probes(), changes=1)
		self.wait_walk(plan, "cdn", 4 * 20 + RELINK_ALLOWANCE + 30)  # settled: back by itself
		self.assertEqual(len(self.notices(2)), 2)
		self.assert_streaks(self.probes(), changes=2)

	def align_with_probes(self, interval: int) -> None:
		"""Wait until 12 s after a probe, so the first 30 s down phase holds the next two probes (about
		nine tenths of `interval` apart) with room on both sides. The probes run on the scheduler's clock, not
		the test's: left to chance, a steady probe rhythm can keep every pair of failed probes from
		sharing a down phase for the whole five minutes."""
		seen = len(self.probes())
		deadline = time.monotonic() + 3 * interval
		while len(self.probes()) == seen:
			self.assertLess(time.monotonic(), deadline, f"no probe within {3 * interval} s")
			time.sleep(0.2)
		time.sleep(12)

	def assert_streaks(self, probes: list[frappe._dict], changes: int) -> None:
		"""Replaying the probes through the thresholds gives exactly the changes CDN Health made."""
		state, failed, healthy, replayed = "Healthy", 0, 0, 0
		for probe in probes:
			ok = probe.outcome == "Healthy"
			failed, healthy = (0, healthy + 1) if ok else (failed + 1, 0)
			if state == "Healthy" and failed >= 2:
				state, replayed = "Down", replayed + 1
			elif state == "Down" and healthy >= 3:
				state, replayed = "Healthy", replayed + 1
		self.assertEqual(replayed, changes)
		self.assertEqual(state, self.state())

	def thousand_files(self) -> tuple[str, list[str]]:
		"""One plan, 10 subjects of 99 units: 1,001 files saved through documents; (plan, units)."""
		plan = self.make("Plan", f"plan-{self.tag}", commit=False).name
		units = []
		for s in range(10):
			subject = self.make("Subject", f"subject-{self.tag}-{s}", commit=False, plan=plan).name
			for u in range(99):
				name = f"unit-{self.tag}-{s}-{u}"
				units.append(self.make("Unit", name, commit=False, subject=subject, body=f"b {name}").name)
			frappe.db.commit()
		return plan, units

	def test_a_cycle_uploads_only_what_changed(self):
		"""1,000 files, 10 units edited and one deleted during the outage: every request through the
		proxy is counted from the outage to the end of the recovery."""
		plan, units = self.thousand_files()
		self.assertEqual(frappe.db.count("Content File", {"path": ["like", f"%{self.tag}%"]}), 1001)
		self.start()
		self.wait_quiet(timeout=300)
		self.wait_for_probe("Healthy")
		self.assertEqual(set(self.walk(plan).values()), {"cdn"})

		self.proxy.stop()
		self.wait_walk(plan, "local", 2 * INTERVAL + RELINK_ALLOWANCE)
		self.proxy.forwarded.clear()
		edited = units[::100][:10]  # one unit in each subject
		for name in edited:
			self.edit(frappe.get_doc("Unit", name), body="edited during the outage")
		gone = units[1]
		frappe.delete_doc("Unit", gone)
		frappe.db.commit()
		self.proxy.start()
		self.wait_walk(plan, "cdn", 3 * INTERVAL + RELINK_ALLOWANCE + 60)
		self.wait_quiet(timeout=120)

		parents = {frappe.db.get_value("Unit", name, "subject") for name in edited}
		# The edited units, the subjects listing them, the manifest: nothing whose only change was its links.
		self.assertLessEqual(self.proxy.forwarded["PUT"], len(edited) + len(parents) + 1)
		self.assertEqual(self.proxy.forwarded["POST"], 1)  # the delete made during the outage, one batch
		listing = s3_client().list_objects_v2(Bucket=self.bucket, Prefix=f"{PREFIX}/units/", MaxKeys=2000)
		self.assertNotIn(f"{PREFIX}/units/{gone}.json", {item["Key"] for item in listing["Contents"]})
		report = verification.verify()
		mine = [p for p in reports.report_problems(report) if self.tag in p.path]
		self.assertEqual(mine, [], report.summary)
		for row in frappe.get_all(
			"Content File",
			filters={"path": ["like", f"%{self.tag}%"]},
			fields=["path", "sync_status", "sha256", "synced_sha256"],
		):
			self.assertEqual((row.sync_status, row.synced_sha256), ("Synced", row.sha256), row.path)
		print(f"\ncycle requests through the proxy: {dict(self.proxy.forwarded)}")
