"""The student's side of the publishing tests: a CDN bucket behind a fault proxy, local files by
nginx, and a walk that follows every link from the API's manifest URL, asserting each GET answers
200 with the local file's exact bytes."""

import time
from urllib.parse import unquote

import frappe
import requests

from memora_storage import api, content_files, jobs, uploads
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	ContentTestCase,
	fault_proxy,
	s3_client,
	serve_site_files,
	use_endpoint,
)

PREFIX = "content"


def public_bucket(bucket: str) -> None:
	"""A bucket that anyone may read, as one behind a CDN is (moto refuses anonymous GETs otherwise)."""
	s3 = s3_client()
	s3.create_bucket(Bucket=bucket)
	statement = {
		"Effect": "Allow",
		"Principal": "*",
		"Action": "s3:GetObject",
		"Resource": f"arn:aws:s3:::{bucket}/*",
	}
	s3.put_bucket_policy(
		Bucket=bucket, Policy=frappe.as_json({"Version": "2012-10-17", "Statement": [statement]})
	)


class PublishingTestCase(ContentTestCase):
	"""A bucket whose public URL, through a fault proxy, is the CDN Base URL; local URLs by nginx."""

	@classmethod
	def setUpClass(cls) -> None:
		super().setUpClass()
		cls.base, _by_nginx = serve_site_files(cls)

	def setUp(self) -> None:
		super().setUp()
		self.bucket = f"memora-pub-{self.tag.lower()}"
		public_bucket(self.bucket)
		self.proxy = fault_proxy(S3_ENDPOINT)
		self.cdn_base = f"{self.proxy.url}/{self.bucket}/{PREFIX}"
		self.use(self.proxy.url)
		frappe.db.delete("Content File")
		frappe.db.commit()
		content_files.rebuild_delivery_hash()
		self.http = requests.Session()

	def tearDown(self) -> None:
		self.proxy.stop()
		super().tearDown()

	def use(self, endpoint: str, **values) -> None:
		"""The CDN on, its base URL the bucket's public URL through the proxy; local URLs on the dev server."""
		use_endpoint(
			endpoint,
			self.bucket,
			key_prefix=PREFIX,
			cdn_base_url=self.cdn_base,
			local_domain=self.base,
			**values,
		)

	def tree(self, subjects: int = 2, units: int = 3) -> tuple[str, list[str], list[str]]:
		plan = self.make("Plan", f"plan-{self.tag}", commit=False).name
		subject_names, unit_names = [], []
		for s in range(subjects):
			subject = self.make("Subject", f"subject-{self.tag}-{s}", commit=False, plan=plan).name
			subject_names.append(subject)
			for u in range(units):
				name = f"وحدة {self.tag} {s}-{u}" if u == 0 else f"unit-{self.tag}-{s}-{u}"
				unit_names.append(
					self.make("Unit", name, commit=False, subject=subject, body=f"b {name}").name
				)
		frappe.db.commit()
		return plan, subject_names, unit_names

	def path_of_url(self, url: str) -> tuple[str, str]:
		"""('cdn' or 'local', content path) of a URL the app handed out."""
		for where, base in (("cdn", self.cdn_base), ("local", f"{self.base}/files/memora_content")):
			if url.startswith(base + "/"):
				return where, unquote(url[len(base) + 1 :].partition("?")[0])
		self.fail(f"{url} is neither a CDN nor a local content URL")

	def fetch(self, url: str) -> tuple[str, bytes]:
		"""GET a handed-out URL and assert it answers 200 with the local file's exact bytes."""
		where, path = self.path_of_url(url)
		response = self.http.get(url, timeout=30)
		if response.status_code != 200 and where == "cdn":
			listing = s3_client().list_objects_v2(Bucket=self.bucket).get("Contents", [])
			self.fail(f"{url}: {response.status_code}; the bucket holds {[item['Key'] for item in listing]}")
		self.assertEqual(response.status_code, 200, f"{url} ({where})")
		self.assertEqual(response.content, self.store.read(path), f"{url} ({where}) differs from {path}")
		return where, response.content

	def walk(self, plan: str) -> dict[str, str]:
		"""Follow every link from the API's manifest URL; returns path → where it was served from."""
		seen = {}
		manifest_url = api.get_content_url(f"plans/{plan}/manifest.json")
		todo = [manifest_url]
		while todo:
			url = todo.pop()
			where, body = self.fetch(url)
			seen[self.path_of_url(url)[1]] = where
			data = frappe.parse_json(body.decode())
			for key in ("subjects", "units"):
				todo += [link["url"] for link in data.get(key, [])]
		return seen

	def drain(self) -> dict[str, int]:
		return uploads.drain()

	def wait_quiet(self, timeout: float = 120) -> None:
		"""Until no relink or drain is asked for or running and nothing is due."""
		from frappe.utils.background_jobs import get_queue

		deadline = time.monotonic() + timeout
		quiet_since = None
		while time.monotonic() < deadline:
			frappe.db.rollback()
			queue = get_queue("long")
			busy = (
				jobs.is_requested(jobs.RELINK)
				or jobs.is_requested(jobs.DRAIN)
				or any(job.kwargs.get("site") == frappe.local.site for job in queue.jobs)
				or queue.started_job_registry.count
				or frappe.db.count("Content File", {"sync_status": "Syncing"})
				# while delivery is local, due rows wait for the CDN: quiet, not busy
				or (uploads.uploads_go() and frappe.db.count("Content File", {"sync_status": "Pending"}))
			)
			if busy:
				quiet_since = None
			elif quiet_since is None:
				quiet_since = time.monotonic()
			elif time.monotonic() - quiet_since > 1.5:
				return
			time.sleep(0.2)
		self.fail("the site's jobs did not settle")

	def assert_links_follow(self, local: bool) -> None:
		"""Every link in every file points where the settings (and each child's delivery) say."""
		for row in frappe.get_all("Content File", filters={"local_status": "Written"}, pluck="path"):
			data = frappe.parse_json(self.store.read(row).decode())
			for link in [*data.get("subjects", []), *data.get("units", [])]:
				where, _path = self.path_of_url(link["url"])
				self.assertEqual(where, "local" if local else "cdn", f"{row}: {link['url']}")
