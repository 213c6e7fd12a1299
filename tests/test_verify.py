"""Verification of local files against the bucket: missing, extra (US3-2) and mismatched paths."""

import pytest
from conftest import make_config, write_content
from s3_helpers import FaultProxy, MotoServer

from memora_storage.utils.s3 import CdnBucket, CdnError, CdnErrorKind
from memora_storage.utils.store import ContentStore
from memora_storage.utils.uploader import Uploader
from memora_storage.utils.verify import local_files, verify


def synced(store: ContentStore, bucket: CdnBucket, count: int = 20) -> dict[str, bytes]:
	files = write_content(store, count)
	assert all(result.ok for result in Uploader(store, bucket).upload_many(files))
	return files


def test_clean_after_upload(content_store: ContentStore, cdn: CdnBucket) -> None:
	synced(content_store, cdn)
	report = verify(content_store.root, cdn)
	assert report.clean
	assert (report.local_count, report.remote_count, report.matched) == (20, 20, 20)


def test_reports_missing_extra_and_mismatched(content_store: ContentStore, cdn: CdnBucket) -> None:
	files = synced(content_store, cdn)
	paths = list(files)
	content_store.write("units/new.json", b"{}\n")  # not uploaded yet
	cdn.put("units/orphan.json", b"{}\n")  # on the CDN only: an inconsistency
	content_store.write(paths[1], files[paths[1]] + b" ")  # size differs
	same_size = bytearray(files[paths[2]])
	same_size[-2] ^= 1
	content_store.write(paths[2], bytes(same_size))  # same size, other bytes

	report = verify(content_store.root, cdn)
	assert not report.clean
	assert report.missing == ["units/new.json"]
	assert report.extra == ["units/orphan.json"]
	assert [m.path for m in report.mismatched] == sorted([paths[1], paths[2]])
	by_path = {m.path: m for m in report.mismatched}
	assert (by_path[paths[1]].local_size, by_path[paths[1]].remote_size) == (
		len(files[paths[1]]) + 1,
		len(files[paths[1]]),
	)
	assert report.matched == 18


def test_backups_and_temp_files_are_not_content(content_store: ContentStore, cdn: CdnBucket) -> None:
	files = synced(content_store, cdn, 3)
	path = next(iter(files))
	content_store.write(path, b'{"v": 2}\n')  # leaves NAME.prev beside it
	Uploader(content_store, cdn).upload(path)
	(content_store.root / "units" / ".u0001.json.abc123.tmp").write_bytes(b"partial")
	(content_store.root / "units" / ".hidden").mkdir()
	(content_store.root / "units" / ".hidden" / "x.json").write_bytes(b"{}")
	assert sorted(local_files(content_store.root)) == sorted(files)
	assert verify(content_store.root, cdn).clean


def test_prefix_limits_both_sides(content_store: ContentStore, cdn: CdnBucket) -> None:
	synced(content_store, cdn, 4)
	content_store.write("plans/P1/manifest.json", b"{}\n")
	cdn.put("plans/P1/subjects/gone.json", b"{}\n")
	cdn.put("plans/P10/manifest.json", b"{}\n")
	report = verify(content_store.root, cdn, prefix="plans/P1")
	assert (report.local_count, report.remote_count) == (1, 1)
	assert report.missing == ["plans/P1/manifest.json"]
	assert report.extra == ["plans/P1/subjects/gone.json"]


def test_without_md5_etags_the_sha256_metadata_decides(
	content_store: ContentStore, moto_server: MotoServer, bucket_name: str
) -> None:
	bucket = CdnBucket(make_config(moto_server.url, bucket_name, etag_is_md5=False))
	files = synced(content_store, bucket, 5)
	assert verify(content_store.root, bucket).clean
	path = next(iter(files))
	same_size = bytearray(files[path])
	same_size[-2] ^= 1
	content_store.write(path, bytes(same_size))
	assert [m.path for m in verify(content_store.root, bucket).mismatched] == [path]


def test_an_unlistable_bucket_raises_instead_of_reporting_false_gaps(
	content_store: ContentStore, proxied_cdn: CdnBucket, proxy: FaultProxy
) -> None:
	synced(content_store, proxied_cdn, 2)
	proxy.set_fault(403)
	with pytest.raises(CdnError) as caught:
		verify(content_store.root, proxied_cdn)
	assert caught.value.kind is CdnErrorKind.ACCESS_DENIED
	assert str(caught.value).startswith("list failed: access denied")
