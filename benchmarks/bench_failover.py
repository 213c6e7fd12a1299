"""Automatic failover end to end on a real site (issue: automatic failover, benchmark bench_failover).

1,001 files saved through Frappe (1 plan, 10 subjects, 99 units each), a real `bench worker`
forking per job, a scheduler process at a 1 s tick (what `scheduler_tick_interval` gives), a 5 s
probe interval, moto as the bucket behind the fault proxy, local URLs served by nginx. Each cycle:
the endpoint goes down with nobody touching the settings; then 10 units are edited; then it comes
back. Measured: outage → the start of a student's walk from the API's manifest URL that answers
wholly locally, recovery → the start of one that answers wholly from the CDN (a walk of 1,001
GETs through moto takes about 25 s of its own, reported too), when the verdict changed and each
level's last upload landed, and the requests through the proxy per cycle.
The anchor is the probe interval: detection can take no less than `failover_after` probe periods
and recovery no less than `recover_after`.

    .venv/bin/python -m benchmarks --only failover --bench B --site S
    (it runs with the bench's Python, from its sites folder, as its owner)
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import frappe

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
	add_bench_arguments,
	bench_and_site,
	markdown_table,
	moto_server_command,
	write_results,
)

CYCLES = 3


def start_moto() -> tuple[subprocess.Popen, str]:
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		port = s.getsockname()[1]
	command, env = moto_server_command()
	server = subprocess.Popen(
		[*command, "-H", "127.0.0.1", "-p", str(port)],
		env={**os.environ, **env},
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
	)
	deadline = time.monotonic() + 30
	while time.monotonic() < deadline:
		try:
			socket.create_connection(("127.0.0.1", port), timeout=1).close()
			return server, f"http://127.0.0.1:{port}"
		except OSError:
			time.sleep(0.2)
	server.kill()
	raise RuntimeError("moto did not start")


def run(site: str, cycles: int) -> dict:
	frappe.init(site=site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	# The site tests' fixtures are the production path's parts: reuse them, do not copy them.
	from memora_storage.tests.test_failover import INTERVAL, TestFailover

	case = TestFailover("test_a_cycle_uploads_only_what_changed")
	TestFailover.setUpClass()
	case.setUp()
	results = {"probe_interval_s": INTERVAL, "failover_after": 2, "recover_after": 3, "cycles": []}
	try:
		plan, units = case.thousand_files()
		case.start()
		case.wait_quiet(timeout=600)
		case.wait_for_probe("Healthy")
		results["files"] = 1 + 10 + len(units)
		for cycle in range(cycles):
			case.proxy.stop()
			local_s = case.wait_walk(plan, "local", 120)
			case.proxy.forwarded.clear()
			for name in units[cycle::100][:10]:
				case.edit(frappe.get_doc("Unit", name), body=f"edited in outage {cycle}")
			case.proxy.start()
			back_at = frappe.utils.now_datetime()
			cdn_s = case.wait_walk(plan, "cdn", 180)
			case.wait_quiet(timeout=180)
			results["cycles"].append(
				{
					"outage_to_all_local_s": round(local_s, 1),
					"recovery_to_all_cdn_s": round(cdn_s, 1),
					"walk_s": round(case.walk_seconds, 1),
					"requests": dict(case.proxy.forwarded),
					"after_recovery_s": where_time_goes(case.tag, back_at),
				}
			)
	finally:
		case.doCleanups()
		case.tearDown()
		TestFailover.doClassCleanups()
	for key in ("outage_to_all_local_s", "recovery_to_all_cdn_s"):
		results[key] = statistics.median(c[key] for c in results["cycles"])
	results["puts_per_cycle"] = [c["requests"].get("PUT", 0) for c in results["cycles"]]
	return results


def where_time_goes(tag: str, back_at) -> dict:
	"""Seconds from the endpoint's return to the verdict and to the last upload of each level."""
	frappe.db.rollback()
	since = lambda moment: round((moment - back_at).total_seconds(), 1) if moment else None  # noqa: E731
	levels = {"units": "units/%", "subjects": "plans/%/subjects/%", "manifest": "plans/%/manifest.json"}
	return {
		"verdict_healthy": since(frappe.db.get_single_value("CDN Health", "changed_at", cache=False)),
		**{
			f"last_{level}_uploaded": since(
				frappe.db.sql(
					"select max(last_synced_at) from `tabContent File` where path like %s and path like %s",
					(pattern, f"%{tag}%"),
				)[0][0]
			)
			for level, pattern in levels.items()
		},
	}


def main() -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	add_bench_arguments(parser)
	parser.add_argument("--quick", action="store_true", help="one cycle")
	args = parser.parse_args()
	if args.bench:
		bench_and_site(parser, args)
	if not args.site:
		print("bench_failover needs a site (--bench/--site): skipped")
		return 0
	moto, endpoint = start_moto()
	os.environ["MEMORA_TEST_S3_ENDPOINT"] = endpoint  # read by memora_storage.tests.utils on import
	try:
		results = run(args.site, 1 if args.quick else CYCLES)
	finally:
		moto.terminate()
	interval = results["probe_interval_s"]
	table = markdown_table(
		[
			"files",
			"probe interval s",
			"outage → all local s",
			"in probe periods",
			"recovery → all CDN s",
			"in probe periods",
			"PUTs per cycle (10 edited)",
		],
		[
			[
				results["files"],
				interval,
				results["outage_to_all_local_s"],
				round(results["outage_to_all_local_s"] / interval, 1),
				results["recovery_to_all_cdn_s"],
				round(results["recovery_to_all_cdn_s"] / interval, 1),
				", ".join(map(str, results["puts_per_cycle"])),
			]
		],
	)
	write_results("bench_failover", results, table)
	return 0


if __name__ == "__main__":
	sys.exit(main())
