"""Behind a real caching edge, a student never goes back to old bytes (edge.py): on a real site with a
worker and a scheduler, the CDN Base URL is Varnish (purged on publish) or nginx proxy_cache (no purge:
the hold) in front of the moto bucket, with a short Cache-Control lifetime.

After edits (unversioned and versioned URLs), a failover cycle, a delete and a rollback, a student
walks every link from the API's manifest URL every second: no answer may carry bytes older than the
ones the edit made, and every edit must in the end be served through the CDN URL.
"""

import time
import unittest
from dataclasses import dataclass, field
from urllib.parse import unquote

import frappe

from memora_storage import api, delivery_hash, edge, failover
from memora_storage.tests.edges import VARNISH_MISSING, NginxCache, Varnish, find_varnishd
from memora_storage.tests.nginx import find_nginx
from memora_storage.tests.student import PREFIX, PublishingTestCase
from memora_storage.tests.utils import (
	S3_ENDPOINT,
	S3_SKIP_REASON,
	fault_proxy,
	start_scheduler,
	start_worker,
	stop,
)
from memora_storage.utils import purge

MAX_AGE = 5  # seconds: the old copies' lifetime, short so a test sees holds end
WALK_S = 20  # seconds of walking after each change: four lifetimes
SETTLE_S = 240  # at most, for the worker to land every edit and the holds to end (not a timing claim)
INTERVAL = 5  # probe interval for the failover cycle


@dataclass
class Watch:
	"""What a student's walks met: stale answers, failed GETs, and where each edited file was served."""

	walks: int = 0
	stale: list = field(default_factory=list)
	failures: list = field(default_factory=list)
	local: int = 0  # GETs of edited files served by this server
	cdn: int = 0
	first_cdn: dict = field(default_factory=dict)  # path → seconds after the change


class EdgeScenarios:
	"""The scenarios, for a PublishingTestCase whose CDN Base URL is a caching edge (set by the test
	case) behind a fault proxy (the outage). Not a TestCase itself: only the edges' cases run them."""

	edge_class: type = Varnish
	purge_provider = purge.NONE

	@classmethod
	def setUpClass(cls) -> None:
		super().setUpClass()
		cls.worker, cls.scheduler = start_worker(), start_scheduler()
		cls.addClassCleanup(stop, cls.worker)
		cls.addClassCleanup(stop, cls.scheduler)

	def setUp(self) -> None:
		super().setUp()
		self.edge = self.edge_class(int(S3_ENDPOINT.rsplit(":", 1)[1])).start()
		self.addCleanup(self.edge.stop)
		self.front = fault_proxy(self.edge.url)
		self.addCleanup(self.front.stop)
		self.cdn_base = f"{self.front.url}/{self.bucket}/{PREFIX}"
		self.configure()

	def configure(self, **values) -> None:
		purged = self.purge_provider != purge.NONE
		self.use(
			self.proxy.url,
			cdn_purge=self.purge_provider,
			cache_control_listing=f"public, max-age=0, s-maxage={MAX_AGE * 60}"
			if purged
			else f"public, max-age={MAX_AGE}",
			**values,
		)

	def student_walk(self, plan: str) -> list[tuple[str, str, str]]:
		"""(path, 'cdn' or 'local', body) of every file reached from the API's manifest URL."""
		seen, todo = [], [api.get_content_url(f"plans/{plan}/manifest.json")]
		while todo:
			url = todo.pop()
			where, path = self.path_of_url(url)
			response = self.http.get(url, timeout=30)
			if response.status_code != 200:
				raise AssertionError(f"{url} ({where}) answered {response.status_code}")
			seen.append((path, where, response.text))
			data = frappe.parse_json(response.text)
			for key in ("subjects", "units"):
				todo += [link["url"] for link in data.get(key, [])]
		return seen

	def watch(
		self, plan: str, fresh: dict[str, str], gone: set[str] = frozenset(), seconds: float = WALK_S
	) -> Watch:
		"""Walk once a second: each path in `fresh` must carry its marker, no path in `gone` may be
		reached, nor answer with its old bytes through the API's URL."""
		watch, started = Watch(), time.monotonic()
		while time.monotonic() - started < seconds:
			frappe.db.rollback()
			try:
				seen = self.student_walk(plan)
			except (AssertionError, OSError, ValueError) as e:
				watch.failures.append(str(e)[:200])
				time.sleep(1)
				continue
			watch.walks += 1
			for path, where, body in seen:
				if path in gone:
					watch.stale.append((round(time.monotonic() - started, 1), path, where, "deleted"))
				if path not in fresh:
					continue
				if fresh[path] not in body:
					watch.stale.append((round(time.monotonic() - started, 1), path, where, body[:80]))
				setattr(watch, where, getattr(watch, where) + 1)
				if where == "cdn":
					watch.first_cdn.setdefault(path, round(time.monotonic() - started, 1))
			for path in gone:
				response = self.http.get(api.get_content_url(path), timeout=30)
				if response.status_code == 200:
					watch.stale.append(
						(round(time.monotonic() - started, 1), path, "api", "deleted but served")
					)
			time.sleep(1)
		return watch

	def settle(self, plan: str, fresh: dict[str, str]) -> None:
		"""Until a walk is served wholly by the CDN with every marker in place (holds over)."""
		deadline = time.monotonic() + SETTLE_S
		while time.monotonic() < deadline:
			frappe.db.rollback()
			try:
				seen = self.student_walk(plan)
			except (AssertionError, OSError, ValueError):
				seen = []
			if (
				seen
				and {where for _p, where, _b in seen} == {"cdn"}
				and all(fresh[path] in body for path, _w, body in seen if path in fresh)
			):
				return
			time.sleep(1)
		self.fail(f"the walk was not served wholly by the CDN with the new bytes within {SETTLE_S} s")

	def published(self, units: int = 5, **values) -> tuple[str, list[str]]:
		"""A plan with `units` units on the CDN, every file once in the edge's cache."""
		if values:
			self.configure(**values)
		plan, _subjects, names = self.tree(subjects=1, units=units)
		self.settle(plan, {})
		self.student_walk(plan)  # the edge keeps every file now
		return plan, names

	def edit_units(self, names: list[str], text: str) -> dict[str, str]:
		fresh = {}
		for n, name in enumerate(names):
			marker = f"{text}-{n}-{self.tag}"
			self.edit(frappe.get_doc("Unit", name), body=marker)
			fresh[f"units/{name}.json"] = marker
		return fresh

	def assert_never_stale(self, watch: Watch, label: str) -> None:
		print(
			f"\n{self.edge_class.__name__} {label}: {watch.walks} walks, {len(watch.stale)} stale, "
			f"{len(watch.failures)} failed, edited files served locally {watch.local} / by the CDN "
			f"{watch.cdn} times; first through the CDN (s): {sorted(watch.first_cdn.values())}; "
			f"edge stats {edge.stats()}"
		)
		self.assertEqual(watch.stale, [], label)
		self.assertEqual(watch.failures, [], label)

	def check_edits(self, **values) -> tuple[str, list[str]]:
		plan, names = self.published(**values)
		fresh = self.edit_units(names, "edited")
		self.assert_never_stale(self.watch(plan, fresh), f"5 edits {values or 'unversioned'}")
		self.settle(plan, fresh)
		return plan, names

	def test_edits_then_a_delete_and_a_rollback(self):
		plan, names = self.check_edits()
		self.student_walk(plan)  # the edge keeps the edited versions
		unit = f"units/{names[1]}.json"
		frappe.delete_doc("Unit", names[0])
		frappe.db.commit()
		api.rollback(unit)
		frappe.db.commit()
		before = {unit: f"b {names[1]}"}
		watch = self.watch(plan, before, gone={f"units/{names[0]}.json"})
		self.assert_never_stale(watch, "a delete and a rollback")
		self.settle(plan, before)

	def test_edits_with_versioned_urls(self):
		self.check_edits(version_in_urls=1)

	def test_failover_cycle(self):
		plan, names = self.published(
			auto_failover=1, probe_interval=INTERVAL, failover_after=2, recover_after=3
		)
		failover.reset("test")
		frappe.db.commit()
		self.front.stop()  # the edge is unreachable; it keeps its copies
		self.wait_state("Down")
		fresh = self.edit_units(names, "outage")
		self.front.start()
		self.wait_state("Healthy")
		self.assert_never_stale(self.watch(plan, fresh), "after a failover cycle")
		self.settle(plan, fresh)

	def wait_state(self, state: str) -> None:
		deadline = time.monotonic() + SETTLE_S
		while time.monotonic() < deadline:
			frappe.db.rollback()
			if frappe.db.get_single_value("CDN Health", "state", cache=False) == state:
				return
			time.sleep(0.5)
		self.fail(f"CDN Health did not become {state}")

	def path_of_url(self, url: str) -> tuple[str, str]:
		for where, base in (("cdn", self.cdn_base), ("local", f"{self.base}/files/memora_content")):
			if url.startswith(base + "/"):
				return where, unquote(url[len(base) + 1 :].partition("?")[0])
		raise AssertionError(f"{url} is neither a CDN nor a local content URL")


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
@unittest.skipUnless(find_varnishd(), VARNISH_MISSING)
class TestVarnishPurge(EdgeScenarios, PublishingTestCase):
	"""Varnish, purged with HTTP PURGE after each upload: edges keep copies long (s-maxage)."""

	edge_class = Varnish
	purge_provider = purge.VARNISH

	def test_test_connection_checks_that_a_purge_reaches_the_edge(self):
		ok, message = edge.check_purge()
		self.assertTrue(ok, message)
		self.use(self.proxy.url, cdn_purge=purge.VARNISH, purge_endpoint=self.proxy.url)  # not the edge
		ok, message = edge.check_purge()
		self.assertFalse(ok, message)


@unittest.skipUnless(S3_ENDPOINT, S3_SKIP_REASON)
@unittest.skipUnless(find_nginx(), "nginx is not installed")
class TestNginxHold(EdgeScenarios, PublishingTestCase):
	"""nginx proxy_cache, which nothing purges: URLs stay local until the old copies expire."""

	edge_class = NginxCache
	purge_provider = purge.NONE


class TestHoldRecord(unittest.TestCase):
	"""The hold as the delivery hash stores it: `c<sha>@<until>`, local until then."""

	path = "units/hold-record-test.json"

	def tearDown(self) -> None:
		delivery_hash.forget([self.path])
		delivery_hash.release({self.path: 0})

	def test_a_held_path_is_local_until_its_hold_ends(self):
		self.assertEqual(
			delivery_hash.delivery_of(b"cabc@1000", now=999), delivery_hash.Delivery(False, "abc")
		)
		self.assertTrue(delivery_hash.delivery_of(b"cabc@1000", now=1000).on_cdn)
		self.assertEqual(delivery_hash.delivery_of(b"c@1000", now=999), delivery_hash.Delivery(False, None))
		self.assertEqual(delivery_hash.delivery_of(b"c@1000", now=1000), delivery_hash.Delivery(True, None))
		self.assertEqual(delivery_hash.delivery_of(b"labc"), delivery_hash.Delivery(False, "abc"))

	def test_promote_holds_a_mark_on_the_cdn_keeps_it_and_release_ends_it(self):
		until = int(time.time()) + 600
		delivery_hash.mark_local(self.path, "abc")
		self.assertEqual(delivery_hash.promote({self.path: "abc"}, held={self.path: until}), 1)
		self.assertEqual(delivery_hash.read([self.path]).deliveries[0], delivery_hash.Delivery(False, "abc"))
		delivery_hash.mark({self.path: delivery_hash.state(True, "abc")})  # same bytes rendered again
		self.assertFalse(delivery_hash.read([self.path]).deliveries[0].on_cdn)
		self.assertEqual(delivery_hash.ended_holds(now=until - 1), {})
		self.assertEqual(delivery_hash.ended_holds(now=until).get(self.path), until)
		delivery_hash.release({self.path: until})
		self.assertEqual(delivery_hash.read([self.path]).deliveries[0], delivery_hash.Delivery(True, "abc"))
		delivery_hash.mark_local(self.path, "def")  # a newer version: no hold is left on it
		self.assertEqual(delivery_hash.read([self.path]).deliveries[0], delivery_hash.Delivery(False, "def"))
