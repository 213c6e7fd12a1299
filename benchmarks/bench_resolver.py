"""Resolver throughput in a warm process: build_url calls per second.

Three shapes of use: one path over and over (a hot link), a mix of 10,000 distinct paths with Arabic,
spaces and '#' (a site's whole catalogue; measured cold, with the encoded-path cache just cleared, and warm),
and batches of 1,000 paths resolved from one settings snapshot, as `api.get_content_urls` does. Each is
measured with the CDN on and off. Goal: at least 200,000 single-path calls per second. This is the core
resolver only: the Frappe API adds reading the settings snapshot and the HTTP round trip.

    python -m benchmarks.bench_resolver [--calls 1000000] [--repeat 5]
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
	sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import markdown_table, write_results
from memora_storage.utils.paths import _url_path
from memora_storage.utils.resolver import UrlSettings, build_url

GOAL_SINGLE = 200_000
DISTINCT = 10_000
BATCH = 1_000  # api.MAX_BATCH

SETTINGS = {
	"cdn": UrlSettings(
		local_domain="https://memora.example", enable_cdn=True, cdn_base_url="https://cdn.example.com/"
	),
	"local": UrlSettings(local_domain="https://memora.example/", enable_cdn=False),
}


def catalogue(n: int = DISTINCT) -> list[str]:
	"""`n` distinct content paths shaped like FR-005's, a third of them with Arabic, spaces or '#'."""
	out = []
	for i in range(n):
		plan = f"P{i % 200:03d}" if i % 3 else f"خطة {i % 200}"
		kind = i % 4
		if kind == 0:
			out.append(f"plans/{plan}/manifest.json")
		elif kind in (1, 2):
			out.append(f"plans/{plan}/subjects/S{i:05d}{' #1' if i % 5 == 0 else ''}.json")
		else:
			out.append(f"units/{'وحدة ' if i % 2 else 'U'}{i:05d}.json")
	distinct = list(dict.fromkeys(out))
	i = n
	while len(distinct) < n:  # manifests repeat per plan: top up with units
		distinct.append(f"units/U{i:06d}.json")
		i += 1
	return distinct


def rate(calls: int, body: Callable[[], None], repeat: int) -> dict[str, float]:
	"""Calls per second of `body` (which makes `calls` calls), best and median of `repeat` runs."""
	rates = []
	for _ in range(repeat):
		start = time.perf_counter()
		body()
		rates.append(calls / (time.perf_counter() - start))
	return {"best": max(rates), "median": statistics.median(rates), "runs": repeat}


def bench_single(settings: UrlSettings, calls: int, repeat: int) -> dict[str, float]:
	path = "plans/P001/subjects/S00042.json"
	build_url(path, settings)

	def body() -> None:
		for _ in range(calls):
			build_url(path, settings)

	return rate(calls, body, repeat)


def bench_mix_cold(settings: UrlSettings, paths: list[str], repeat: int) -> dict[str, float]:
	"""First sight of every path: validation and percent-encoding are paid in full."""
	rates = []
	for _ in range(repeat):
		_url_path.cache_clear()  # the resolver's per-process cache of encoded paths
		start = time.perf_counter()
		for path in paths:
			build_url(path, settings)
		rates.append(len(paths) / (time.perf_counter() - start))
	return {"best": max(rates), "median": statistics.median(rates), "runs": repeat}


def bench_mix_warm(settings: UrlSettings, paths: list[str], calls: int, repeat: int) -> dict[str, float]:
	for path in paths:
		build_url(path, settings)
	rounds = max(1, calls // len(paths))

	def body() -> None:
		for _ in range(rounds):
			for path in paths:
				build_url(path, settings)

	return rate(rounds * len(paths), body, repeat)


def bench_batch(settings: UrlSettings, paths: list[str], calls: int, repeat: int) -> dict[str, float]:
	"""Batches of 1,000 paths to a dict, one snapshot per batch, as the batch API builds its answer."""
	batches = [paths[i : i + BATCH] for i in range(0, len(paths), BATCH)]
	rounds = max(1, calls // len(paths))

	def body() -> None:
		for _ in range(rounds):
			for batch in batches:
				{path: build_url(path, settings) for path in batch}

	return rate(rounds * len(paths), body, repeat)


def main(argv: list[str] | None = None) -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument(
		"--calls", type=int, default=1_000_000, help="calls per timed run (default: %(default)s)"
	)
	parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (default: %(default)s)")
	args = parser.parse_args(argv)

	paths = catalogue()
	assert len(set(paths)) == DISTINCT
	results: dict[str, dict[str, dict[str, float]]] = {}
	for mode, settings in SETTINGS.items():
		results[mode] = {
			"single path": bench_single(settings, args.calls, args.repeat),
			f"mix of {DISTINCT:,} paths, cold cache": bench_mix_cold(settings, paths, args.repeat),
			f"mix of {DISTINCT:,} paths, warm": bench_mix_warm(settings, paths, args.calls, args.repeat),
			f"batches of {BATCH:,}": bench_batch(settings, paths, args.calls, args.repeat),
		}

	rows = []
	for case in results["cdn"]:
		cdn, local = results["cdn"][case], results["local"][case]
		goal = ""
		if case == "single path":
			goal = "yes" if min(cdn["median"], local["median"]) >= GOAL_SINGLE else "NO"
		rows.append(
			[
				case,
				round(cdn["median"]),
				round(cdn["best"]),
				round(local["median"]),
				round(local["best"]),
				round(1e9 / cdn["median"]),
				goal,
			]
		)
	table = markdown_table(
		[
			"case",
			"CDN calls/s (median)",
			"CDN calls/s (best)",
			"local calls/s (median)",
			"local calls/s (best)",
			"CDN ns/call",
			f"≥ {GOAL_SINGLE:,}/s",
		],
		rows,
	)
	write_results(
		"bench_resolver",
		{
			"goal": {"single_path_calls_per_s_min": GOAL_SINGLE},
			"calls_per_run": args.calls,
			"distinct_paths": DISTINCT,
			"batch_size": BATCH,
			"results": results,
		},
		table,
	)
	return 0


if __name__ == "__main__":
	sys.exit(main())
