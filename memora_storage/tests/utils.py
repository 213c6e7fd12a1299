"""Shared set-up for the Frappe-layer tests: the content DocTypes, settings, cleanup, and the servers
(S3 endpoint, dev server) that some tests talk to."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import boto3
import frappe
import requests
from botocore.config import Config
from frappe.tests.utils import FrappeTestCase

from memora_storage import jobs, settings
from memora_storage.demo import ensure_content_doctypes

SETTINGS_DEFAULTS = {
	"enable_cdn": 0,
	"cdn_base_url": "",
	"local_fallback_mode": 0,
	"local_domain": "http://memora.local",
	"bucket": "",
	"etag_behaviour": "",
	"min_free_disk_percent": 0,
	"regenerate_missing_files": 0,
	"health_check_start_hour": 8,
	"health_check_end_hour": 18,
	# Off unless a test is about it: the failover tests turn it on (test_failover.py).
	"auto_failover": 0,
	"version_in_urls": 0,
	"cors_allowed_origins": "*",
	# The tests' bucket is no caching edge: nothing is held after an upload (edge.py) unless a test is
	# about the hold and sets a lifetime (test_edge_cache.py).
	"cache_control_listing": "no-cache",
	"cdn_purge": "None",
	"purge_endpoint": "",
	"purge_zone_id": "",
}


# The moto server that `run-tests` starts (moto's Flask would not fit beside Frappe's pinned Werkzeug).
S3_ENDPOINT = os.environ.get("MEMORA_TEST_S3_ENDPOINT", "")
S3_SKIP_REASON = "MEMORA_TEST_S3_ENDPOINT is not set: run these through ./run-tests, which starts moto"
S3_KEYS = {"access_key_id": "AKIAMEMORATEST000001", "secret_access_key": "memora-test-secret-0001"}


def repo_tests_dir() -> str:
	"""The core suite's folder (`tests/` beside this package), whose S3 helpers the site tests share."""
	return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tests")


def fault_proxy(endpoint: str):
	"""A started FaultProxy (tests/s3_helpers.py) in front of the moto endpoint, strict as Backblaze B2
	is: a checksum header boto3 sends of its own is refused, so the site's uploads and deletes are
	proven against a strict store with the bench's boto3 (the core suite adds the newest boto3)."""
	if repo_tests_dir() not in sys.path:
		sys.path.insert(0, repo_tests_dir())
	from s3_helpers import FaultProxy

	proxy = FaultProxy(int(endpoint.rsplit(":", 1)[1]))
	proxy.strict = True
	return proxy.start()


def start_worker() -> subprocess.Popen:
	"""A real `bench worker` (forking per job, all queues) for this bench, after dropping this site's
	jobs that tests without a worker left queued."""
	from frappe.utils.background_jobs import get_queue, get_queue_list

	for name in get_queue_list():
		queue = get_queue(name)
		for job in queue.jobs:
			if job.kwargs.get("site") == frappe.local.site:
				job.delete()
	for kind in (
		jobs.DRAIN,
		jobs.RELINK,
		jobs.REBUILD,
	):  # their jobs are gone: let the next request queue one
		jobs.started(kind)
	return subprocess.Popen(
		[sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "worker"],
		cwd=os.path.abspath(frappe.local.sites_path),
		# The queue this site enqueues to, which its site_config may set apart from the bench's.
		env={**os.environ, "FRAPPE_REDIS_QUEUE": frappe.conf.redis_queue},
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)


# Frappe's scheduler loop (frappe.utils.scheduler.enqueue_events) for this app's Scheduled Job Types: their
# own due check and enqueue, at a tick of seconds instead of scheduler_tick_interval's minute; with
# `dormancy`, only when Frappe's dormancy gate lets a tick through, as `bench schedule` does.
_SCHEDULER = """
import sys, time
import frappe
from frappe.utils.scheduler import schedule_jobs_based_on_activity
site, tick, dormancy = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
while True:
	frappe.init(site=site)
	frappe.connect()
	try:
		if not dormancy or schedule_jobs_based_on_activity():
			for job in frappe.get_all(
				"Scheduled Job Type", filters={"stopped": 0, "method": ["like", "memora_storage.%"]}, fields="*"
			):
				frappe.get_doc(doctype="Scheduled Job Type", **job).enqueue()
			frappe.db.commit()
	finally:
		frappe.destroy()
	time.sleep(tick)
"""


def start_scheduler(tick: float = 1.0, dormancy: bool = False) -> subprocess.Popen:
	"""A scheduler process queueing this app's scheduled jobs for this site every `tick` seconds, as
	`bench schedule` does with scheduler_tick_interval set to it; the probe's cron has a seconds field.
	`dormancy` keeps Frappe's gate for sites nobody logged in to (off: every tick runs the jobs)."""
	return subprocess.Popen(
		[sys.executable, "-c", _SCHEDULER, frappe.local.site, str(tick), "1" if dormancy else "0"],
		cwd=os.path.abspath(frappe.local.sites_path),
		env={**os.environ, "FRAPPE_REDIS_QUEUE": frappe.conf.redis_queue},
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)


def stop(process: subprocess.Popen) -> None:
	process.terminate()
	try:
		process.wait(timeout=30)
	except subprocess.TimeoutExpired:
		process.kill()
		process.wait()


def free_port() -> int:
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


def closed_port_url() -> str:
	"""A URL where nothing listens: connections are refused, as from a CDN that is down."""
	return f"http://127.0.0.1:{free_port()}"


def s3_client():
	"""A plain boto3 client on the test endpoint, to arrange and inspect the bucket behind the app."""
	return boto3.session.Session().client(
		"s3",
		endpoint_url=S3_ENDPOINT,
		region_name="us-east-1",
		aws_access_key_id=S3_KEYS["access_key_id"],
		aws_secret_access_key=S3_KEYS["secret_access_key"],
		config=Config(s3={"addressing_style": "path"}),
	)


def use_endpoint(endpoint: str, bucket: str, **values) -> None:
	"""CDN Settings with the CDN on, pointing at `endpoint`/`bucket` with the test keys, committed."""
	set_cdn_settings(
		**{
			"enable_cdn": 1,
			"cdn_base_url": "https://cdn.example.com",
			"bucket": bucket,
			"endpoint_url": endpoint,
			**S3_KEYS,
			**values,
		}
	)


def start_dev_server() -> tuple[subprocess.Popen, str]:
	"""The Frappe dev server (what `bench serve` runs) for this site on a free port; the caller kills it."""
	port = free_port()
	server = subprocess.Popen(
		[
			*(sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "--site", frappe.local.site),
			*("serve", "--port", str(port), "--noreload"),
		],
		cwd=frappe.local.sites_path,
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	base = f"http://127.0.0.1:{port}"
	deadline = time.monotonic() + 60
	while time.monotonic() < deadline:
		try:
			requests.get(f"{base}/api/method/ping", timeout=2)
			return server, base
		except requests.ConnectionError:
			time.sleep(0.3)
	server.kill()
	raise RuntimeError("the dev server did not start within 60 s")


def dev_server_for(test_class) -> str:
	"""`start_dev_server` for a test class, stopped when the class is done: its base URL."""
	process, base = start_dev_server()
	test_class.addClassCleanup(stop, process)
	return base


def serve_site_files(test_class) -> tuple[str, bool]:
	"""This site's files over HTTP for a test class: nginx with bench's static rule
	(memora_storage/tests/nginx.py), or the dev server where nginx is missing. (base URL, by nginx)."""
	from memora_storage.tests.nginx import Nginx, find_nginx

	if not find_nginx():
		return dev_server_for(test_class), False
	prefix = tempfile.mkdtemp(prefix="memora-test-nginx-")
	test_class.addClassCleanup(shutil.rmtree, prefix, ignore_errors=True)
	server = Nginx(os.path.abspath(frappe.local.sites_path), frappe.local.site, prefix).start()
	test_class.addClassCleanup(server.stop)
	return server.url, True


def set_cdn_settings(**values) -> None:
	"""Save CDN Settings through the document (validation and hooks included) and commit."""
	doc = frappe.get_single("CDN Settings")
	doc.update({**SETTINGS_DEFAULTS, **values})
	doc.save(ignore_permissions=True)
	frappe.db.commit()


MAIL_MANAGER = "memora-manager@example.com"


def ensure_outgoing_email_account() -> None:
	"""Alerts queue an email; the queue needs a default outgoing account (nothing is sent in tests)
	and a System Manager who takes email (Frappe unsubscribes admin@example.com on install)."""
	if not frappe.db.exists("User", MAIL_MANAGER):
		user = frappe.get_doc(
			{
				"doctype": "User",
				"email": MAIL_MANAGER,
				"first_name": "Memora Manager",
				"send_welcome_email": 0,
			}
		).insert(ignore_permissions=True)
		user.add_roles("System Manager")
		frappe.db.commit()
	if frappe.db.exists("Email Account", {"default_outgoing": 1, "enable_outgoing": 1}):
		return
	frappe.get_doc(
		{
			"doctype": "Email Account",
			"email_account_name": "Memora Test Outgoing",
			"email_id": "memora-outgoing@example.com",
			"enable_outgoing": 1,
			"default_outgoing": 1,
			"smtp_server": "127.0.0.1",
			"smtp_port": 2525,
			"no_smtp_authentication": 1,
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()


class ContentTestCase(FrappeTestCase):
	"""Creates content with unique names, commits so files are written, and deletes it afterwards."""

	@classmethod
	def setUpClass(cls) -> None:
		super().setUpClass()
		ensure_content_doctypes()
		set_cdn_settings()
		cls.store = settings.content_store()

	def setUp(self) -> None:
		frappe.set_user("Administrator")
		self.created: list[tuple[str, str]] = []
		self.tag = frappe.generate_hash(length=6)

	def tearDown(self) -> None:
		frappe.db.rollback()
		frappe.set_user("Administrator")
		for doctype, name in reversed(self.created):
			if frappe.db.exists(doctype, name):
				frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
		frappe.db.commit()
		set_cdn_settings()

	def make(self, doctype: str, name: str, commit: bool = True, **values):
		doc = frappe.get_doc({"doctype": doctype, "name": name, "title": name, **values}).insert()
		self.created.append((doctype, doc.name))
		if commit:
			frappe.db.commit()
		return doc

	def edit(self, doc, **values) -> None:
		"""Change a saved document as a user would (fresh copy, save) and commit, so its files follow."""
		doc.reload()
		doc.update(values)
		doc.save()
		frappe.db.commit()

	def make_tree(self):
		"""One Plan with one Subject holding two Units, committed."""
		plan = self.make("Plan", f"plan-{self.tag}", commit=False)
		subject = self.make("Subject", f"subject-{self.tag}", commit=False, plan=plan.name)
		units = [
			self.make("Unit", f"unit-{self.tag}-{i}", commit=False, subject=subject.name, body=f"body {i}")
			for i in (1, 2)
		]
		frappe.db.commit()
		return plan, subject, units

	def read_json(self, path: str) -> dict:
		return json.loads(self.store.read(path))
