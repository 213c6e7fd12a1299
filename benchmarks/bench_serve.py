"""Serving content files in fallback mode under load (SC-004): `wrk` with 1,000 concurrent connections
against nginx configured with bench's static-file rule, then the same load against the Frappe dev
server, over the same files and the same mix of paths.

Content is rendered as the app renders it (plan manifests listing subjects, subjects listing units,
units of 0.5-16 KB, some names in Arabic, every link from the resolver in fallback mode) into a
folder of its own under the site's public files, `public/files/memora_bench_serve/`, so the site's
content scans and CDN verification never see it; it is removed at the end. Every path is fetched
once from each server and compared with the bytes on disk before the load starts.

With a bench and site (`--bench` and `--site`, or MEMORA_BENCH and MEMORA_SITE: never a guess, as
the files go into that site), the dev server is `bench --site SITE serve` run as the bench's owner
(Werkzeug, as a developer runs it; it binds 0.0.0.0, the load goes to 127.0.0.1 only). Without them
(or with --no-bench), a temporary site folder and a plain Werkzeug SharedDataMiddleware app stand
in; the results say which one ran.

Each server gets `--repeat` rounds, alternating which goes first so both share whatever else loads
the machine; the table shows each server's round with the median requests/s, the JSON every round.
Goal for nginx: zero non-2xx answers, zero socket errors, p99 under 100 ms.

    python -m benchmarks.bench_serve [--connections 1000] [--duration 12] [--repeat 3] [--plans 20]
                                     [--bench BENCH --site SITE] [--no-bench]

Needs `wrk` and `nginx` (Debian: apt-get install wrk nginx).
"""

import argparse
import http.client
import json
import os
import pwd
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
	sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, add_bench_arguments, bench_and_site, markdown_table, write_results
from memora_storage.tests.nginx import NOT_INSTALLED, Nginx, find_nginx, free_port
from memora_storage.utils import canonical, paths
from memora_storage.utils.resolver import UrlSettings, build_url
from memora_storage.utils.store import ContentStore

FOLDER = "memora_bench_serve"  # under public/files, beside memora_content, never inside it
STANDALONE_SITE = "bench-serve.localhost"
GOAL_P99_MS = 100.0
WORDS = "خطة مادة وحدة درس تمرين سؤال جواب plan subject unit lesson quiz answer".split()
# nginx for 1,000 connections on 2 workers, within this machine's open-files limit of 20,000.
NGINX_TUNING = {"worker_connections": 8192, "rlimit_nofile": 16384, "backlog": 4096}

LUA = r"""
local paths = {%(paths)s}
local threads = {}

function setup(thread)
	table.insert(threads, thread)
	thread:set("id", #threads)
end

function init(args)
	math.randomseed(id * 7919)
	non2xx = 0
end

function request()
	return wrk.format("GET", paths[math.random(#paths)])
end

function response(status, headers, body)
	if status < 200 or status > 299 then
		non2xx = non2xx + 1
	end
end

function done(summary, latency, requests)
	local non = 0
	for _, thread in ipairs(threads) do
		non = non + thread:get("non2xx")
	end
	local e = summary.errors
	io.write(string.format(
		'MEMORA-WRK {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, ' ..
		'"write": %%d, "timeout": %%d, "status_4xx_5xx": %%d, "non2xx": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
		'"p99_us": %%d, "max_us": %%d, "mean_us": %%.1f}\n',
		summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout, e.status,
		non, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def generate(root: Path, lock_dir: Path, local_domain: str, plans: int, seed: int = 4) -> dict[str, bytes]:
	"""Plans of 10 subjects of 10 units each, rendered with links as publishing.py renders them; path → bytes."""
	rng = random.Random(seed)
	store = ContentStore(root, lock_dir)
	fallback = UrlSettings(
		local_domain=local_domain,
		enable_cdn=True,
		cdn_base_url="https://cdn.example.com",
		local_fallback_mode=True,
	)
	files: dict[str, bytes] = {}

	def write(path: str, data: dict) -> None:
		files[path] = canonical.dumps(data)
		store.write(path, files[path])

	def link(path: str, name: str) -> dict:
		return {"name": name, "title": name, "url": build_url(path, fallback)}

	for p in range(plans):
		plan = f"خطة-{p:03}" if p % 5 == 0 else f"plan-{p:03}"
		subject_links = []
		for s in range(10):
			subject = f"{plan}-s{s}"
			subject_path = f"plans/{plan}/subjects/{subject}.json"
			unit_links = []
			for u in range(10):
				unit = f"وحدة {subject} {u}" if u == 0 else f"{subject}-u{u}"
				unit_path = f"units/{unit}.json"
				target, size, body = rng.randint(500, 16 * 1024), 0, []
				while size < target:
					body.append(rng.choice(WORDS))
					size += len(body[-1].encode()) + 1
				write(
					unit_path, {"doctype": "Unit", "name": unit, "subject": subject, "body": " ".join(body)}
				)
				unit_links.append(link(unit_path, unit))
			write(subject_path, {"doctype": "Subject", "name": subject, "plan": plan, "units": unit_links})
			subject_links.append(link(subject_path, subject))
		write(f"plans/{plan}/manifest.json", {"doctype": "Plan", "name": plan, "subjects": subject_links})
	return files


def url_of(path: str) -> str:
	"""The URL path a client requests for a file of this benchmark's folder."""
	return f"/files/{FOLDER}/{paths.url_path(path)}"


def check_bytes(base: str, files: dict[str, bytes]) -> None:
	"""Every file once, over keep-alive connections: 200 and the exact bytes, or stop here."""
	host, port = base.removeprefix("http://").split(":")
	local = threading.local()

	def fetch(item: tuple[str, bytes]) -> str | None:
		path, data = item
		if not hasattr(local, "conn"):
			local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
		local.conn.request("GET", url_of(path))
		response = local.conn.getresponse()
		body = response.read()
		return None if response.status == 200 and body == data else f"{path}: HTTP {response.status}"

	with ThreadPoolExecutor(max_workers=8) as pool:
		wrong = [problem for problem in pool.map(fetch, files.items()) if problem]
	if wrong:
		raise SystemExit(f"{base} served {len(wrong)} of {len(files)} files wrong, e.g. {wrong[:3]}")


def raise_nofile() -> None:
	"""wrk needs a descriptor per connection: lift the soft limit to the hard one."""
	_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_wrk(base: str, script: Path, connections: int, duration: int, threads: int, timeout: int) -> dict:
	command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout}s"]
	out = subprocess.run(
		[*command, "-s", str(script), base],
		capture_output=True,
		text=True,
		preexec_fn=raise_nofile,
		timeout=duration + 60,
		check=True,
	).stdout
	line = next(line for line in out.splitlines() if line.startswith("MEMORA-WRK "))
	result = json.loads(line.removeprefix("MEMORA-WRK "))
	seconds = result["duration_us"] / 1e6
	result["requests_per_s"] = result["requests"] / seconds
	result["mb_per_s"] = result["bytes"] / seconds / 2**20
	result["socket_errors"] = sum(result[key] for key in ("connect", "read", "write", "timeout"))
	return result


class DevServer:
	"""The dev server on a free port: `bench serve` as the bench's owner, or a plain Werkzeug app."""

	def __init__(self, workdir: Path, bench: Path | None, site: str, files_dir: Path):
		self.port = free_port()
		self.url = f"http://127.0.0.1:{self.port}"
		self.log = workdir / "dev-server.log"
		if bench:
			owner = pwd.getpwuid(bench.stat().st_uid)
			self.command = ["bench", "--site", site, "serve", "--port", str(self.port), "--noreload"]
			self.kind = f"bench serve (Frappe dev server, Werkzeug) for {site} as {owner.pw_name}"
			self.cwd = bench
			self.user = owner.pw_name if os.geteuid() != owner.pw_uid else None
			self.env = {**os.environ, "HOME": owner.pw_dir, "USER": owner.pw_name, "LOGNAME": owner.pw_name}
		else:
			self.command = [
				sys.executable,
				"-m",
				"benchmarks.bench_serve",
				"--werkzeug",
				str(files_dir),
				str(self.port),
			]
			self.kind = "Werkzeug SharedDataMiddleware (threaded), no bench on this machine"
			self.cwd = Path(__file__).resolve().parent.parent
			self.user = None
			self.env = dict(os.environ)
		self._process: subprocess.Popen | None = None

	def __enter__(self) -> "DevServer":
		with open(self.log, "wb") as log:
			self._process = subprocess.Popen(
				self.command,
				cwd=self.cwd,
				env=self.env,
				user=self.user,
				stdin=subprocess.DEVNULL,
				stdout=log,
				stderr=subprocess.STDOUT,
				preexec_fn=raise_nofile,
			)
		deadline = time.monotonic() + 90
		while time.monotonic() < deadline:
			if self._process.poll() is not None:
				raise SystemExit(f"the dev server exited: {self.log.read_text(errors='replace')[-2000:]}")
			try:
				socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
				return self
			except OSError:
				time.sleep(0.3)
		self.__exit__()
		raise SystemExit(f"the dev server did not listen on {self.url} within 90 s")

	def __exit__(self, *exc) -> None:
		if self._process and self._process.poll() is None:
			self._process.terminate()
			try:
				self._process.wait(15)
			except subprocess.TimeoutExpired:
				self._process.kill()
				self._process.wait()


def werkzeug_child(files_dir: str, port: int) -> None:
	"""The stand-in dev server: Werkzeug serving `/files` from a folder, threaded, as `bench serve` does."""
	from werkzeug.exceptions import NotFound
	from werkzeug.middleware.shared_data import SharedDataMiddleware
	from werkzeug.serving import run_simple

	run_simple("127.0.0.1", port, SharedDataMiddleware(NotFound(), {"/files": files_dir}), threaded=True)


def summary(result: dict) -> str:
	return (
		f"{result['requests_per_s']:,.0f} req/s, p50 {result['p50_us'] / 1000:.1f} ms, "
		f"p99 {result['p99_us'] / 1000:.1f} ms, {result['non2xx']} non-2xx, {result['socket_errors']} socket errors"
	)


def median_round(results: list[dict]) -> dict:
	"""The round with the median requests/s: one real run, not a blend of several."""
	return sorted(results, key=lambda result: result["requests_per_s"])[len(results) // 2]


def meets_goal(result: dict) -> bool:
	return result["non2xx"] == 0 and result["socket_errors"] == 0 and result["p99_us"] / 1000 < GOAL_P99_MS


def row(server: str, result: dict, ratio: float) -> list:
	ms = lambda us: round(us / 1000, 2)  # noqa: E731
	errors = "/".join(str(result[key]) for key in ("connect", "read", "write", "timeout"))
	return [
		server,
		result["requests"],
		round(result["requests_per_s"]),
		ms(result["p50_us"]),
		ms(result["p99_us"]),
		ms(result["max_us"]),
		result["non2xx"],
		f"{result['socket_errors']} ({errors})",
		round(result["mb_per_s"], 1),
		round(ratio, 1),
	]


def main(argv: list[str] | None = None) -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--connections", type=int, default=1000)
	parser.add_argument(
		"--duration", type=int, default=12, help="seconds of load per server (default: %(default)s)"
	)
	parser.add_argument("--timeout", type=int, default=5, help="wrk's per-request timeout in seconds")
	parser.add_argument("--repeat", type=int, default=3, help="rounds per server; the median one is reported")
	parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="wrk threads")
	parser.add_argument(
		"--plans", type=int, default=20, help="plans of 10 subjects × 10 units (default: %(default)s)"
	)
	add_bench_arguments(parser)
	parser.add_argument(
		"--no-bench", action="store_true", help="ignore --bench/--site: a temporary site and plain Werkzeug"
	)
	parser.add_argument("--werkzeug", nargs=2, metavar=("DIR", "PORT"), help=argparse.SUPPRESS)
	args = parser.parse_args(argv)
	if args.werkzeug:
		werkzeug_child(args.werkzeug[0], int(args.werkzeug[1]))
		return 0
	missing = [what for what, found in (("wrk", shutil.which("wrk")), ("nginx", find_nginx())) if not found]
	if missing:
		print(
			f"{', '.join(missing)} not installed (Debian: apt-get install wrk nginx); {NOT_INSTALLED}",
			file=sys.stderr,
		)
		return 2

	bench, site = (None, None) if args.no_bench else bench_and_site(parser, args)
	site = site or STANDALONE_SITE
	base = RESULTS_DIR / "tmp"
	base.mkdir(parents=True, exist_ok=True)
	workdir = Path(tempfile.mkdtemp(prefix="bench_serve.", dir=base))
	workdir.chmod(0o755)  # nginx workers run as the web server's user
	sites_path = bench / "sites" if bench else workdir / "sites"
	files_dir = sites_path / site / "public" / "files"
	content = files_dir / FOLDER
	if content.exists():
		parser.error(f"{content} exists: a previous run did not finish; remove it first")
	try:
		nginx = Nginx(sites_path, site, workdir / "nginx", **NGINX_TUNING)
		started = time.perf_counter()
		files = generate(content, workdir / "locks", nginx.url, args.plans)
		sizes = sorted(len(data) for data in files.values())
		print(
			f"{len(files):,} files ({sum(sizes) / 2**20:.1f} MiB) in {time.perf_counter() - started:.1f} s under {content}",
			file=sys.stderr,
		)
		script = workdir / "paths.lua"
		script.write_text(
			LUA % {"paths": ",\n".join(json.dumps(url_of(path)) for path in sorted(files))}, encoding="utf-8"
		)
		load = (args.connections, args.duration, args.threads, args.timeout)

		with nginx, DevServer(workdir, bench, site, files_dir) as dev:
			for server, url in (("nginx", nginx.url), (dev.kind, dev.url)):
				check_bytes(url, files)
				print(f"{server} at {url}: every file served with its exact bytes", file=sys.stderr)
			rounds: dict[str, list[dict]] = {"nginx": [], "dev_server": []}
			for n in range(args.repeat):
				# Alternate which goes first, so both see the same share of other load on the machine.
				order = [("nginx", nginx.url), ("dev_server", dev.url)]
				for key, url in order if n % 2 == 0 else order[::-1]:
					rounds[key].append(run_wrk(url, script, *load))
					print(f"round {n + 1} {key}: {summary(rounds[key][-1])}", file=sys.stderr)
		nginx_problems = [
			line
			for line in nginx.error_log.read_text(errors="replace").splitlines()
			if any(level in line for level in ("[error]", "[crit]", "[alert]", "[emerg]"))
		]
	finally:
		shutil.rmtree(content, ignore_errors=True)
		shutil.rmtree(workdir, ignore_errors=True)

	nginx_result, dev_result = median_round(rounds["nginx"]), median_round(rounds["dev_server"])
	ratio = nginx_result["requests_per_s"] / dev_result["requests_per_s"]
	goal_rounds = sum(meets_goal(result) for result in rounds["nginx"])
	goal_met = meets_goal(nginx_result)
	table = markdown_table(
		[
			"server",
			"requests",
			"requests/s",
			"p50 ms",
			"p99 ms",
			"max ms",
			"non-2xx",
			"socket errors (connect/read/write/timeout)",
			"MB/s",
			"× dev server req/s",
		],
		[row("nginx, bench's /files rule", nginx_result, ratio), row(dev.kind, dev_result, 1.0)],
	)
	write_results(
		"bench_serve",
		{
			"mode": "bench" if bench else "standalone",
			"site": site,
			"dev_server": dev.kind,
			"nginx": subprocess.run([nginx.binary, "-v"], capture_output=True, text=True).stderr.strip(),
			"nginx_tuning": NGINX_TUNING,
			"nginx_error_log_problems": nginx_problems[:20],
			"wrk": {
				"connections": args.connections,
				"duration_s": args.duration,
				"threads": args.threads,
				"timeout_s": args.timeout,
			},
			"somaxconn": int(Path("/proc/sys/net/core/somaxconn").read_text())
			if Path("/proc/sys/net/core/somaxconn").exists()
			else None,
			"files": len(files),
			"bytes": sum(sizes),
			"size_bytes": {"min": sizes[0], "median": sizes[len(sizes) // 2], "max": sizes[-1]},
			"goal": {
				"non2xx": 0,
				"socket_errors": 0,
				"p99_ms_max": GOAL_P99_MS,
				"met": goal_met,
				"rounds_met": f"{goal_rounds}/{len(rounds['nginx'])}",
			},
			"nginx_vs_dev_requests_ratio": ratio,
			"repeat": args.repeat,
			"results": {"nginx": nginx_result, "dev_server": dev_result},
			"rounds": rounds,
		},
		table,
	)
	print(
		f"\nnginx, median of {args.repeat} rounds: {summary(nginx_result)}: goal {'met' if goal_met else 'NOT met'} "
		f"({goal_rounds} of {args.repeat} rounds met it); {ratio:.1f}× the dev server's requests/s"
	)
	return 0


if __name__ == "__main__":
	sys.exit(main())
