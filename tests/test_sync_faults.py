"""A sync of many files while the CDN fails: every file ends uploaded with a matching hash or reported
with a clear error, the CDN never holds bytes that differ from the local file, and a second pass
after the fault is gone converges to a 100 % match.
"""

from collections.abc import Iterator

import pytest
from conftest import make_config, raw_client, write_content
from s3_helpers import FaultProxy, MotoServer

from memora_storage.utils import canonical
from memora_storage.utils.s3 import CdnBucket, CdnError, CdnErrorKind
from memora_storage.utils.store import ContentStore
from memora_storage.utils.uploader import Uploader, UploadResult
from memora_storage.utils.verify import verify

FILES = 40


def assert_no_wrong_bytes(store: ContentStore, direct: CdnBucket, results: list[UploadResult]) -> None:
	"""Each path uploaded-and-matching or failed-with-a-message; every object present equals its local file."""
	for result in results:
		if result.ok:
			assert result.sha256 == canonical.sha256(store.read(result.path))
			assert direct.get(result.path) == store.read(result.path)
		else:
			assert isinstance(result.error, CdnError)
			assert str(result.error).startswith(f"upload of {result.path!r} failed: ")
	for item in direct.list():
		assert direct.get(item.path) == store.read(item.path), f"{item.path} differs on the CDN"
	report = verify(store.root, direct)
	assert not report.extra and not report.mismatched
	assert set(report.missing) <= {result.path for result in results if not result.ok}


def converge(uploader: Uploader, first: list[UploadResult]) -> list[UploadResult]:
	"""The retry pass: only what failed is sent again, and afterwards local and CDN match completely."""
	synced = {result.path: result.sha256 for result in first if result.ok}
	second = uploader.upload_many([result.path for result in first], synced=synced, workers=8)
	assert all(result.ok for result in second), [str(result.error) for result in second if not result.ok]
	assert sum(result.uploaded for result in second) == sum(not result.ok for result in first)
	report = verify(uploader.store.root, uploader.bucket)
	assert report.clean and report.matched == len(first)
	return second


@pytest.mark.parametrize(
	("fault", "kind", "confirm_with_head"),
	[
		(500, CdnErrorKind.SERVER_ERROR, True),
		(503, CdnErrorKind.SERVER_ERROR, True),
		(403, CdnErrorKind.ACCESS_DENIED, True),
		("hang", CdnErrorKind.TIMEOUT, True),
		("reset", CdnErrorKind.UNREACHABLE, True),
		("corrupt-body", CdnErrorKind.CHECKSUM_MISMATCH, True),
		(503, CdnErrorKind.SERVER_ERROR, False),
		("reset", CdnErrorKind.UNREACHABLE, False),
		("corrupt-body", CdnErrorKind.CHECKSUM_MISMATCH, False),
	],
)
def test_fault_in_the_middle_of_a_sync(
	content_store: ContentStore,
	cdn: CdnBucket,
	proxy: FaultProxy,
	bucket_name: str,
	fault: object,
	kind: CdnErrorKind,
	confirm_with_head: bool,
) -> None:
	files = write_content(content_store, FILES)
	config = make_config(proxy.url, bucket_name, key_prefix="memora", read_timeout=1.0, connect_timeout=1.0)
	uploader = Uploader(content_store, CdnBucket(config, confirm_with_head=confirm_with_head))
	proxy.set_fault(fault, after=15)  # some files get through first
	first = uploader.upload_many(files, workers=8)
	failed = [result for result in first if not result.ok]
	assert 0 < len(failed) < FILES
	assert {result.error.kind for result in failed} == {kind}
	assert_no_wrong_bytes(content_store, cdn, first)

	proxy.clear()
	converge(uploader, first)


def test_endpoint_goes_away_mid_sync_and_comes_back(
	content_store: ContentStore, cdn: CdnBucket, proxied_cdn: CdnBucket, proxy: FaultProxy
) -> None:
	files = write_content(content_store, FILES)
	uploader = Uploader(content_store, proxied_cdn)
	proxy.stop_after = 25  # then connections are cut and refused
	first = uploader.upload_many(files, workers=8)
	failed = [result for result in first if not result.ok]
	assert 0 < len(failed) < FILES
	assert {result.error.kind for result in failed} == {CdnErrorKind.UNREACHABLE}
	assert any("endpoint unreachable" in str(result.error) for result in failed)
	assert_no_wrong_bytes(content_store, cdn, first)

	proxy.clear()
	proxy.start()  # same address, as when the CDN recovers
	converge(uploader, first)


@pytest.fixture
def iam_user(moto_server: MotoServer) -> Iterator[tuple[str, str]]:
	"""Keys of an IAM user allowed everything, with moto checking signatures and policies meanwhile."""
	iam = raw_client(moto_server.url, service="iam")
	iam.create_user(UserName="memora-cdn")
	iam.put_user_policy(
		UserName="memora-cdn",
		PolicyName="all",
		PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
	)
	key = iam.create_access_key(UserName="memora-cdn")["AccessKey"]
	moto_server.set_auth(True)
	try:
		yield key["AccessKeyId"], key["SecretAccessKey"]
	finally:
		moto_server.set_auth(False)
		for item in iam.list_access_keys(UserName="memora-cdn")["AccessKeyMetadata"]:
			iam.delete_access_key(UserName="memora-cdn", AccessKeyId=item["AccessKeyId"])
		iam.delete_user_policy(UserName="memora-cdn", PolicyName="all")
		iam.delete_user(UserName="memora-cdn")


def test_credentials_revoked_mid_sync(
	content_store: ContentStore,
	cdn: CdnBucket,
	moto_server: MotoServer,
	bucket_name: str,
	iam_user: tuple[str, str],
) -> None:
	access_key, secret_key = iam_user
	bucket = CdnBucket(
		make_config(
			moto_server.url, bucket_name, key_prefix="memora", access_key=access_key, secret_key=secret_key
		)
	)
	files = sorted(write_content(content_store, FILES))
	uploader = Uploader(content_store, bucket)
	first_half = uploader.upload_many(files[:20], workers=8)
	assert all(result.ok for result in first_half)

	iam = raw_client(moto_server.url, access_key, secret_key, service="iam")
	iam.delete_access_key(UserName="memora-cdn", AccessKeyId=access_key)
	second_half = uploader.upload_many(files[20:], workers=8)
	assert all(not result.ok for result in second_half)
	assert {result.error.kind for result in second_half} == {CdnErrorKind.ACCESS_DENIED}
	assert "access denied" in str(second_half[0].error)
	assert secret_key not in str(second_half[0].error) and access_key not in str(second_half[0].error)
	probe = bucket.probe()
	assert not probe.ok and "access denied" in probe.message

	moto_server.set_auth(False)
	assert_no_wrong_bytes(content_store, cdn, first_half + second_half)

	# The administrator issues new keys and saves them in CDN Settings.
	new_key = raw_client(moto_server.url, service="iam").create_access_key(UserName="memora-cdn")["AccessKey"]
	moto_server.set_auth(True)
	renewed = CdnBucket(
		make_config(
			moto_server.url,
			bucket_name,
			key_prefix="memora",
			access_key=new_key["AccessKeyId"],
			secret_key=new_key["SecretAccessKey"],
		)
	)
	converge(Uploader(content_store, renewed), first_half + second_half)
