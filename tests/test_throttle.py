"""Throttling is back-pressure: a store answering 503 SlowDown to some PUTs slows a sync, never fails it."""

import pytest
from conftest import make_config, write_content
from s3_helpers import FaultProxy

from memora_storage.utils import throttle
from memora_storage.utils.s3 import CdnBucket, CdnError, CdnErrorKind, throttled
from memora_storage.utils.store import ContentStore
from memora_storage.utils.uploader import Uploader


def test_pauses_start_at_100_ms_double_and_are_jittered_below_their_cap() -> None:
	assert [throttle.pause(n, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.4, 0.8])
	assert throttle.pause(30, rand=lambda: 1.0) == throttle.MAX_PAUSE_S
	assert throttle.pause(3, rand=lambda: 0.25) == pytest.approx(0.1)


def test_concurrency_halves_on_refusal_and_climbs_back_on_acceptance() -> None:
	aimd = throttle.Aimd(16, cooldown=0)
	aimd.refused()
	aimd.refused()
	assert aimd.limit == 4
	for _ in range(4 * 3):
		aimd.accepted()
	assert 6 < aimd.limit < 8  # one place more per window of accepted requests
	for _ in range(20):
		aimd.refused()
	assert aimd.limit == 1 and aimd.lowest == 1
	for _ in range(1000):
		aimd.accepted()
	assert aimd.limit == 16


def test_refusals_sent_together_cut_the_limit_once() -> None:
	aimd = throttle.Aimd(16, cooldown=60)
	for _ in range(5):
		aimd.refused()
	assert aimd.limit == 8


@pytest.mark.parametrize(
	("code", "status", "message", "expected"),
	[
		("SlowDown", 503, "Please reduce your request rate.", True),
		("TooManyRequests", 429, "", True),
		("ServiceUnavailable", 503, "Reduce your request rate.", True),
		("ServiceUnavailable", 503, "The service is down", False),
		("InternalError", 500, "", False),
	],
)
def test_what_counts_as_slow_down(code: str, status: int, message: str, expected: bool) -> None:
	assert throttled(code, status, message) is expected


def test_a_throttled_sync_lands_every_file_within_the_pass(
	content_store: ContentStore, proxy: FaultProxy, bucket_name: str
) -> None:
	files = write_content(content_store, 60)
	proxy.throttle = 0.3
	cdn = CdnBucket(make_config(proxy.url, bucket_name, key_prefix="memora"), confirm_with_head=False)
	uploader = Uploader(content_store, cdn)
	results = uploader.upload_many(list(files))
	assert all(result.ok and result.uploaded for result in results)
	assert proxy.throttled > 0
	assert uploader.concurrency is not None and uploader.concurrency.lowest < 16
	assert {item.path for item in cdn.list()} == set(files)


def test_boto3_leaves_a_throttled_request_to_the_uploader(proxied_cdn: CdnBucket, proxy: FaultProxy) -> None:
	proxy.throttle = 1.0
	with pytest.raises(CdnError) as caught:
		proxied_cdn.put("units/u1.json", b"{}")
	assert caught.value.kind is CdnErrorKind.THROTTLED
	assert "asked to slow down" in str(caught.value)
	assert proxy.throttled == 1  # no blind retry inside boto3


def test_a_path_refused_for_the_sustained_time_fails_as_throttled_for_the_durable_schedule(
	content_store: ContentStore, proxy: FaultProxy, bucket_name: str
) -> None:
	files = write_content(content_store, 3)
	proxy.throttle = 1.0
	cdn = CdnBucket(make_config(proxy.url, bucket_name, key_prefix="memora"))
	results = Uploader(content_store, cdn, sustained_s=0.5).upload_many(list(files))
	assert [result.error.kind for result in results] == [CdnErrorKind.THROTTLED] * 3
	assert proxy.throttled > 3  # retried within the pass before giving up
