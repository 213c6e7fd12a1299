"""The uploader: local bytes at run time, concurrent, per-path outcomes, nothing sent when nothing changed."""

import errno
import threading

from conftest import make_config, raw_client, write_content
from s3_helpers import FaultProxy, MotoServer

from memora_storage.utils import canonical
from memora_storage.utils.paths import InvalidPathError
from memora_storage.utils.s3 import CdnBucket
from memora_storage.utils.store import ContentStore, FileOperationError
from memora_storage.utils.uploader import Uploader


def test_upload_sends_the_local_bytes_as_they_are_when_it_runs(
	content_store: ContentStore, cdn: CdnBucket
) -> None:
	uploader = Uploader(content_store, cdn)
	content_store.write("units/u1.json", b'{"v": 1}\n')
	first = uploader.upload("units/u1.json")
	content_store.write("units/u1.json", b'{"v": 2, "more": true}\n')  # regenerated after the job was queued
	second = uploader.upload("units/u1.json")
	assert cdn.get("units/u1.json") == b'{"v": 2, "more": true}\n'
	assert second.uploaded and second.ok
	assert (second.sha256, second.size) == (canonical.sha256(b'{"v": 2, "more": true}\n'), 23)
	assert first.sha256 != second.sha256


def test_upload_skips_the_version_already_synced(
	content_store: ContentStore, proxied_cdn: CdnBucket, proxy: FaultProxy
) -> None:
	uploader = Uploader(content_store, proxied_cdn)
	content_store.write("units/u1.json", b"{}\n")
	sent = uploader.upload("units/u1.json")
	before = proxy.seen
	skipped = uploader.upload("units/u1.json", synced_sha256=sent.sha256)
	assert (skipped.path, skipped.uploaded, skipped.sha256, skipped.size) == (
		"units/u1.json",
		False,
		sent.sha256,
		3,
	)
	assert proxy.seen == before


def test_upload_many_is_concurrent_ordered_and_second_run_sends_nothing(
	content_store: ContentStore, proxied_cdn: CdnBucket, proxy: FaultProxy
) -> None:
	files = write_content(content_store, 60)
	uploader = Uploader(content_store, proxied_cdn)
	results = uploader.upload_many(files, workers=8)
	assert [result.path for result in results] == list(files)
	assert all(result.ok and result.uploaded for result in results)
	assert proxy.forwarded["PUT"] == 60
	for path, data in files.items():
		assert proxied_cdn.get(path) == data

	before = proxy.seen
	synced = {result.path: result.sha256 for result in results}
	again = uploader.upload_many(files, synced=synced, workers=8)
	assert all(result.ok and not result.uploaded for result in again)
	assert proxy.seen == before  # zero requests of any kind


def test_one_failure_does_not_stop_the_others(content_store: ContentStore, cdn: CdnBucket) -> None:
	files = write_content(content_store, 5)
	paths = [*files, "units/deleted-meanwhile.json", "../outside.json", *files]  # duplicates collapse
	results = Uploader(content_store, cdn).upload_many(paths, workers=4)
	assert [result.path for result in results] == paths[:7]
	by_path = {result.path: result for result in results}
	missing = by_path["units/deleted-meanwhile.json"].error
	assert isinstance(missing, FileOperationError) and missing.errno == errno.ENOENT
	assert isinstance(by_path["../outside.json"].error, InvalidPathError)
	assert all(by_path[path].ok for path in files)
	assert sorted(item.path for item in cdn.list()) == sorted(files)


def test_workers_default_to_the_connection_pool(
	content_store: ContentStore, proxy: FaultProxy, bucket_name: str
) -> None:
	"""As many PUTs in flight at once as the pool has connections, or as `workers` says."""
	files = write_content(content_store, 10)
	bucket = CdnBucket(make_config(proxy.url, bucket_name, key_prefix="memora", max_pool_connections=4))
	proxy.delay = 0.4
	proxy.set_fault("slow-put")
	results = Uploader(content_store, bucket).upload_many(files)
	assert [result.path for result in results] == list(files)
	assert all(result.ok and result.uploaded for result in results)
	assert proxy.peak_held == 4

	proxy.peak_held = 0
	again = Uploader(content_store, bucket).upload_many(files, workers=2, synced={})
	assert len(again) == 10 and all(result.uploaded for result in again)
	assert proxy.peak_held == 2


def test_upload_many_gives_each_path_its_own_cache_control(
	content_store: ContentStore, moto_server: MotoServer, bucket_name: str
) -> None:
	files = write_content(content_store, 3)
	first, _, third = files
	bucket = CdnBucket(make_config(moto_server.url, bucket_name), cache_control="public, max-age=60")
	results = Uploader(content_store, bucket).upload_many(
		files, cache_control={first: "no-cache", third: "public, max-age=5"}
	)
	assert all(result.uploaded for result in results)
	client = raw_client(moto_server.url)
	assert [client.head_object(Bucket=bucket_name, Key=path)["CacheControl"] for path in files] == [
		"no-cache",
		"public, max-age=60",  # the bucket's default
		"public, max-age=5",
	]


def test_a_path_a_dead_worker_stored_is_recognised_by_its_hash_and_not_sent_again(
	content_store: ContentStore, proxy: FaultProxy, bucket_name: str
) -> None:
	files = write_content(content_store, 4)
	paths = list(files)
	cdn = CdnBucket(make_config(proxy.url, bucket_name, key_prefix="memora"))
	Uploader(content_store, cdn).upload_many(paths[:2])  # the dead worker got this far
	content_store.write(paths[1], b'{"changed": true}')  # and this one changed since
	puts = proxy.forwarded["PUT"]
	results = Uploader(content_store, cdn).upload_many(paths, look_first=paths)
	assert [result.uploaded for result in results] == [False, True, True, True]
	assert all(result.ok for result in results)
	assert proxy.forwarded["PUT"] - puts == 3


def test_the_heartbeat_beats_in_the_calling_thread_while_uploads_run(
	content_store: ContentStore, proxy: FaultProxy, bucket_name: str
) -> None:
	files = write_content(content_store, 2)
	proxy.delay = 0.5
	proxy.set_fault("slow-put")
	threads = []
	cdn = CdnBucket(make_config(proxy.url, bucket_name, key_prefix="memora"))
	results = Uploader(content_store, cdn).upload_many(
		list(files),
		workers=1,
		heartbeat=lambda: threads.append(threading.current_thread()),
		heartbeat_every=0.1,
	)
	assert all(result.ok for result in results)
	assert threads and set(threads) == {threading.current_thread()}
