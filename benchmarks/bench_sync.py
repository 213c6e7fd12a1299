"""CDN sync of 5,000 content files: our uploader and verifier against `rclone copy` and `rclone check`,
side by side in one run, on one moto S3 server (a subprocess on 127.0.0.1).

Goals: upload time engine / rclone <= 1.0, verification time engine / rclone <= 1.0, and a second
upload with nothing changed sends zero requests. Requests are counted from the moto server's own
access log, so both tools are counted the same way.

The files are random JSON of 1-50 KB in the default layout (`plans/{plan}/manifest.json`,
`plans/{plan}/subjects/{subject}.json`, `units/{unit}.json`). Each round uploads into three fresh
buckets, rotating which goes first: the engine confirming each upload with a HEAD (size, ETag and
SHA-256 metadata read back; the default), the engine trusting the PUT answer's ETag when it is the
MD5 of the bytes sent (`confirm_with_head=False`), and rclone (which sends a HEAD before each PUT).
All use the same concurrency. Buckets are emptied with `delete_prefix` after each round.

    python -m benchmarks.bench_sync [--files 5000] [--repeat 3] [--workers 16] [--dir DIR]

Needs `rclone` on PATH (Debian: `apt-get install rclone`); it is run with AWS_CA_BUNDLE unset,
which Debian's build fails on.
"""

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
	sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from s3_helpers import MotoServer, raw_client

from benchmarks.common import RESULTS_DIR, filesystem_of, markdown_table, write_results
from memora_storage.utils import canonical
from memora_storage.utils.s3 import CdnBucket, S3Config
from memora_storage.utils.store import ContentStore
from memora_storage.utils.uploader import Uploader
from memora_storage.utils.verify import verify

ACCESS_KEY = "AKIAMEMORABENCH00001"
SECRET_KEY = "memora-bench-secret"
KEY_PREFIX = "memora"
GOAL_RATIO = 1.0
WORDS = "خطة مادة وحدة درس تمرين سؤال جواب plan subject unit lesson quiz answer".split()


def generate(root: Path, count: int, seed: int = 5000) -> list[str]:
	"""`count` JSON files of 1-50 KB: per 100, 1 plan manifest, 20 subjects, 79 units."""
	rng = random.Random(seed)
	paths = []
	for n in range(count):
		group, slot = divmod(n, 100)
		if slot == 0:
			path = f"plans/PLAN-{group:04}/manifest.json"
		elif slot <= 20:
			path = f"plans/PLAN-{group:04}/subjects/SUBJ-{n:06}.json"
		else:
			path = f"units/UNIT-{n:06}.json"
		target = rng.randint(1024, 50 * 1024)
		body = []
		size = 0
		while size < target:
			word = rng.choice(WORDS)
			body.append(word)
			size += len(word.encode()) + 3
		data = canonical.dumps({"name": path, "seq": n, "words": body})
		file = root / path
		file.parent.mkdir(parents=True, exist_ok=True)
		file.write_bytes(data)
		paths.append(path)
	return paths


def config(server: MotoServer, bucket: str, workers: int) -> S3Config:
	return S3Config(
		bucket=bucket,
		endpoint_url=server.url,
		key_prefix=KEY_PREFIX,
		access_key=ACCESS_KEY,
		secret_key=SECRET_KEY,
		addressing_style="path",
		max_pool_connections=workers,
	)


def create_bucket(server: MotoServer, name: str) -> None:
	raw_client(server.url, ACCESS_KEY, SECRET_KEY).create_bucket(Bucket=name)


def rclone(server: MotoServer, workers: int, *args: str) -> subprocess.CompletedProcess:
	"""Run rclone with an s3 remote named `bench` configured from the environment."""
	env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
	env.update(
		RCLONE_CONFIG_BENCH_TYPE="s3",
		RCLONE_CONFIG_BENCH_PROVIDER="Other",
		RCLONE_CONFIG_BENCH_ENDPOINT=server.url,
		RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ACCESS_KEY,
		RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET_KEY,
		RCLONE_CONFIG_BENCH_REGION="us-east-1",
		RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
	)
	command = [
		"rclone",
		*args,
		"--transfers",
		str(workers),
		"--checkers",
		str(workers),
		"--config",
		"/dev/null",
	]
	return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def measured(server: MotoServer, action) -> tuple[float, Counter, object]:
	"""Seconds taken and requests the server saw (by method) while `action` ran."""
	time.sleep(0.2)  # let the access log catch up with earlier requests
	before = server.logged_requests()
	started = time.perf_counter()
	outcome = action()
	seconds = time.perf_counter() - started
	time.sleep(0.2)
	return seconds, server.logged_requests() - before, outcome


def check_bucket_equals(server: MotoServer, bucket: str, root: Path, paths: list[str], workers: int) -> None:
	"""Both tools must have stored every file byte for byte (same ETag as local MD5) before a time counts."""
	listing = {item.path: item.etag for item in CdnBucket(config(server, bucket, workers)).list()}
	assert len(listing) == len(paths), f"{bucket}: {len(listing)} objects for {len(paths)} files"
	for path in paths:
		assert listing[path] == hashlib.md5((root / path).read_bytes()).hexdigest(), path


def upload_round(server: MotoServer, root: Path, paths: list[str], workers: int, rnd: int) -> dict:
	"""One round: three fresh buckets filled by the engine (HEAD-confirmed and ETag-confirmed) and by rclone,
	in an order that rotates between rounds; then the unchanged second run, verification, deletion."""
	store = ContentStore(root, root.parent / "locks")
	buckets = {name: f"bench-{name}-{rnd}" for name in ("head", "etag", "rclone")}
	for bucket in buckets.values():
		create_bucket(server, bucket)
	uploaders = {
		"head": Uploader(store, CdnBucket(config(server, buckets["head"], workers), confirm_with_head=True)),
		"etag": Uploader(store, CdnBucket(config(server, buckets["etag"], workers), confirm_with_head=False)),
	}
	rclone_target = f"bench:{buckets['rclone']}/{KEY_PREFIX}"
	runs = {
		"head": lambda: measured(server, lambda: uploaders["head"].upload_many(paths, workers=workers)),
		"etag": lambda: measured(server, lambda: uploaders["etag"].upload_many(paths, workers=workers)),
		"rclone": lambda: measured(server, lambda: rclone(server, workers, "copy", str(root), rclone_target)),
	}
	order = ["head", "etag", "rclone"]
	order = order[rnd % 3 :] + order[: rnd % 3]
	upload = {name: runs[name]() for name in order}
	for name in ("head", "etag"):
		results = upload[name][2]
		assert all(result.ok for result in results), [str(r.error) for r in results if not r.ok][:3]
	assert upload["rclone"][2].returncode == 0, upload["rclone"][2].stderr[-2000:]
	for bucket in buckets.values():
		check_bucket_equals(server, bucket, root, paths, workers)

	synced = {result.path: result.sha256 for result in upload["head"][2]}
	again = measured(server, lambda: uploaders["head"].upload_many(paths, synced=synced, workers=workers))
	rclone_again = measured(server, lambda: rclone(server, workers, "copy", str(root), rclone_target))
	assert rclone_again[2].returncode == 0

	bucket = uploaders["head"].bucket
	verify_engine = measured(server, lambda: verify(root, bucket))
	verify_rclone = measured(
		server, lambda: rclone(server, workers, "check", str(root), f"bench:{buckets['head']}/{KEY_PREFIX}")
	)
	report = verify_engine[2]
	assert report.clean and report.matched == len(paths), report
	assert verify_rclone[2].returncode == 0, verify_rclone[2].stderr[-2000:]

	# Empty the buckets so the in-memory server does not grow from round to round; the engine's is timed.
	delete = measured(server, lambda: sum(bucket.delete_prefix(folder) for folder in ("plans", "units")))
	assert delete[2] == len(paths)
	for name in ("etag", "rclone"):
		other = CdnBucket(config(server, buckets[name], workers))
		assert sum(other.delete_prefix(folder) for folder in ("plans", "units")) == len(paths)
	return {
		"order": order,
		"upload_s": {name: upload[name][0] for name in order},
		"upload_requests": {name: dict(upload[name][1]) for name in order},
		"second_upload": {
			"engine_s": again[0],
			"engine_uploads": sum(result.uploaded for result in again[2]),
			"engine_requests": sum(again[1].values()),
			"rclone_s": rclone_again[0],
			"rclone_requests": dict(rclone_again[1]),
		},
		"verify": {"engine_s": verify_engine[0], "rclone_s": verify_rclone[0]},
		"verify_requests": {"engine": dict(verify_engine[1]), "rclone": dict(verify_rclone[1])},
		"delete_prefix": {"engine_s": delete[0], "requests": dict(delete[1])},
	}


def median(rounds: list[dict], *keys: str) -> float:
	values = []
	for run in rounds:
		value = run
		for key in keys:
			value = value[key]
		values.append(value)
	return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--files", type=int, default=5000)
	parser.add_argument("--repeat", type=int, default=3)
	parser.add_argument("--workers", type=int, default=16)
	parser.add_argument("--dir", help="where to build the files (default: a temp folder beside the results)")
	args = parser.parse_args(argv)
	if not shutil.which("rclone"):
		print("rclone is not installed (Debian: apt-get install rclone)", file=sys.stderr)
		return 2

	base = Path(args.dir) if args.dir else RESULTS_DIR / "tmp"
	base.mkdir(parents=True, exist_ok=True)
	work = Path(tempfile.mkdtemp(prefix="bench_sync.", dir=base))
	root = work / "memora_content"
	server = MotoServer(work / "moto.log").start()
	try:
		paths = generate(root, args.files)
		total_bytes = sum((root / path).stat().st_size for path in paths)
		print(f"{len(paths)} files, {total_bytes / 2**20:.1f} MiB, moto at {server.url}", file=sys.stderr)
		rounds = []
		for rnd in range(args.repeat):
			rounds.append(upload_round(server, root, paths, args.workers, rnd))
			print(f"round {rnd + 1}: {rounds[-1]['upload_s']} {rounds[-1]['verify']}", file=sys.stderr)
		version = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout.split("\n")[0]
	finally:
		server.stop()
		shutil.rmtree(work, ignore_errors=True)

	rclone_s = median(rounds, "upload_s", "rclone")
	ratios = {name: median(rounds, "upload_s", name) / rclone_s for name in ("head", "etag")}
	verify_ratio = median(rounds, "verify", "engine_s") / median(rounds, "verify", "rclone_s")
	last = rounds[-1]

	def requests(counts: dict) -> int:
		return sum(counts.values())

	rows = [
		[
			f"upload {len(paths):,} files, engine confirming by HEAD (default)",
			round(median(rounds, "upload_s", "head"), 2),
			round(rclone_s, 2),
			round(ratios["head"], 2),
			requests(last["upload_requests"]["head"]),
			requests(last["upload_requests"]["rclone"]),
		],
		[
			f"upload {len(paths):,} files, engine confirming by the PUT's ETag",
			round(median(rounds, "upload_s", "etag"), 2),
			round(rclone_s, 2),
			round(ratios["etag"], 2),
			requests(last["upload_requests"]["etag"]),
			requests(last["upload_requests"]["rclone"]),
		],
		[
			"second upload, nothing changed",
			round(median(rounds, "second_upload", "engine_s"), 3),
			round(median(rounds, "second_upload", "rclone_s"), 2),
			round(
				median(rounds, "second_upload", "engine_s") / median(rounds, "second_upload", "rclone_s"), 3
			),
			last["second_upload"]["engine_requests"],
			requests(last["second_upload"]["rclone_requests"]),
		],
		[
			f"verify {len(paths):,} paths (rclone check)",
			round(median(rounds, "verify", "engine_s"), 2),
			round(median(rounds, "verify", "rclone_s"), 2),
			round(verify_ratio, 2),
			requests(last["verify_requests"]["engine"]),
			requests(last["verify_requests"]["rclone"]),
		],
		[
			f"delete {len(paths):,} objects (delete_prefix)",
			round(median(rounds, "delete_prefix", "engine_s"), 2),
			"",
			"",
			requests(last["delete_prefix"]["requests"]),
			"",
		],
	]
	table = markdown_table(
		["step", "engine s", "rclone s", "engine / rclone", "engine requests", "rclone requests"], rows
	)
	zero_second = all(run["second_upload"]["engine_requests"] == 0 for run in rounds)
	write_results(
		"bench_sync",
		{
			"filesystem": filesystem_of(base),
			"files": len(paths),
			"bytes": total_bytes,
			"workers": args.workers,
			"repeat": args.repeat,
			"rclone": version,
			"goal": {
				"upload_ratio_max": GOAL_RATIO,
				"verify_ratio_max": GOAL_RATIO,
				"second_upload_requests": 0,
				"met_confirming_by_head": ratios["head"] <= GOAL_RATIO
				and verify_ratio <= GOAL_RATIO
				and zero_second,
				"met_confirming_by_etag": ratios["etag"] <= GOAL_RATIO
				and verify_ratio <= GOAL_RATIO
				and zero_second,
			},
			"upload_ratio": ratios,
			"verify_ratio": verify_ratio,
			"rounds": rounds,
		},
		table,
	)
	return 0


if __name__ == "__main__":
	sys.exit(main())
