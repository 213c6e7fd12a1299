"""The URL resolver as a real site runs it: the Frappe-layer calls in a warm process, the HTTP
endpoints over the dev server, and 2,000 resolutions inside one page request; the core resolver
(`memora_storage.utils.resolver.get_content_url`) measured in the same run as the anchor.

Goals: `memora_storage.api.get_content_url` at least 20,000 single-path calls per second in a
warm process, and a batch of 1,000 paths (`api.get_content_urls`) within 50 ms. Each call's Redis
cost is counted twice: the commands this process sent (a counter on redis-py's connection, exact)
and the server's INFO commandstats delta (the whole server, so other users' commands show too;
the least of several repeats is kept).

The 1,000 paths are made up for the run and marked in the site's delivery hash (half on the CDN,
half local), as Content File rows would mark them; the marks are removed at the end. Two Web
Pages with a Jinja loop (one resolving 2,000 URLs with the `get_content_url` Jinja helper, one
only building the same strings) give the resolver's cost inside one request; they are deleted at
the end. The site's CDN Settings are used as found (the table says which mode they were in).

    cd BENCH/sites && ../env/bin/python /path/to/memora_storage/benchmarks/bench_site_resolver.py \\
        --bench BENCH --site SITE [--calls 100000] [--repeat 5]

(or MEMORA_BENCH and MEMORA_SITE; `python -m benchmarks --only site_resolver` does this for you).
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import frappe
import redis

from benchmarks.common import add_bench_arguments, bench_and_site, markdown_table, percentile, write_results

GOAL_SINGLE_PER_S = 20_000
GOAL_BATCH_MS = 50.0
BATCH = 1000  # api.MAX_BATCH
IN_REQUEST = 2000


class CommandCounter:
	"""Redis commands sent by this process, by name: redis-py's Connection.send_command, counted."""

	def __init__(self) -> None:
		self.counts: Counter = Counter()
		original = redis.connection.Connection.send_command
		counts = self.counts

		def send_command(connection, *args, **kwargs):
			counts[str(args[0]).lower()] += 1
			return original(connection, *args, **kwargs)

		redis.connection.Connection.send_command = send_command

	def measure(self, body: Callable[[], None]) -> dict[str, int]:
		before = Counter(self.counts)
		body()
		return dict(self.counts - before)


def server_commands() -> Counter:
	"""INFO commandstats of the whole Redis server: calls per command."""
	stats = redis.Redis.info(frappe.cache, "commandstats")
	return Counter({key.removeprefix("cmdstat_"): value["calls"] for key, value in stats.items()})


def server_delta(body: Callable[[], None], repeat: int = 5) -> dict[str, int]:
	"""The least INFO commandstats delta over `repeat` runs of `body` (others' commands add to some)."""
	best = None
	for _ in range(repeat):
		before = server_commands()
		body()
		delta = server_commands() - before
		delta.pop("info", None)
		if best is None or sum(delta.values()) < sum(best.values()):
			best = delta
	return dict(best or {})


def rate(calls: int, body: Callable[[], None], repeat: int) -> dict[str, float]:
	"""Calls per second of `body` (which makes `calls` calls): best and median of `repeat` runs."""
	rates = []
	for _ in range(repeat):
		started = time.perf_counter()
		body()
		rates.append(calls / (time.perf_counter() - started))
	return {"best": max(rates), "median": statistics.median(rates)}


def latencies(body: Callable[[], object], times: int) -> list[float]:
	out = []
	for _ in range(times):
		started = time.perf_counter()
		body()
		out.append((time.perf_counter() - started) * 1000)
	return out


def summary(values: list[float]) -> dict[str, float]:
	return {
		"p50": percentile(values, 50),
		"p99": percentile(values, 99),
		"min": min(values),
		"n": len(values),
	}


def free_port() -> int:
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


def start_dev_server(bench: Path, site: str) -> tuple[subprocess.Popen, str]:
	"""What `bench serve` runs, for this site on a free port; the caller stops it."""
	import requests

	port = free_port()
	server = subprocess.Popen(
		[
			*(str(bench / "env" / "bin" / "python"), "-m", "frappe.utils.bench_helper", "frappe"),
			*("--site", site, "serve", "--port", str(port), "--noreload"),
		],
		cwd=bench / "sites",
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


def jinja_loop(expression: str) -> str:
	"""A template printing `expression` for i in 0..1,999, one per line."""
	return "{% for i in range(" + str(IN_REQUEST) + ") %}{{ " + expression + " }}\n{% endfor %}"


def jinja_page(name: str, body: str) -> str:
	"""A published Web Page whose HTML is a Jinja template (rendered per request, never cached)."""
	frappe.get_doc(
		{
			"doctype": "Web Page",
			"name": name,
			"title": name,
			"route": name,
			"published": 1,
			"content_type": "HTML",
			"dynamic_template": 1,
			"main_section_html": body,
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()
	return name


def main() -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	add_bench_arguments(parser)
	parser.add_argument(
		"--calls", type=int, default=100_000, help="calls per timed run (default: %(default)s)"
	)
	parser.add_argument("--repeat", type=int, default=5)
	parser.add_argument(
		"--http", type=int, default=300, help="single-path HTTP requests (rate limit: 1,200/min)"
	)
	parser.add_argument(
		"--http-batch", type=int, default=40, help="1,000-path HTTP requests (limit: 120/min)"
	)
	parser.add_argument("--quick", action="store_true", help="fewer calls and requests: a smoke run")
	args = parser.parse_args()
	bench, site = bench_and_site(parser, args)
	if not bench:
		parser.error("needs --bench and --site (or MEMORA_BENCH and MEMORA_SITE)")
	if args.quick:
		args.calls, args.repeat, args.http, args.http_batch = 10_000, 2, 50, 10

	frappe.init(site=site, sites_path=str(bench / "sites"))
	frappe.connect()
	import requests

	from memora_storage import api, delivery, settings
	from memora_storage.utils import resolver

	counter = CommandCounter()
	tag = frappe.generate_hash(length=6).lower()
	paths = [f"units/br{tag}-{i}.json" for i in range(BATCH)]
	states = {path: delivery.state(i % 2 == 0, f"{i:064x}") for i, path in enumerate(paths)}
	delivery.mark(states)
	url_settings = settings.url_settings()
	on_cdn = [i % 2 == 0 for i in range(BATCH)]
	hot = paths[0]
	pages: list[str] = []
	server = None
	results: dict = {
		"settings": {"uses_cdn": url_settings.uses_cdn, "enable_cdn": url_settings.enable_cdn},
		"mirror_live": None,
	}
	try:
		# Warm: the mirror's listener started, every field read once, Jinja compiled.
		api.get_content_urls(paths)
		for path in paths:
			api.get_content_url(path)
		mirror = delivery._mirror()
		results["mirror_live"] = bool(mirror and mirror.live)
		n = args.calls
		cycle = (paths * (n // BATCH + 1))[:n]
		flags = (on_cdn * (n // BATCH + 1))[:n]

		def core_hot():
			for _ in range(n):
				resolver.get_content_url(hot, url_settings, True)

		def core_cycle():
			for path, state in zip(cycle, flags, strict=True):
				resolver.get_content_url(path, url_settings, state)

		def delivery_hot():
			for _ in range(n):
				delivery.get_content_url(hot)

		def api_hot():
			for _ in range(n):
				api.get_content_url(hot)

		def api_cycle():
			for path in cycle:
				api.get_content_url(path)

		single = {
			"core, one path": rate(n, core_hot, args.repeat),
			"core, 1,000 paths in turn": rate(n, core_cycle, args.repeat),
			"delivery.get_content_url (Jinja helper), one path": rate(n, delivery_hot, args.repeat),
			"api.get_content_url, one path": rate(n, api_hot, args.repeat),
			"api.get_content_url, 1,000 paths in turn": rate(n, api_cycle, args.repeat),
		}
		results["single"] = single
		results["single_redis_commands_per_1000_calls"] = {
			"this_process": counter.measure(lambda: [api.get_content_url(hot) for _ in range(1000)]),
			"server": server_delta(lambda: [api.get_content_url(hot) for _ in range(1000)]),
		}

		# Batches of 1,000: warm (all fields in the mirror) and cold (just after a write to the hash,
		# which drops every process's copy, as each upload's promote does).
		def core_batch():
			return [resolver.get_content_url(p, url_settings, s) for p, s in zip(paths, on_cdn, strict=True)]

		core_ms = latencies(core_batch, 200)
		warm_ms = latencies(lambda: api.get_content_urls(paths), 200)
		cold_ms, cold_commands = [], Counter()
		for i in range(50):
			delivery.mark({paths[i]: states[paths[i]]})  # same value: only the invalidation matters
			time.sleep(0.02)  # the listener thread drops the copy
			before = Counter(counter.counts)
			started = time.perf_counter()
			api.get_content_urls(paths)
			cold_ms.append((time.perf_counter() - started) * 1000)
			cold_commands += Counter(counter.counts) - before
		results["batch"] = {
			"core_ms": summary(core_ms),
			"warm_ms": summary(warm_ms),
			"cold_ms": summary(cold_ms),
			"warm_redis_commands": {
				"this_process": counter.measure(lambda: api.get_content_urls(paths)),
				"server": server_delta(lambda: api.get_content_urls(paths)),
			},
			"cold_redis_commands_per_call": {k: v / 50 for k, v in cold_commands.items()},
		}

		# Over HTTP, through the dev server (`bench serve`): one request after another.
		server, base = start_dev_server(bench, site)
		session = requests.Session()
		session.get(f"{base}/api/method/ping")
		statuses: Counter = Counter()

		def get(url: str, **kwargs):
			response = session.get(url, **kwargs)
			statuses[response.status_code] += 1
			return response

		def post(url: str, **kwargs):
			response = session.post(url, **kwargs)
			statuses[response.status_code] += 1
			return response

		ping_ms = latencies(lambda: get(f"{base}/api/method/ping"), args.http)
		single_url = f"{base}/api/method/memora_storage.api.get_content_url"
		answer = get(single_url, params={"path": hot}).json()["message"]
		assert answer == api.get_content_url(hot), answer
		http_single_ms = latencies(lambda: get(single_url, params={"path": hot}), args.http)
		batch_url = f"{base}/api/method/memora_storage.api.get_content_urls"
		body = {"paths": json.dumps(paths)}
		assert len(post(batch_url, data=body).json()["message"]) == BATCH
		http_batch_ms = latencies(lambda: post(batch_url, data=body), args.http_batch)

		# 2,000 resolutions inside one page request, against the same page only building the strings.
		path_expr = f'"units/br{tag}-" ~ (i % {BATCH}) ~ ".json"'
		templates = {
			"resolving": jinja_loop(f"get_content_url({path_expr})"),
			"building": jinja_loop(path_expr),
		}
		resolving = jinja_page(f"bench-resolver-{tag}-urls", templates["resolving"])
		building = jinja_page(f"bench-resolver-{tag}-strings", templates["building"])
		pages += [resolving, building]
		page_a = get(f"{base}/{resolving}")
		assert page_a.status_code == 200 and api.get_content_url(paths[1]) in page_a.text, page_a.status_code
		page_resolving_ms = latencies(lambda: get(f"{base}/{resolving}"), 20)
		page_building_ms = latencies(lambda: get(f"{base}/{building}"), 20)
		in_process = {
			name: latencies(lambda template=template: frappe.render_template(template, {}), 20)
			for name, template in templates.items()
		}
		per_call_us = (
			(statistics.median(page_resolving_ms) - statistics.median(page_building_ms)) * 1000 / IN_REQUEST
		)
		per_call_in_process_us = (
			(statistics.median(in_process["resolving"]) - statistics.median(in_process["building"]))
			* 1000
			/ IN_REQUEST
		)
		results["http"] = {
			"ping_ms": summary(ping_ms),
			"get_content_url_ms": summary(http_single_ms),
			"get_content_urls_1000_ms": summary(http_batch_ms),
			"statuses": dict(statuses),
			"page_2000_resolving_ms": summary(page_resolving_ms),
			"page_2000_strings_ms": summary(page_building_ms),
			"in_request_us_per_call": per_call_us,
			"render_template_2000_resolving_ms": summary(in_process["resolving"]),
			"render_template_2000_strings_ms": summary(in_process["building"]),
			"render_template_us_per_call": per_call_in_process_us,
		}
	finally:
		if server:
			server.terminate()
			server.wait(10)
		for name in pages:
			frappe.delete_doc("Web Page", name, force=True, ignore_permissions=True)
		frappe.db.commit()
		delivery.forget(paths)

	core = single["core, one path"]["median"]
	api_rate = single["api.get_content_url, one path"]["median"]
	batch = results["batch"]
	http = results["http"]
	results["ratios"] = {
		"api_single_vs_core": api_rate / core,
		"delivery_single_vs_core": single["delivery.get_content_url (Jinja helper), one path"]["median"]
		/ core,
		"api_batch_warm_vs_core_batch": batch["warm_ms"]["p50"] / batch["core_ms"]["p50"],
	}
	met = {
		"single": api_rate >= GOAL_SINGLE_PER_S,
		"batch": batch["cold_ms"]["p99"] <= GOAL_BATCH_MS and batch["warm_ms"]["p99"] <= GOAL_BATCH_MS,
	}
	results["goal"] = {
		"single_calls_per_s_min": GOAL_SINGLE_PER_S,
		"batch_ms_max": GOAL_BATCH_MS,
		**{f"met_{k}": v for k, v in met.items()},
		"met": all(met.values()),
	}
	results["calls"] = args.calls
	results["repeat"] = args.repeat

	def commands(counts: dict) -> str:
		return ", ".join(f"{k} {v:g}" for k, v in sorted(counts.items())) or "none"

	mode = "CDN on" if url_settings.uses_cdn else "CDN off (local URLs)"
	rows = [
		[
			name,
			f"{r['median']:,.0f}",
			f"{r['best']:,.0f}",
			f"{1e9 / r['median']:,.0f}",
			f"{r['median'] / core:.3f}",
		]
		for name, r in single.items()
	]
	table_single = markdown_table(
		["single-path call (warm process)", "calls/s (median)", "calls/s (best)", "ns/call", "vs core"], rows
	)
	table_batch = markdown_table(
		["1,000 paths per call", "p50 ms", "p99 ms", "Redis commands per call (this process)"],
		[
			[
				"core resolver, 1,000 calls",
				round(batch["core_ms"]["p50"], 3),
				round(batch["core_ms"]["p99"], 3),
				"none",
			],
			[
				"api.get_content_urls, warm",
				round(batch["warm_ms"]["p50"], 3),
				round(batch["warm_ms"]["p99"], 3),
				commands(batch["warm_redis_commands"]["this_process"]),
			],
			[
				"api.get_content_urls, just after a write to the hash",
				round(batch["cold_ms"]["p50"], 3),
				round(batch["cold_ms"]["p99"], 3),
				commands(batch["cold_redis_commands_per_call"]),
			],
		],
	)
	table_http = markdown_table(
		["over HTTP (dev server, one client)", "p50 ms", "p99 ms"],
		[
			[
				"GET /api/method/ping (anchor)",
				round(http["ping_ms"]["p50"], 2),
				round(http["ping_ms"]["p99"], 2),
			],
			[
				"GET api.get_content_url",
				round(http["get_content_url_ms"]["p50"], 2),
				round(http["get_content_url_ms"]["p99"], 2),
			],
			[
				"POST api.get_content_urls, 1,000 paths",
				round(http["get_content_urls_1000_ms"]["p50"], 2),
				round(http["get_content_urls_1000_ms"]["p99"], 2),
			],
			[
				"Web Page resolving 2,000 URLs (Jinja get_content_url)",
				round(http["page_2000_resolving_ms"]["p50"], 2),
				round(http["page_2000_resolving_ms"]["p99"], 2),
			],
			[
				"same page, only building the 2,000 strings",
				round(http["page_2000_strings_ms"]["p50"], 2),
				round(http["page_2000_strings_ms"]["p99"], 2),
			],
		],
	)
	notes = (
		f"Settings as found: {mode}; process-local mirror live: {results['mirror_live']}. "
		f"Resolver cost inside one request: {http['in_request_us_per_call']:.2f} µs per URL over HTTP, "
		f"{http['render_template_us_per_call']:.2f} µs in frappe.render_template. "
		f"Redis commands per 1,000 single calls: this process {commands(results['single_redis_commands_per_1000_calls']['this_process'])}; "
		f"server-wide least delta {commands(results['single_redis_commands_per_1000_calls']['server'])}. "
		f"HTTP statuses: {commands({str(k): v for k, v in http['statuses'].items()})}."
	)
	write_results("bench_site_resolver", results, "\n\n".join([table_single, table_batch, table_http, notes]))
	return 0


if __name__ == "__main__":
	sys.exit(main())
