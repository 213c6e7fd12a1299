"""Behind a caching edge (edge.py), on a real site with a worker and a scheduler: how soon an edit is
served through the CDN URL, what the hold costs this server, and how often the edge answers itself.

The CDN Base URL is a real edge in front of a moto bucket: Varnish purged with HTTP PURGE (listing
files `public, max-age=0, s-maxage=3600`), or nginx proxy_cache with no purge (`public,
max-age=MAX_AGE`: the hold). For each, 5 units are edited one after the other, and for each:

- save → the unit's CDN URL serves the new bytes through the edge (polled every 0.1 s);
- a student walks every link from the API's manifest URL once a second for WALK_S seconds: stale
  answers (must be 0), and GETs served by this server, per edited file (the hold's cost);
- then a minute of walks with no edit: the edge's hit ratio (X-Cache) on CDN answers.

Run with the bench's Python from its `sites` folder, as the bench's user (`python -m benchmarks
--only edge` does it):

    cd BENCH/sites && ../env/bin/python /path/to/benchmarks/bench_edge.py --bench BENCH --site SITE

It replaces the site's CDN Settings and Content File rows: a throwaway site only.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import frappe
import requests

from benchmarks.common import (
	add_bench_arguments,
	bench_and_site,
	markdown_table,
	moto_server_command,
	percentile,
	write_results,
)

MAX_AGE = 10
UNITS = 5
PREFIX = "content"


def _free_port() -> int:
	import socket

	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, str]:
	command, env = moto_server_command()
	port = _free_port()
	process = subprocess.Popen(
		[*command, "-H", "127.0.0.1", "-p", str(port)],
		env={**os.environ, **env},
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	url = f"http://127.0.0.1:{port}"
	for _ in range(150):
		try:
			requests.get(url, timeout=1)
			return process, url
		except requests.ConnectionError:
			time.sleep(0.2)
	raise RuntimeError("moto did not start")


class Scenario:
	"""One edge, one bucket, a plan of UNITS units on the CDN."""

	def __init__(self, name: str, endpoint: str, edge, provider: str, cache_control: str, local_base: str):
		from memora_storage.tests.student import public_bucket
		from memora_storage.tests.utils import S3_KEYS, set_cdn_settings

		self.name, self.edge, self.tag = name, edge, f"{name}{int(time.time())}"
		self.bucket = f"memora-edge-{self.tag.lower()}"
		os.environ["MEMORA_TEST_S3_ENDPOINT"] = endpoint
		import memora_storage.tests.utils as test_utils

		test_utils.S3_ENDPOINT = endpoint
		public_bucket(self.bucket)
		self.cdn_base = f"{edge.url}/{self.bucket}/{PREFIX}"
		self.local_base = f"{local_base}/files/memora_content"
		set_cdn_settings(
			enable_cdn=1,
			cdn_base_url=self.cdn_base,
			bucket=self.bucket,
			endpoint_url=endpoint,
			key_prefix=PREFIX,
			local_domain=local_base,
			cdn_purge=provider,
			cache_control_listing=cache_control,
			**S3_KEYS,
		)
		self.http = requests.Session()

	def where(self, url: str) -> str:
		return "cdn" if url.startswith(self.cdn_base) else "local"

	def walk(self, plan: str) -> list[tuple[str, str, str, str]]:
		"""(url, where, body, X-Cache) of every file reached from the API's manifest URL."""
		from memora_storage.api import get_content_url

		seen, todo = [], [get_content_url(f"plans/{plan}/manifest.json")]
		while todo:
			url = todo.pop()
			response = self.http.get(url, timeout=30)
			response.raise_for_status()
			seen.append((url, self.where(url), response.text, response.headers.get("X-Cache", "")))
			data = frappe.parse_json(response.text)
			for key in ("subjects", "units"):
				todo += [link["url"] for link in data.get(key, [])]
		return seen

	def publish(self) -> tuple[str, list[str]]:
		plan = frappe.get_doc(
			{"doctype": "Plan", "name": f"plan-{self.tag}", "title": f"plan-{self.tag}"}
		).insert(ignore_permissions=True)
		subject = frappe.get_doc(
			{
				"doctype": "Subject",
				"name": f"subject-{self.tag}",
				"title": f"subject-{self.tag}",
				"plan": plan.name,
			}
		).insert(ignore_permissions=True)
		units = [
			frappe.get_doc(
				{
					"doctype": "Unit",
					"name": f"unit-{self.tag}-{n}",
					"title": f"unit-{self.tag}-{n}",
					"subject": subject.name,
					"body": f"b{n}",
				}
			)
			.insert(ignore_permissions=True)
			.name
			for n in range(UNITS)
		]
		frappe.db.commit()
		deadline = time.monotonic() + 300
		while time.monotonic() < deadline:
			frappe.db.rollback()
			if {where for _u, where, _b, _c in self.walk(plan.name)} == {"cdn"}:
				self.walk(plan.name)  # the edge keeps every file
				return plan.name, units
			time.sleep(1)
		raise RuntimeError(f"{self.name}: the plan did not reach the CDN")

	def edit_and_watch(self, plan: str, units: list[str], walk_s: float) -> dict:
		"""Edit the units one after the other; per edit, save → its CDN URL serves the new bytes."""
		from memora_storage.utils.paths import url_path

		latencies, stale, local, requests_total = [], 0, 0, 0
		markers = {}
		for n, unit in enumerate(units):
			marker = f"edited-{self.tag}-{n}"
			cdn_url = f"{self.cdn_base}/{url_path(f'units/{unit}.json')}"
			seen_at: list[float] = []

			def poll(url=cdn_url, marker=marker, seen_at=seen_at):
				session, stop = requests.Session(), time.monotonic() + 300
				while time.monotonic() < stop:
					if marker in session.get(url, timeout=30).text:
						seen_at.append(time.monotonic())
						return
					time.sleep(0.1)

			doc = frappe.get_doc("Unit", unit)
			doc.body = marker
			saved = time.monotonic()
			doc.save(ignore_permissions=True)
			frappe.db.commit()
			thread = threading.Thread(target=poll, daemon=True)
			thread.start()
			markers[f"units/{unit}.json"] = marker
			thread.join()
			latencies.append(seen_at[0] - saved if seen_at else float("nan"))
		started = time.monotonic()
		while time.monotonic() - started < walk_s:
			frappe.db.rollback()
			for url, where, body, _cache in self.walk(plan):
				requests_total += 1
				local += where == "local"
				path = next((p for p in markers if url.split("?")[0].endswith(url_path(p))), None)
				if path and markers[path] not in body:
					stale += 1
			time.sleep(1)
		return {
			"save_to_cdn_p50_s": round(percentile(latencies, 50), 2),
			"save_to_cdn_max_s": round(max(latencies), 2),
			"stale_answers": stale,
			"walk_requests": requests_total,
			"local_requests_per_edited_file": round(local / len(units), 1),
		}

	def hit_ratio(self, plan: str, seconds: float) -> float:
		hits = total = 0
		started = time.monotonic()
		while time.monotonic() - started < seconds:
			for _url, where, _body, cache in self.walk(plan):
				if where == "cdn":
					total += 1
					hits += cache == "HIT"
			time.sleep(1)
		return round(hits / total, 3) if total else 0.0


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	add_bench_arguments(parser)
	parser.add_argument("--quick", action="store_true", help="shorter walks (smoke run)")
	args = parser.parse_args()
	bench, site = bench_and_site(parser, args)
	if not bench:
		print("skipped: needs --bench and --site (a throwaway site)")
		return
	frappe.init(site=site, sites_path=str(bench / "sites"))
	frappe.connect()
	frappe.set_user("Administrator")
	from memora_storage.demo import ensure_content_doctypes
	from memora_storage.tests.edges import NginxCache, Varnish
	from memora_storage.tests.nginx import Nginx
	from memora_storage.tests.utils import start_scheduler, start_worker, stop
	from memora_storage.utils import purge

	ensure_content_doctypes()
	walk_s = 20 if args.quick else 90
	# A running moto (MEMORA_TEST_S3_ENDPOINT, as the Frappe suite uses), else one of our own.
	moto, endpoint = (
		(None, os.environ["MEMORA_TEST_S3_ENDPOINT"])
		if os.environ.get("MEMORA_TEST_S3_ENDPOINT")
		else _start_moto()
	)
	prefix = tempfile.mkdtemp(prefix="memora-bench-edge-")
	files = Nginx(os.path.abspath(frappe.local.sites_path), site, prefix).start()
	worker, scheduler = start_worker(), start_scheduler()
	load = os.getloadavg()
	results, rows = {}, []
	try:
		moto_port = int(endpoint.rsplit(":", 1)[1])
		for name, edge_class, provider, cache_control in (
			("purge", Varnish, purge.VARNISH, "public, max-age=0, s-maxage=3600"),
			("hold", NginxCache, purge.NONE, f"public, max-age={MAX_AGE}"),
		):
			with edge_class(moto_port) as edge:
				scenario = Scenario(name, endpoint, edge, provider, cache_control, files.url)
				plan, units = scenario.publish()
				figures = scenario.edit_and_watch(plan, units, walk_s)
				figures["edge_hit_ratio"] = scenario.hit_ratio(plan, 20 if args.quick else 60)
				results[name] = figures
				rows.append([name, cache_control, *figures.values()])
	finally:
		stop(scheduler)
		stop(worker)
		files.stop()
		if moto:
			moto.terminate()
		shutil.rmtree(prefix, ignore_errors=True)
	table = markdown_table(
		[
			"edge",
			"Cache-Control",
			"save → CDN URL new, p50 (s)",
			"max (s)",
			"stale answers",
			"walk GETs",
			"local GETs per edited file",
			"edge hit ratio",
		],
		rows,
	)
	results["goals"] = {
		"purge_p50_le_2s": results["purge"]["save_to_cdn_p50_s"] <= 2,
		"hold_p50_le_max_age_plus_2s": results["hold"]["save_to_cdn_p50_s"] <= MAX_AGE + 2,
		"no_stale": results["purge"]["stale_answers"] == 0 and results["hold"]["stale_answers"] == 0,
	}
	results["load_average_at_start"] = load
	results["walk_s"] = walk_s
	write_results("bench_edge", results, table)


if __name__ == "__main__":
	main()
