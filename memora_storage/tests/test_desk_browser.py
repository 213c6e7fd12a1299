"""Desk in a real browser: headless Chromium (selenium) against this site's dev server, a real bench
worker and the bench's realtime server, as an administrator would use them.

Background jobs report progress and their end through the realtime server (apps/frappe/socketio.js):
the test uses the one listening on the port common_site_config names, or starts it there, serves the
site under its own name (the realtime server tells sites apart by host name) with DEV_SERVER set, as
`bench start` does, so Desk connects to it, and records the `progress` and `msgprint` events the page
receives. Each page is saved as a screenshot in docs/screenshots/ (MEMORA_SCREENSHOT_DIR overrides), the
workspace and CDN Settings whole, and each test asserts the exact cards, shortcuts or fields its page
shows: a page that gains, loses or reorders one fails here, not silently in the screenshots.

Needs selenium in the bench's environment, Chromium and chromedriver (MEMORA_CHROMIUM and
MEMORA_CHROMEDRIVER name others), node, the site's name resolving to this machine, and the S3
endpoint of `run-tests` (MEMORA_TEST_S3_ENDPOINT); skipped with the reason otherwise.
"""

import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock
from urllib.parse import quote

import frappe
import requests
from frappe.utils.password import update_password

from memora_storage import api, content_files, disk_guard, publishing, reports, uploads
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	S3_KEYS,
	S3_SKIP_REASON,
	ContentTestCase,
	s3_client,
	start_dev_server,
	start_worker,
	stop,
	use_endpoint,
)
from memora_storage.utils.paths import file_path

CHROMIUM = os.environ.get("MEMORA_CHROMIUM") or shutil.which("chromium") or shutil.which("google-chrome")
CHROMEDRIVER = os.environ.get("MEMORA_CHROMEDRIVER") or shutil.which("chromedriver")
NODE = shutil.which("node")
CHROMIUM_ARGS = (
	"--headless",
	"--no-sandbox",  # root, and containers without user namespaces
	"--disable-gpu",
	"--disable-quic",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	"--window-size=1440,1000",
)
SCREENSHOTS = Path(
	os.environ.get("MEMORA_SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "docs" / "screenshots"
)
# What the pages must show, in order.
WORKSPACE = {
	"number cards": [
		"CDN Sync Pending",
		"CDN Sync Failed",
		"Content Writes Pending",
		"Last Health Scan Problems",
		"Content Disk Free",
		"CDN Uploads Waiting",
		"CDN Probes Failed (Last Hour)",
		"Minutes Since the Scheduler Ran",
	],
	"charts": ["Content Files by Sync Status"],
	"quick lists": ["CDN Probe"],
	"shortcuts": ["CDN Settings", "Content File", "Content Health Report", "CDN Probe"],
	"link cards": ["Storage", "Custom Documents"],  # the test's Plan, Subject and Unit are custom DocTypes
}
# CDN Settings' sections and the fields each shows, with the CDN off (the tests' settings) ...
CDN_SETTINGS_OFF = [
	("Serving", ["Enable CDN", "Local Fallback Mode", "Local Domain", "URLs Now Point To"]),
	("CDN Health and Failover", ["Delivery Now", "Latest Probes"]),
	(
		"Caching and CORS",
		[
			"Version in CDN URLs",
			"Cache-Control of Files Listing Others",
			"Cache-Control of Versioned Leaf Files",
			"CORS Allowed Origins",
		],
	),
	("CDN Purge", ["CDN Purge"]),
	(
		"S3-Compatible Bucket",
		[
			"Endpoint URL",
			"Bucket",
			"Region",
			"Key Prefix",
			"Access Key ID",
			"Secret Access Key",
			"Deletion Brake (Objects)",
		],
	),
	("Local Storage", ["Minimum Free Disk (%)"]),
	("Health Checks", ["Regenerate Missing Files", "Hourly Scans From (Hour)", "Hourly Scans Until (Hour)"]),
]
# ... and on, with Switch to Local Automatically off (its thresholds then hidden).
CDN_SETTINGS_ON = [
	(
		"Serving",
		["Enable CDN", "CDN Base URL", "Local Fallback Mode", "Local Domain", "URLs Now Point To"],
	),
	(
		"CDN Health and Failover",
		["Switch to Local Automatically", "Probe Every (Seconds)", "Delivery Now", "Latest Probes"],
	),
	*CDN_SETTINGS_OFF[2:],
]
SCREENSHOT_MAX_HEIGHT = 3000  # a whole page, in CSS pixels
USER = "memora-desk@example.com"  # a System Manager of the test's own, with a password it sets
WAIT_S = 90  # a job: worker fork, site init, the work, the realtime hop
CONNECTED = "return !!(window.frappe && frappe.session && frappe.session.user === arguments[0] && frappe.realtime.socket && frappe.realtime.socket.connected)"
# What the realtime server delivered to the page, besides Desk's own handling of it.
RECORDER = """
if (!window.__memora) {
	window.__memora = { progress: [], msgprint: [], ping: [] };
	for (const event of ["progress", "msgprint"]) {
		frappe.realtime.on(event, (data) => window.__memora[event].push(data));
	}
	frappe.realtime.on("memora_test_ping", (data) => window.__memora.ping.push(data));
	frappe.realtime.socket.on("connect", () => (window.__memora.connects = (window.__memora.connects || 0) + 1));
}
"""


def skip_reason() -> str | None:
	"""Why this machine cannot run the browser tests, or None."""
	if importlib.util.find_spec("selenium") is None:
		return "selenium is not installed in the bench's environment (pip install selenium)"
	if not (CHROMIUM and os.path.exists(CHROMIUM)):
		return "Chromium not found (install chromium, or set MEMORA_CHROMIUM)"
	if not (CHROMEDRIVER and os.path.exists(CHROMEDRIVER)):
		return "chromedriver not found (install chromium-driver, or set MEMORA_CHROMEDRIVER)"
	if not NODE:
		return "node not found: the realtime server (apps/frappe/socketio.js) cannot run"
	if not S3_ENDPOINT:
		return S3_SKIP_REASON
	if not getattr(frappe.local, "site", None):
		return "no site: run through bench run-tests"
	try:
		if not socket.gethostbyname(frappe.local.site).startswith("127."):
			return f"{frappe.local.site} does not resolve to this machine (add it to /etc/hosts)"
	except OSError:
		return f"{frappe.local.site} does not resolve (add '127.0.0.1 {frappe.local.site}' to /etc/hosts)"
	return None


def realtime_answers(port: int) -> bool:
	try:
		response = requests.get(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling", timeout=2)
	except requests.ConnectionError:
		return False
	return response.ok and response.text.startswith("0")


def start_realtime() -> subprocess.Popen | None:
	"""The bench's realtime server on its configured port; None when one already answers there."""
	port = frappe.conf.socketio_port or 9000
	if realtime_answers(port):
		return None
	bench = os.path.dirname(os.path.abspath(frappe.local.sites_path))
	process = subprocess.Popen(
		[NODE, os.path.join("apps", "frappe", "socketio.js")],
		cwd=bench,
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	deadline = time.monotonic() + 30
	while not realtime_answers(port):
		if time.monotonic() > deadline or process.poll() is not None:
			stop(process)
			raise RuntimeError(f"the realtime server did not start on port {port}")
		time.sleep(0.3)
	return process


def desk_user() -> str:
	"""The test's System Manager, with a fresh password (the site's Administrator password is its own)."""
	if not frappe.db.exists("User", USER):
		frappe.get_doc(
			{
				"doctype": "User",
				"email": USER,
				"first_name": "Desk",
				"last_name": "Tester",
				"send_welcome_email": 0,
				"roles": [{"role": "System Manager"}],
			}
		).insert(ignore_permissions=True)
	password = frappe.generate_hash()
	update_password(USER, password)
	frappe.db.commit()
	return password


BROWSER_SKIP = skip_reason()


@unittest.skipIf(BROWSER_SKIP, BROWSER_SKIP or "")
class TestDeskInBrowser(ContentTestCase):
	@classmethod
	def setUpClass(cls) -> None:
		from selenium import webdriver
		from selenium.webdriver.chrome.service import Service

		super().setUpClass()
		password = desk_user()
		cls.realtime_server = start_realtime()
		cls.worker = start_worker()
		with mock.patch.dict(os.environ, {"DEV_SERVER": "1"}):  # Desk then dials the realtime port
			cls.server, base = start_dev_server()
		cls.base = base.replace("127.0.0.1", frappe.local.site)
		options = webdriver.ChromeOptions()
		options.binary_location = CHROMIUM
		for arg in CHROMIUM_ARGS:
			options.add_argument(arg)
		cls.profile = tempfile.mkdtemp(prefix="memora-chromium-")
		options.add_argument(f"--user-data-dir={cls.profile}")
		cls.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
		cls.log_in(password)

	@classmethod
	def tearDownClass(cls) -> None:
		cls.driver.quit()
		shutil.rmtree(cls.profile, ignore_errors=True)
		for process in (cls.server, cls.worker, cls.realtime_server):
			if process:
				stop(process)
		super().tearDownClass()

	@classmethod
	def log_in(cls, password: str) -> None:
		from selenium.webdriver.common.by import By

		cls.driver.get(f"{cls.base}/login")
		cls.driver.find_element(By.ID, "login_email").send_keys(USER)
		cls.driver.find_element(By.ID, "login_password").send_keys(password)
		cls.driver.find_element(By.CSS_SELECTOR, ".btn-login").click()
		deadline = time.monotonic() + 30
		while not cls.driver.execute_script(CONNECTED, USER):
			if time.monotonic() > deadline:
				raise AssertionError(
					f"no Desk with a realtime connection after login: {cls.driver.current_url}"
				)
			time.sleep(0.2)
		# From here on the test moves through Desk without reloading it, as a user does: one
		# connection, so no event is lost to socket.io dropping the site's namespace between two pages.
		cls.driver.execute_script(RECORDER)
		deadline = time.monotonic() + 30
		while not cls.driver.execute_script("return window.__memora.ping.length"):
			frappe.publish_realtime("memora_test_ping", {}, user=USER)
			if time.monotonic() > deadline:
				raise AssertionError("the realtime server delivers nothing to the page")
			time.sleep(0.5)

	def setUp(self) -> None:
		super().setUp()
		self.bucket = f"memora-desk-{self.tag.lower()}"
		s3_client().create_bucket(Bucket=self.bucket)
		self.wait_for_jobs()  # a relink the last test's settings queued would rewrite this test's rows
		frappe.db.delete(content_files.DOCTYPE)  # the list and the cards show this test's rows only
		frappe.db.commit()
		# What the last test's jobs told the page is not this test's: no alerts left, none recorded.
		self.js(
			"$('#alert-container').empty(); for (const kind of ['progress', 'msgprint']) window.__memora[kind] = [];"
		)

	# The pages ------------------------------------------------------------------------------------

	def test_cdn_settings_validation_connection_and_where_urls_point(self):
		self.open("Form", "CDN Settings")
		self.assert_intro("http://memora.local/files/memora_content", "orange")
		self.assertEqual(self.sections(), CDN_SETTINGS_OFF)
		# What an administrator reads before turning Local Fallback Mode on (issue 15: uploads wait).
		self.assertIn("Uploads wait meanwhile", self.help_text("local_fallback_mode"))

		# Enable CDN makes the base URL and the bucket mandatory: Desk names both before any request.
		self.field("enable_cdn").click()
		self.save()
		_title, body, _indicator = self.assert_dialog("Missing Fields", indicator="red")
		self.assertIn("CDN Base URL", body)
		self.assertIn("Bucket", body)
		self.screenshot("desk-cdn-settings-validation")
		self.close_dialog()
		self.type("cdn_base_url", "https://cdn.example.com")
		self.save()
		_title, body, _indicator = self.assert_dialog("Missing Fields", indicator="red")
		self.assertIn("Bucket", body)
		self.assertNotIn("CDN Base URL", body)
		self.close_dialog()

		self.type("endpoint_url", S3_ENDPOINT)
		self.type("bucket", self.bucket)
		self.type("access_key_id", S3_KEYS["access_key_id"])
		self.type("secret_access_key", S3_KEYS["secret_access_key"])
		# A key is not a password someone chose: no strength meter, once Desk's debounce (500 ms) is over.
		time.sleep(1)
		self.assertFalse(
			self.js(
				"return $(\".frappe-control[data-fieldname='secret_access_key'] .password-strength-indicator\")"
				".filter(':visible').length"
			),
			"a password strength meter shows on Secret Access Key",
		)
		self.save()
		self.wait(lambda: not self.js("return cur_frm.is_dirty()"), "the settings were not saved")
		self.assert_intro("https://cdn.example.com", "blue")
		self.assert_soon(self.sections, CDN_SETTINGS_ON)
		frappe.db.rollback()  # see the browser's save, not this transaction's snapshot
		self.assertEqual(frappe.db.get_single_value("CDN Settings", "bucket", cache=False), self.bucket)
		# The base URL changed, so every file is re-linked by a job; CDN Settings hears of its end.
		self.wait_realtime("msgprint", "files re-linked")
		self.screenshot("desk-cdn-settings", whole=True)

		self.click("Test Connection", group="CDN")
		self.assert_dialog("Connection works", indicator="green")
		steps = self.js(
			"""return $('.modal.show tr[data-step]').map((i, row) => [[
				row.dataset.step, $(row).find('td').eq(0).text(), $(row).find('td').eq(1).text()
			]]).get()"""
		)
		self.assertEqual([step[0] for step in steps], ["write", "read", "list", "delete", "cors"])
		self.assertEqual(steps[0][1], "Write a probe object")
		self.assertEqual({step[2] for step in steps[:4]}, {"✔"})
		self.assertEqual(steps[4][2], "⚠")  # no CORS rule on the bucket yet: a warning, the connection works
		self.screenshot("desk-cdn-settings-test-connection")
		self.close_dialog()

		self.field("local_fallback_mode").click()
		self.save()
		self.assert_intro("http://memora.local/files/memora_content", "orange")
		self.assertEqual(
			self.js("return cur_frm.doc.current_base_url"), "http://memora.local/files/memora_content"
		)

	def test_content_file_list_indicators_filters_and_retry_on_selected_rows(self):
		rows = self.arrange_rows()
		mine = {"path": ["like", f"%{self.tag}%"]}
		self.open("List", content_files.DOCTYPE, options=mine)
		self.assert_soon(
			self.indicators,
			{
				rows["synced"]: ("Synced", "green"),
				rows["failed"][0]: ("Failed", "red"),
				rows["failed"][1]: ("Failed", "red"),
				# while delivery is local a due row waits for the CDN, not failing
				rows["pending"]: ("Waiting for CDN", "yellow")
				if uploads.waiting()
				else ("Pending", "orange"),
				rows["syncing"]: ("Syncing", "blue"),
				rows["write_pending"]: ("Write Pending", "orange"),
			},
		)
		self.screenshot("desk-content-file-list")

		self.choose_filter("sync_status", "Failed")  # the list's own Sync Status filter
		self.assert_soon(
			lambda: self.js("return cur_list.get_filters_for_args().map((f) => f.slice(1, 4))"),
			[["path", "like", f"%{self.tag}%"], ["sync_status", "=", "Failed"]],
		)
		self.assert_soon(lambda: set(self.indicators()), set(rows["failed"]))
		self.js("$('.list-row-checkbox:visible').click()")  # select every Failed row
		self.wait(lambda: self.js("return cur_list.get_checked_items().length") == 2, "rows not selected")
		# Desk skips a list refresh with the same filters within 3 s of the last (BaseList.no_change);
		# a person takes longer than that to pick rows.
		self.wait(lambda: not self.js("return cur_list.last_args"), "the list's refresh throttle did not end")
		self.click_action("Retry CDN Sync")
		self.wait_alert("2 content files queued for the CDN.")
		frappe.db.rollback()  # see what the dev server committed
		for name in rows["failed"]:
			row = frappe.db.get_value(content_files.DOCTYPE, name, ["sync_status", "attempts"], as_dict=True)
			self.assertEqual((row.sync_status, row.attempts), ("Pending", 0))
		self.wait(lambda: not self.indicators(), "the retried rows still show under the Failed filter")

	def test_health_report_resync_and_delete_orphans(self):
		_plan, _subject, units = self.make_tree()
		use_endpoint(S3_ENDPOINT, self.bucket, key_prefix="")
		self.wait(self.all_synced, "the worker did not upload the tree")
		missing = f"units/{units[0].name}.json"
		s3_client().delete_object(Bucket=self.bucket, Key=missing)

		self.open("Form", "CDN Settings")
		self.click("Verify CDN Now", group="CDN")
		self.wait_alert("The CDN verification has started")
		done = self.wait_realtime("msgprint", "files match the CDN")
		self.assertEqual(done["indicator"], "orange")
		self.assertIn("CDN verification", {p["title"] for p in self.realtime("progress")})
		frappe.db.rollback()  # see what the worker committed
		report = frappe.get_last_doc(reports.DOCTYPE, filters={"scope": "CDN Verification"})
		self.assertIn(f'href="/app/content-health-report/{report.name}"', done["message"])
		self.assertIn(("Missing on CDN", missing), {(p.problem, p.path) for p in report.issues})

		self.open("Form", reports.DOCTYPE, report.name)
		self.assertEqual(self.js("return cur_frm.doc.cdn_missing_count"), report.cdn_missing_count)
		self.assertIn("Missing on CDN", self.text(".frappe-control[data-fieldname='issues']"))
		self.assertIn(missing, self.text(".frappe-control[data-fieldname='issues']"))
		self.screenshot("desk-content-health-report-verification")
		self.click("Resync")
		self.wait_alert("Started in the background")
		self.wait_realtime(
			"msgprint", f"{report.cdn_missing_count + report.cdn_mismatch_count} content files queued"
		)
		self.wait(
			lambda: self.object(missing) == self.store.read(missing), "Resync did not restore the object"
		)

		orphan = f"units/orphan-{self.tag}.json"
		self.plant(orphan)
		self.open("List", reports.DOCTYPE)
		self.click("Run Full Health Scan", group="Scan")
		self.wait_alert("The health scan has started")
		done = self.wait_realtime("msgprint", "records checked")
		frappe.db.rollback()
		scan = frappe.get_last_doc(reports.DOCTYPE, filters={"scope": "Manual"})
		self.assertIn(scan.name, done["message"])
		self.assertIn(("Orphaned", orphan), {(p.problem, p.path) for p in scan.issues})

		self.open("Form", reports.DOCTYPE, scan.name)
		self.click("Delete Orphans")
		self.assert_dialog(body=f"Delete the {scan.orphaned_count} orphaned files this report lists?")
		self.screenshot("desk-content-health-report-delete-orphans")
		self.js("$('.modal.show .btn-primary:visible').click()")
		done = self.wait_realtime("msgprint", "orphaned files deleted")
		deleted = int(done["message"].split()[0])  # the site may hold other tests' orphans too
		self.assertGreaterEqual(deleted, 1)
		self.assertFalse(file_path(self.store.root, orphan).exists())
		# The job's update reaches the open form, which reloads: the count shows, the button goes.
		self.wait(
			lambda: self.js("return cur_frm.doc.orphans_deleted_count") == deleted,
			"the form did not reload after Delete Orphans",
		)
		if deleted == scan.orphaned_count:
			self.wait(lambda: not self.buttons("Delete Orphans"), "Delete Orphans is still offered")

	def test_workspace_number_cards_and_chart(self):
		self.arrange_rows()
		frappe.db.rollback()
		self.open("memora-storage")
		self.wait(
			lambda: len(self.cards()) == len(WORKSPACE["number cards"]) and "" not in self.cards().values(),
			"number cards not loaded",
		)
		cards = self.cards()
		self.assert_soon(lambda: {kind: self.widget_titles(kind) for kind in WORKSPACE}, WORKSPACE)
		count = lambda **filters: str(frappe.db.count(content_files.DOCTYPE, filters))  # noqa: E731
		self.assertEqual(cards["CDN Sync Pending"], count(sync_status="Pending"))
		self.assertEqual(cards["CDN Sync Failed"], count(sync_status="Failed"))
		self.assertEqual(cards["Content Writes Pending"], count(local_status="Pending"))
		self.assertEqual(cards["Last Health Scan Problems"], str(api.last_health_problems()["value"]))
		self.assertAlmostEqual(
			float(cards["Content Disk Free"].rstrip("%")), disk_guard.disk_free()["value"], delta=1
		)
		self.assertEqual(cards["CDN Sync Failed"], "2")
		self.assertEqual(cards["CDN Uploads Waiting"], str(api.uploads_waiting()["value"]))
		self.assertEqual(cards["CDN Probes Failed (Last Hour)"], str(api.failed_probes()["value"]))
		self.assertEqual(cards["Minutes Since the Scheduler Ran"], str(api.scheduler_minutes_ago()["value"]))

		chart = ".dashboard-widget-box:has(.widget-title:contains('Content Files by Sync Status'))"
		self.wait(lambda: self.js(f'return $("{chart} svg.frappe-chart").length') == 1, "chart not drawn")
		# Each status in its colour, whatever the counts (Frappe colours slices by position): Synced green,
		# Syncing blue, Failed red, Pending (Waiting for CDN while delivery is local, as in the list) orange.
		legend = self.js(
			f"""return $("{chart} .chart-legend > g").map((i, g) => [[
				$(g).find(".legend-dataset-label").text(), $(g).find(".legend-dot").attr("fill"),
				$(g).find(".legend-dataset-value").text()]]).get()"""
		)
		pending = "Waiting for CDN" if uploads.waiting() else "Pending"
		self.assertEqual(
			legend,
			[
				["Synced", "#29CD42", count(sync_status="Synced")],
				["Syncing", "#2490EF", count(sync_status="Syncing")],
				["Failed", "#E24C4C", count(sync_status="Failed")],
				[pending, "#ECAD4B", count(sync_status="Pending")],
			],
		)
		self.wait(  # the probes' quick list has its rows, or says it has none
			lambda: not self.js("return $('.quick-list-widget-box .list-loading-state').length"),
			"the CDN Probe quick list did not load",
		)
		self.screenshot("desk-workspace", whole=True)

	def test_after_save_notice_reaches_the_browser_when_the_folder_is_unwritable(self):
		if os.geteuid() == 0:
			self.skipTest(
				"running as root: file permissions do not stop root, so 'permission denied' cannot occur"
			)
		_plan, _subject, units = self.make_tree()
		folder = file_path(self.store.root, f"units/{units[0].name}.json").parent
		mode = folder.stat().st_mode
		self.open("Form", "Unit", units[0].name)
		os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
		try:
			self.type("title", " (edited)", append=True)
			self.save()
			alert = self.wait_alert("Some content files could not be written yet", indicator="orange")
			self.screenshot("desk-save-notice")  # while the alert shows (seven seconds)
			self.assertIn("retried every minute", alert)
			self.assertEqual(self.realtime("msgprint")[-1]["indicator"], "orange")
			frappe.db.rollback()
			self.assertEqual(frappe.db.get_value("Unit", units[0].name, "title"), f"{units[0].name} (edited)")
		finally:
			os.chmod(folder, mode)
		publishing.retry_pending_writes()
		frappe.db.commit()

	# Arranging ------------------------------------------------------------------------------------

	def arrange_rows(self) -> dict:
		"""Content File rows in every state the list tells apart, on this test's files."""
		_plan, subject, units = self.make_tree()
		units += [self.make("Unit", f"unit-{self.tag}-{i}", subject=subject.name) for i in (3, 4)]
		name = lambda doc: content_files.row_name(f"units/{doc.name}.json")  # noqa: E731
		rows = {
			"synced": name(units[0]),
			"failed": [name(units[1]), name(units[2])],
			"syncing": name(units[3]),
			"pending": content_files.row_name(f"plans/{subject.plan}/subjects/{subject.name}.json"),
			"write_pending": content_files.row_name(f"plans/{subject.plan}/manifest.json"),
		}
		frappe.db.set_value(content_files.DOCTYPE, rows["synced"], "sync_status", "Synced")
		for failed in rows["failed"]:
			frappe.db.set_value(
				content_files.DOCTYPE,
				failed,
				{"sync_status": "Failed", "attempts": 8, "last_error": "connection refused"},
			)
		frappe.db.set_value(content_files.DOCTYPE, rows["syncing"], "sync_status", "Syncing")
		frappe.db.set_value(content_files.DOCTYPE, rows["write_pending"], "local_status", "Pending")
		frappe.db.commit()
		return rows

	def wait_for_jobs(self) -> None:
		"""Until the worker has had nothing queued or running on this site's queues for a second: a job it
		has taken off a queue is in the started registry only once its forked child begins."""
		from frappe.utils.background_jobs import get_queues
		from rq.registry import StartedJobRegistry

		idle_since = []

		def settled() -> bool:
			busy = any(queue.count or StartedJobRegistry(queue=queue).count for queue in get_queues())
			if busy:
				idle_since.clear()
			elif not idle_since:
				idle_since.append(time.monotonic())
			return bool(idle_since) and time.monotonic() - idle_since[0] >= 1

		self.wait(settled, "the worker did not finish its jobs")

	def plant(self, path: str) -> None:
		"""A file no record expects, an hour old (scans leave new files a minute's grace)."""
		target = file_path(self.store.root, path)
		target.write_bytes(b"{}\n")
		os.utime(target, (time.time() - 3600,) * 2)
		self.addCleanup(lambda: target.unlink(missing_ok=True))

	def all_synced(self) -> bool:
		frappe.db.rollback()  # see the worker's commits
		statuses = set(
			frappe.get_all(
				content_files.DOCTYPE, filters={"path": ["like", f"%{self.tag}%"]}, pluck="sync_status"
			)
		)
		return statuses == {"Synced"}

	def object(self, path: str) -> bytes | None:
		try:
			return s3_client().get_object(Bucket=self.bucket, Key=path)["Body"].read()
		except Exception:
			return None

	# The browser ----------------------------------------------------------------------------------

	def assert_soon(self, actual, expected, timeout: float = 30) -> None:
		"""`actual()` equals `expected` within `timeout` (the page renders what it fetched)."""
		deadline = time.monotonic() + timeout
		while (value := actual()) != expected and time.monotonic() < deadline:
			time.sleep(0.25)
		self.assertEqual(value, expected)

	def js(self, script: str, *args):
		return self.driver.execute_script(script, *args)

	def wait(self, condition, message: str, timeout: float = WAIT_S):
		"""Poll until `condition()` is truthy and return it; fail with `message` and a screenshot."""
		deadline = time.monotonic() + timeout
		while True:
			try:
				if result := condition():
					return result
			except Exception:
				if time.monotonic() > deadline:
					raise
			if time.monotonic() > deadline:
				self.screenshot(f"failed-{self._testMethodName}", folder=tempfile.gettempdir())
				self.fail(f"{message} (after {timeout:.0f} s)")
			time.sleep(0.25)

	def open(self, *route: str, options: dict | None = None) -> None:
		"""Go to a Desk route as a link would: the page and its realtime connection stay. A form is read
		afresh from the server; `options` are a list's filters (frappe.route_options)."""
		self.js(
			"""const [route, options] = arguments;
			if (route[0] === "Form") frappe.model.remove_from_locals(route[1], route[2] || route[1]);
			frappe.route_options = options;
			frappe.set_route(...route);""",
			list(route),
			options,
		)
		if route[0] == "Form":
			self.wait(
				lambda: self.js(
					"""return !!(window.cur_frm && cur_frm.doctype === arguments[0] && cur_frm.docname === arguments[1]
					&& cur_frm.page.wrapper.is(':visible') && !cur_frm.is_dirty())""",
					route[1],
					route[2] if len(route) > 2 else route[1],
				),
				f"the form {route[1:]} did not open",
			)
		elif route[0] == "List":
			self.wait(
				lambda: self.js(
					"return !!(window.cur_list && cur_list.doctype === arguments[0] && cur_list.page.wrapper.is(':visible'))",
					route[1],
				),
				f"the {route[1]} list did not open",
			)
		self.wait(lambda: not self.js("return frappe.dom.freeze_count || 0"), "the page stayed frozen")

	def field(self, fieldname: str):
		from selenium.webdriver.common.by import By

		selector = f".frappe-control[data-fieldname='{fieldname}'] input"
		return next(e for e in self.driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed())

	def type(self, fieldname: str, text: str, append: bool = False) -> None:
		"""Type `text` into a field, in place of what it holds unless `append`."""
		from selenium.webdriver.common.keys import Keys

		element = self.field(fieldname)
		self.js("arguments[0].focus()", element)  # a field flagged missing lays a highlight over it
		start = (Keys.END,) if append else (Keys.CONTROL, "a", Keys.NULL)  # NULL lets go of Ctrl
		element.send_keys(*start, text, Keys.TAB)
		self.wait(
			lambda: (self.js("return cur_frm.doc[arguments[0]]", fieldname) or "").endswith(text),
			f"{fieldname} did not take the typed value",
		)

	def choose_filter(self, fieldname: str, option: str) -> None:
		"""Pick `option` in the list's standard filter `fieldname` (a Select above the rows)."""
		from selenium.webdriver.common.by import By
		from selenium.webdriver.support.ui import Select

		selector = f".standard-filter-section .frappe-control[data-fieldname='{fieldname}'] select"
		element = self.wait(
			lambda: next(
				(e for e in self.driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()), None
			),
			f"no standard filter {fieldname!r}",
		)
		Select(element).select_by_visible_text(option)

	def save(self) -> None:
		from selenium.webdriver.common.keys import Keys

		self.driver.find_element("tag name", "body").send_keys(Keys.CONTROL, "s")

	def buttons(self, label: str) -> list:
		from selenium.webdriver.common.by import By

		selector = f".page-actions button[data-label='{quote(label, safe='')}'], .inner-group-button[data-label='{quote(label, safe='')}'] > button"
		return [e for e in self.driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]

	def click(self, label: str, group: str | None = None) -> None:
		"""Click a custom button of the page, or the item `label` of its button group `group`."""
		from selenium.webdriver.common.by import By

		self.js("window.scrollTo(0, 0)")  # the page's buttons slide under the sticky navbar otherwise
		if not group:
			self.wait(lambda: self.buttons(label), f"no button {label!r}")[0].click()
			return
		self.wait(lambda: self.buttons(group), f"no button group {group!r}")[0].click()
		selector = f".inner-group-button[data-label='{quote(group, safe='')}'] .dropdown-item[data-label='{quote(label, safe='')}']"
		self.wait(
			lambda: [e for e in self.driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()],
			f"no item {label!r} under {group!r}",
		)[0].click()

	def click_action(self, label: str) -> None:
		"""An item of the list's Actions menu (the actions on the selected rows)."""
		from selenium.webdriver.common.by import By

		self.wait(
			lambda: [
				e
				for e in self.driver.find_elements(By.CSS_SELECTOR, ".actions-btn-group > button")
				if e.is_displayed()
			],
			"no Actions menu",
		)[0].click()
		self.wait(
			lambda: [
				e
				for e in self.driver.find_elements(By.CSS_SELECTOR, ".actions-btn-group .dropdown-item")
				if e.is_displayed() and e.text.strip() == label
			],
			f"no action {label!r}",
		)[0].click()

	def text(self, selector: str) -> str:
		return self.js("return $(arguments[0]).filter(':visible').text()", selector)

	def assert_intro(self, url: str, color: str) -> None:
		"""The form's headline (Frappe has one block per form): where content URLs point now, blue while
		the CDN serves, else orange; then when the scheduler last ran the app's jobs, the whole block red
		when that is stale (a test site's scheduler is off, so it says why)."""
		headlines = lambda: [  # noqa: E731
			(text.strip(), next((c for c in ("blue", "orange", "red", "green") if c in classes.split()), ""))
			for classes, text in self.js(
				"return $('.form-message:visible').map((i, e) => [[e.className, e.innerText]]).get()"
			)
		]

		def expected() -> list[tuple[str, str]]:
			"""Read again at each look: the minutes since the last run may tick over meanwhile."""
			clock = api.scheduler_status()
			ran = (
				f"The scheduler last ran this app's jobs {clock['minutes_ago']} minute(s) ago."
				if clock["last_ran"]
				else "The scheduler has not run this app's jobs since Redis last started."
			)
			if clock["stale"]:
				ran += f" Failover and uploads are not running, because {clock['reason']}."
			return [(f"Content URLs now point to: {url}\n{ran}", "red" if clock["stale"] else color)]

		deadline = time.monotonic() + 30  # once saved
		while (shown := headlines()) != (wanted := expected()) and time.monotonic() < deadline:
			time.sleep(0.25)
		self.assertEqual(shown, wanted)

	def assert_dialog(self, title: str | None = None, body: str | None = None, indicator: str | None = None):
		shown = self.wait(
			lambda: self.js(
				"""const m = $('.modal.show:visible').last();
				return m.length && [m.find('.modal-title').text().trim(), m.find('.modal-body').text(),
					m.find('.modal-header .indicator').attr('class') || ''];"""
			),
			f"no dialog {title or body!r}",
		)
		if title:
			self.assertEqual(shown[0], title, shown[1][:3000])
		if body:
			self.assertIn(body, shown[1])
		if indicator:
			self.assertIn(indicator, shown[2].split())
		return shown

	def close_dialog(self) -> None:
		# Bootstrap ignores a close while the dialog is still fading in: click until it is gone.
		self.wait(
			lambda: (
				not self.js(
					"""const open = $('.modal.show:visible');
				open.last().find('.btn-modal-close').click();
				return open.length;"""
				)
			),
			"the dialog did not close",
		)

	def wait_alert(self, text: str, indicator: str | None = None) -> str:
		"""The text of the Desk alert (toast) holding `text`, of the indicator colour if one is given, once
		it has slid in."""
		selector = f"#alert-container .desk-alert{'.' + indicator if indicator else ''}"
		shown = """return $(arguments[0]).filter((i, e) => getComputedStyle(e).opacity === "1")
			.map((i, e) => e.innerText).get()"""
		return self.wait(
			lambda: next((t for t in self.js(shown, selector) if text in t), None), f"no alert {text!r}"
		)

	def realtime(self, event: str) -> list[dict]:
		return self.js("return window.__memora[arguments[0]]", event)

	def wait_realtime(self, event: str, text: str) -> dict:
		"""The first `event` the realtime server delivered to this page whose message holds `text`."""
		return self.wait(
			lambda: next((e for e in self.realtime(event) if text in (e.get("message") or "")), None),
			f"no realtime {event} {text!r}: {self.js('return [window.__memora.connects, [...frappe.realtime.open_docs], window.__memora.msgprint.map((m) => m.message)]')}",
		)

	def indicators(self) -> dict[str, tuple[str, str]]:
		"""Row name -> (indicator label, colour) of the rows the list shows."""
		rows = self.js(
			"""return $('.list-row-container:visible').map((i, row) => {
				const pill = $(row).find('.indicator-pill').first();
				const colour = (pill.attr('class') || '').split(/\\s+/).find((c) =>
					['green', 'red', 'orange', 'blue', 'gray', 'yellow'].includes(c));
				return [[$(row).find('.list-row-checkbox').attr('data-name'), pill.text().trim(), colour]];
			}).get()"""
		)
		return {name: (label, colour) for name, label, colour in rows if name}

	def sections(self) -> list[tuple[str, list[str]]]:
		"""The open form's sections that show, each with the labels of the fields it shows, in order
		(a collapsed section's too: Desk hides a field by its depends_on or an empty read-only value)."""
		return [
			(label, fields)
			for label, fields in self.js(
				"""return cur_frm.layout.sections
					.filter((s) => s.wrapper.is('.form-section:not(.hide-control):not(.empty-section)'))
					.map((s) => [
						s.df ? s.df.label || '' : '',
						s.fields_list
							.filter((f) => !f.$wrapper.hasClass('hide-control'))
							.filter((f) => !['Section Break', 'Column Break', 'Tab Break'].includes(f.df.fieldtype))
							.map((f) => f.df.label || f.df.fieldname),
					])"""
			)
		]

	def help_text(self, fieldname: str) -> str:
		"""The description Desk shows under a field."""
		return self.js(
			"return cur_frm.get_field(arguments[0]).$wrapper.find('.help-box').text().trim()", fieldname
		)

	def widget_titles(self, kind: str) -> list[str]:
		"""The titles of the workspace's widgets of one kind (a key of WORKSPACE), in page order."""
		box = {
			"number cards": "number-widget-box",
			"charts": "dashboard-widget-box",
			"quick lists": "quick-list-widget-box",
			"shortcuts": "shortcut-widget-box",
			"link cards": "links-widget-box",
		}[kind]
		return self.js(
			"return $(`.${arguments[0]}:visible`).map((i, w) => $(w).find('.widget-title').first().text().trim()).get()",
			box,
		)

	def cards(self) -> dict[str, str]:
		"""Number card title -> the number it shows."""
		return dict(
			self.js(
				"""return $('.number-widget-box:visible').map((i, card) => [[
					$(card).find('.widget-title').text().trim(), $(card).find('.number').text().trim()
				]]).get()"""
			)
		)

	def screenshot(self, name: str, folder: str | os.PathLike = SCREENSHOTS, whole: bool = False) -> None:
		"""The window as it is (from the page's head: its title, status and buttons), or with `whole`
		the page from top to bottom, through a window as tall as the page for that moment."""
		Path(folder).mkdir(parents=True, exist_ok=True)
		self.js("window.scrollTo(0, 0)")
		size = self.driver.get_window_size()
		for _ in range(4) if whole else ():
			# What is still scrolled away: the document's, or that of a box of the page that scrolls on
			# its own (the workspace's), which a taller window lets grow.
			hidden = self.js(
				"""const boxes = [...document.querySelectorAll('*')].filter((e) =>
					/auto|scroll/.test(getComputedStyle(e).overflowY) && e.clientHeight > 0);
				return Math.max(document.documentElement.scrollHeight - window.innerHeight,
					...boxes.map((e) => e.scrollHeight - e.clientHeight));"""
			)
			height = self.driver.get_window_size()["height"]
			if hidden <= 1 or height >= SCREENSHOT_MAX_HEIGHT:
				break
			self.driver.set_window_size(size["width"], min(height + hidden, SCREENSHOT_MAX_HEIGHT))
			time.sleep(0.5)  # charts and sticky parts follow the resize
			self.js("window.scrollTo(0, 0)")
		try:
			self.driver.save_screenshot(str(Path(folder) / f"{name}.png"))
		finally:
			if whole:
				self.driver.set_window_size(size["width"], size["height"])
