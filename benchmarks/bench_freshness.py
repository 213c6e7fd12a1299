"""Settings freshness on a real Frappe site (SC-002): how long after a CDN Settings save does a second
OS process resolve URLs against the new base, and what does one Frappe-layer resolver call cost.

A child process polls `memora_storage.api.get_content_url` in a loop; the parent flips Enable CDN,
commits, and the child reports the first call that returns the new base. Delay = that call's time
minus the moment the parent's commit (and the publish after it) returned; the time from the start
of the commit is reported too, as an upper bound. Run it with the bench's
Python, from the bench's `sites` folder, as the bench's user:

    cd BENCH/sites && ../env/bin/python /path/to/memora_storage/benchmarks/bench_freshness.py \
        --bench BENCH --site SITE

(or MEMORA_BENCH and MEMORA_SITE; `python -m benchmarks` does all this for you). It changes that
site's CDN Settings while it runs, so it needs both named: it never picks a site itself.

The site's CDN Settings are restored afterwards.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import frappe

from benchmarks.common import add_bench_arguments, bench_and_site, markdown_table, percentile, write_results

PATH = "units/U1.json"
CDN = "https://cdn.bench.example"


def _connect(bench: Path, site: str) -> None:
	frappe.init(site=site, sites_path=str(bench / "sites"))
	frappe.connect()


def child(bench: Path, site: str) -> None:
	"""Poll the resolver; print a timestamp each time the base flips."""
	from memora_storage.api import get_content_url

	_connect(bench, site)
	last = get_content_url(PATH).startswith(CDN)
	print(json.dumps({"ready": last}), flush=True)
	deadline = time.monotonic() + 120
	while time.monotonic() < deadline:
		now = get_content_url(PATH).startswith(CDN)
		if now != last:
			print(json.dumps({"cdn": now, "at": time.time()}), flush=True)
			last = now


def parent(bench: Path, site: str, flips: int, calls: int) -> None:
	from memora_storage.api import get_content_url

	_connect(bench, site)
	settings = frappe.get_single("CDN Settings")
	saved = settings.as_dict()
	proc = subprocess.Popen(
		[sys.executable, __file__, "--bench", str(bench), "--site", site, "--child"],
		stdout=subprocess.PIPE,
		text=True,
	)
	delays, upper = [], []
	try:
		state = json.loads(proc.stdout.readline())["ready"]
		for _ in range(flips):
			state = not state
			doc = frappe.get_single("CDN Settings")
			doc.update({"enable_cdn": int(state), "cdn_base_url": CDN, "bucket": doc.bucket or "bench"})
			doc.save(ignore_permissions=True)
			before_commit = time.time()
			frappe.db.commit()
			committed = time.time()
			seen = json.loads(proc.stdout.readline())
			assert seen["cdn"] == state, seen
			# Negative when the child saw it before our commit call returned: counted as 0.
			delays.append(max(0.0, seen["at"] - committed) * 1000)
			upper.append((seen["at"] - before_commit) * 1000)
			time.sleep(0.05)
	finally:
		proc.kill()
		doc = frappe.get_single("CDN Settings")
		doc.update({key: saved.get(key) for key in ("enable_cdn", "cdn_base_url", "bucket")})
		doc.save(ignore_permissions=True)
		frappe.db.commit()

	start = time.perf_counter()
	for _ in range(calls):
		get_content_url(PATH)
	per_second = calls / (time.perf_counter() - start)

	results = {
		"flips": flips,
		"delay_ms_p50": percentile(delays, 50),
		"delay_ms_p99": percentile(delays, 99),
		"delay_ms_max": max(delays),
		"from_commit_start_ms_p99": percentile(upper, 99),
		"frappe_layer_calls_per_second": per_second,
		"goal": "a second process sees the new base on its next call; SC-002 allows 1 s",
	}
	table = markdown_table(
		["measure", "value"],
		[
			["settings saves", flips],
			["delay p50 (ms)", f"{results['delay_ms_p50']:.2f}"],
			["delay p99 (ms)", f"{results['delay_ms_p99']:.2f}"],
			["delay max (ms)", f"{results['delay_ms_max']:.2f}"],
			["from the start of COMMIT to seen, p99 (ms)", f"{results['from_commit_start_ms_p99']:.2f}"],
			["get_content_url calls/s (Frappe layer, one Redis GET each)", f"{per_second:,.0f}"],
		],
	)
	write_results("bench_freshness", results, table)


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	add_bench_arguments(parser)
	parser.add_argument("--flips", type=int, default=50)
	parser.add_argument("--calls", type=int, default=20_000)
	parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
	args = parser.parse_args()
	bench, site = bench_and_site(parser, args)
	if not bench:
		parser.error("needs --bench and --site (or MEMORA_BENCH and MEMORA_SITE)")
	if args.child:
		child(bench, site)
	else:
		parent(bench, site, args.flips, args.calls)


if __name__ == "__main__":
	main()
