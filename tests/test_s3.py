"""CdnBucket against a real S3 endpoint (moto's server over HTTP): uploads, confirmation, listing, deletes, probe, errors."""

import hashlib
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import ACCESS_KEY, SECRET_KEY, make_config, raw_client
from s3_helpers import FaultProxy, MotoServer, free_port

from memora_storage.utils import canonical, s3
from memora_storage.utils.paths import InvalidPathError
from memora_storage.utils.s3 import (
	CONTENT_TYPE,
	DEFAULT_CACHE_CONTROL,
	CdnBucket,
	CdnError,
	CdnErrorKind,
	S3Config,
)

ARABIC_PATH = "plans/خطة الرياضيات/subjects/الجبر #1.json"
DATA = canonical.dumps({"title": "الجبر", "units": ["u1", "u2"]})


def test_put_sends_checksum_headers_and_metadata(cdn: CdnBucket, moto_server: MotoServer) -> None:
	stored = cdn.put("plans/P1/manifest.json", DATA)
	assert stored.size == len(DATA)
	assert stored.etag == hashlib.md5(DATA).hexdigest()
	assert stored.sha256 == canonical.sha256(DATA)
	head = raw_client(moto_server.url).head_object(
		Bucket=cdn.config.bucket, Key="memora/plans/P1/manifest.json"
	)
	assert head["ContentType"] == CONTENT_TYPE
	assert head["CacheControl"] == DEFAULT_CACHE_CONTROL
	assert head["Metadata"] == {"sha256": canonical.sha256(DATA)}
	assert cdn.get("plans/P1/manifest.json") == DATA


def test_cache_control_is_a_parameter(moto_server: MotoServer, bucket_name: str) -> None:
	bucket = CdnBucket(make_config(moto_server.url, bucket_name), cache_control="public, max-age=60")
	bucket.put("units/u1.json", DATA)
	bucket.put("units/u2.json", DATA, cache_control="no-cache")
	client = raw_client(moto_server.url)
	assert client.head_object(Bucket=bucket_name, Key="units/u1.json")["CacheControl"] == "public, max-age=60"
	assert client.head_object(Bucket=bucket_name, Key="units/u2.json")["CacheControl"] == "no-cache"


def test_arabic_and_url_special_names_round_trip(cdn: CdnBucket) -> None:
	cdn.put(ARABIC_PATH, DATA)
	assert cdn.get(ARABIC_PATH) == DATA
	assert [item.path for item in cdn.list()] == [ARABIC_PATH]
	assert cdn.head(ARABIC_PATH).sha256 == canonical.sha256(DATA)
	cdn.delete(ARABIC_PATH)
	assert cdn.head(ARABIC_PATH) is None


def test_keys_carry_the_prefix_and_paths_are_validated(cdn: CdnBucket) -> None:
	assert cdn.key("units/u1.json") == "memora/units/u1.json"
	for bad in ("../escape.json", "/abs.json", "units/.hidden.json", "units/u1.json.prev", "a\\b.json"):
		with pytest.raises(InvalidPathError):
			cdn.put(bad, DATA)


def test_list_and_delete_prefix_page_through_more_than_a_thousand(cdn: CdnBucket) -> None:
	paths = [f"plans/P1/subjects/s{n:04}.json" for n in range(1005)]
	with ThreadPoolExecutor(16) as pool:
		list(pool.map(lambda path: cdn.put(path, path.encode()), paths))
	cdn.put("plans/P10/manifest.json", DATA)  # shares the text "plans/P1" but not the folder
	cdn.put("plans/P1/manifest.json", DATA)

	listed = {item.path: item for item in cdn.list("plans/P1")}
	assert len(listed) == 1006
	assert (
		listed["plans/P1/subjects/s0007.json"].etag
		== hashlib.md5(b"plans/P1/subjects/s0007.json").hexdigest()
	)
	assert listed["plans/P1/manifest.json"].size == len(DATA)
	assert len(list(cdn.list())) == 1007

	assert cdn.delete_prefix("plans/P1") == 1006
	assert [item.path for item in cdn.list()] == ["plans/P10/manifest.json"]
	assert cdn.delete_prefix("plans/P1") == 0


def test_delete_of_absent_object_succeeds(cdn: CdnBucket) -> None:
	cdn.put("units/u1.json", DATA)
	cdn.delete("units/never-there.json")  # no error, and nothing else goes
	assert [item.path for item in cdn.list()] == ["units/u1.json"]
	cdn.delete("units/u1.json")
	assert cdn.head("units/u1.json") is None
	cdn.delete("units/u1.json")  # absent now: still no error
	assert list(cdn.list()) == []


def test_probe_writes_reads_lists_deletes_and_leaves_nothing(cdn: CdnBucket, moto_server: MotoServer) -> None:
	result = cdn.probe()
	assert result.ok, result.message
	assert [step.name for step in result.steps] == ["write", "read", "list", "delete"]
	assert all(step.seconds >= 0 for step in result.steps)
	assert raw_client(moto_server.url).list_objects_v2(Bucket=cdn.config.bucket)["KeyCount"] == 0


def test_probe_reports_a_missing_bucket(moto_server: MotoServer) -> None:
	result = CdnBucket(make_config(moto_server.url, "memora-no-such-bucket")).probe()
	assert not result.ok
	assert [(step.name, step.ok) for step in result.steps] == [("write", False)]
	assert "bucket 'memora-no-such-bucket' does not exist" in result.message


def test_missing_bucket_is_named(moto_server: MotoServer) -> None:
	bucket = CdnBucket(make_config(moto_server.url, "memora-no-such-bucket"))
	with pytest.raises(CdnError) as caught:
		bucket.put("units/u1.json", DATA)
	assert caught.value.kind is CdnErrorKind.BUCKET_MISSING
	assert caught.value.path == "units/u1.json"
	with pytest.raises(CdnError) as caught:
		list(bucket.list())
	assert caught.value.kind is CdnErrorKind.BUCKET_MISSING


def test_unreachable_endpoint_is_named_quickly(bucket_name: str) -> None:
	bucket = CdnBucket(make_config(f"http://127.0.0.1:{free_port()}", bucket_name))
	with pytest.raises(CdnError) as caught:
		bucket.put("units/u1.json", DATA)
	assert caught.value.kind is CdnErrorKind.UNREACHABLE
	assert "endpoint unreachable" in str(caught.value)
	assert not bucket.probe().ok


@pytest.mark.parametrize(
	("fault", "kind", "words"),
	[
		(500, CdnErrorKind.SERVER_ERROR, "HTTP 500"),
		(503, CdnErrorKind.SERVER_ERROR, "HTTP 503"),
		(403, CdnErrorKind.ACCESS_DENIED, "access denied"),
		("hang", CdnErrorKind.TIMEOUT, "timed out"),
		("reset", CdnErrorKind.UNREACHABLE, "closed the connection"),
	],
)
def test_faults_become_one_clear_error(
	proxied_cdn: CdnBucket, proxy: FaultProxy, fault: object, kind: CdnErrorKind, words: str
) -> None:
	proxy.set_fault(fault)
	with pytest.raises(CdnError) as caught:
		proxied_cdn.put("units/u1.json", DATA)
	assert caught.value.kind is kind
	assert words in str(caught.value)
	assert str(caught.value).startswith("upload of 'units/u1.json' failed: ")
	proxy.clear()
	assert proxied_cdn.put("units/u1.json", DATA).size == len(DATA)


def test_transient_5xx_is_retried_once_inside_boto3(proxied_cdn: CdnBucket, proxy: FaultProxy) -> None:
	proxy.set_fault(503)
	with pytest.raises(CdnError):
		proxied_cdn.put("units/u1.json", DATA)
	assert proxy.seen == 2  # one try and one retry; the durable schedule does the rest


@pytest.mark.parametrize("confirm_with_head", [True, False])
def test_damaged_bytes_are_an_error_and_leave_no_wrong_bytes(
	proxy: FaultProxy, cdn: CdnBucket, bucket_name: str, confirm_with_head: bool
) -> None:
	bucket = CdnBucket(
		make_config(proxy.url, bucket_name, key_prefix="memora"), confirm_with_head=confirm_with_head
	)
	proxy.set_fault("corrupt-body")
	with pytest.raises(CdnError) as caught:
		bucket.put("units/u1.json", DATA)
	assert caught.value.kind is CdnErrorKind.CHECKSUM_MISMATCH
	assert "checksum mismatch" in str(caught.value)
	assert cdn.head("units/u1.json") is None  # read back, found damaged, removed
	assert bucket.etag_is_md5_seen is None


@pytest.mark.parametrize("etag_is_md5", [True, None])
@pytest.mark.parametrize("fault", ["corrupt-etag", "kms-etag"])
def test_an_etag_that_is_not_the_md5_is_read_back_once_and_the_object_kept(
	proxy: FaultProxy, cdn: CdnBucket, bucket_name: str, fault: str, etag_is_md5: bool | None
) -> None:
	"""As an SSE-KMS bucket answers: the object holds our bytes, so it is confirmed, never deleted."""
	bucket = CdnBucket(make_config(proxy.url, bucket_name, key_prefix="memora", etag_is_md5=etag_is_md5))
	proxy.set_fault(fault)
	stored = bucket.put("units/u1.json", DATA)
	assert stored.sha256 == canonical.sha256(DATA)
	assert bucket.etag_is_md5_seen is False
	assert dict(proxy.forwarded) == {"PUT": 1, "HEAD": 1, "GET": 1}
	assert cdn.get("units/u1.json") == DATA


def test_a_kms_bucket_is_confirmed_and_verified_by_the_sha256_metadata(
	proxy: FaultProxy, cdn: CdnBucket, bucket_name: str, tmp_path
) -> None:
	from memora_storage.utils.verify import verify

	bucket = CdnBucket(make_config(proxy.url, bucket_name, key_prefix="memora", etag_is_md5=False))
	proxy.set_fault("kms-etag")
	(tmp_path / "units").mkdir()
	for name in ("u1", "u2"):
		(tmp_path / "units" / f"{name}.json").write_bytes(DATA)
		bucket.put(f"units/{name}.json", DATA)
	assert dict(proxy.forwarded) == {"PUT": 2, "HEAD": 2}
	assert bucket.head("units/u1.json").etag != hashlib.md5(DATA).hexdigest()
	report = verify(tmp_path, bucket)
	assert report.clean and report.matched == 2
	(tmp_path / "units" / "u2.json").write_bytes(DATA.replace(b"u1", b"u9"))
	assert [m.path for m in verify(tmp_path, bucket).mismatched] == ["units/u2.json"]


def test_confirming_by_the_put_etag_sends_one_request(
	proxy: FaultProxy, cdn: CdnBucket, bucket_name: str
) -> None:
	bucket = CdnBucket(make_config(proxy.url, bucket_name, key_prefix="memora"), confirm_with_head=False)
	stored = bucket.put("units/u1.json", DATA)
	assert (stored.size, stored.etag, stored.sha256) == (
		len(DATA),
		hashlib.md5(DATA).hexdigest(),
		canonical.sha256(DATA),
	)
	assert dict(proxy.forwarded) == {"PUT": 1}
	assert cdn.get("units/u1.json") == DATA


def test_without_md5_etags_a_head_is_always_sent(proxy: FaultProxy, bucket_name: str) -> None:
	config = make_config(proxy.url, bucket_name, etag_is_md5=False)
	CdnBucket(config, confirm_with_head=False).put("units/u1.json", DATA)
	assert dict(proxy.forwarded) == {"PUT": 1, "HEAD": 1}


def test_a_newer_version_uploaded_meanwhile_is_left_alone(cdn: CdnBucket) -> None:
	newer = canonical.dumps({"v": 2})
	cdn.put("units/u1.json", newer)
	with pytest.raises(CdnError, match="another version replaced it meanwhile"):
		cdn._confirm("units/u1.json", cdn.head("units/u1.json"), DATA, "0" * 32, canonical.sha256(DATA))
	assert cdn.get("units/u1.json") == newer


def test_without_md5_etags_the_sha256_metadata_confirms(moto_server: MotoServer, bucket_name: str) -> None:
	bucket = CdnBucket(make_config(moto_server.url, bucket_name, etag_is_md5=False))
	assert bucket.put("units/u1.json", DATA).sha256 == canonical.sha256(DATA)


def test_secrets_never_appear_in_repr_or_messages(proxied_cdn: CdnBucket, proxy: FaultProxy) -> None:
	texts = [repr(proxied_cdn.config), repr(proxied_cdn), str(proxied_cdn.config.endpoint_host)]
	for fault in (403, 500, "hang", "reset"):
		proxy.set_fault(fault)
		with pytest.raises(CdnError) as caught:
			proxied_cdn.put("units/u1.json", DATA)
		texts += [str(caught.value), repr(caught.value)]
	proxy.stop()
	texts.append(proxied_cdn.probe().message)
	for text in texts:
		assert SECRET_KEY not in text
		assert ACCESS_KEY not in text


def test_endpoint_user_info_is_not_shown() -> None:
	config = S3Config(bucket="b-1", endpoint_url="https://user:pass@cdn.example.com:9000")
	assert config.endpoint_host == "cdn.example.com:9000"
	assert S3Config(bucket="b-1", region="eu-west-1").endpoint_host == "s3.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
	("field", "value", "words"),
	[
		("bucket", " ", "bucket name is empty"),
		("endpoint_url", "ftp://x", "http:// or https://"),
		("key_prefix", "../up", "leave its folder"),
		("addressing_style", "sideways", "addressing style"),
	],
)
def test_config_is_validated(field: str, value: str, words: str) -> None:
	values = {"bucket": "memora", field: value}
	with pytest.raises(ValueError, match=words):
		S3Config(**values)


def test_key_prefix_slashes_are_normalised(moto_server: MotoServer, bucket_name: str) -> None:
	bucket = CdnBucket(make_config(moto_server.url, bucket_name, key_prefix="/site/content/"))
	bucket.put("units/u1.json", DATA)
	assert bucket.key("units/u1.json") == "site/content/units/u1.json"
	assert [item.path for item in bucket.list()] == ["units/u1.json"]


def test_delete_many_removes_each_object_in_one_request(cdn: CdnBucket, moto_server: MotoServer) -> None:
	paths = [f"units/U{i}.json" for i in range(5)] + [ARABIC_PATH]
	for path in paths:
		cdn.put(path, DATA)
	cdn.put("units/kept.json", DATA)
	before = moto_server.logged_requests()
	results = cdn.delete_many([*paths, "units/never-there.json"])
	assert results == dict.fromkeys([*paths, "units/never-there.json"])
	assert moto_server.logged_requests() - before == {"POST": 1}
	assert [obj.path for obj in cdn.list()] == ["units/kept.json"]


# --- CORS ----------------------------------------------------------------------------------------------

APP = "https://app.example"
OUR_RULE = {
	"ID": s3.CORS_RULE_ID,
	"AllowedHeaders": ["*"],
	"AllowedMethods": ["GET", "HEAD"],
	"AllowedOrigins": [APP, "https://*.learn.example"],
	"ExposeHeaders": ["ETag", "Content-Length"],
	"MaxAgeSeconds": s3.CORS_MAX_AGE,
}
FOREIGN_RULE = {"ID": "other-app", "AllowedMethods": ["PUT"], "AllowedOrigins": ["https://admin.example"]}


def browser_get(cdn: CdnBucket, path: str, origin: str):
	"""GET the object as a browser on `origin` would (a presigned URL stands in for a public one)."""
	url = cdn.client.generate_presigned_url(
		"get_object", Params={"Bucket": cdn.config.bucket, "Key": cdn.key(path)}
	)
	return urllib.request.urlopen(urllib.request.Request(url, headers={"Origin": origin}), timeout=5)


def test_cors_rule_is_applied_idempotently_and_keeps_other_rules(cdn: CdnBucket) -> None:
	cdn.client.put_bucket_cors(Bucket=cdn.config.bucket, CORSConfiguration={"CORSRules": [FOREIGN_RULE]})
	assert cdn.apply_cors([APP, "https://*.learn.example"]) == 1
	first = cdn.cors_rules()
	assert cdn.apply_cors([APP, "https://*.learn.example"]) == 1
	assert cdn.cors_rules() == first == [FOREIGN_RULE, OUR_RULE]
	cdn.put("units/u1.json", DATA)
	with browser_get(cdn, "units/u1.json", APP) as response:
		assert response.headers["Access-Control-Allow-Origin"] == APP
		assert response.headers["Access-Control-Expose-Headers"] == "ETag, Content-Length"

	assert cdn.apply_cors(["*"]) == 1  # our rule replaced, not added to
	assert cdn.cors_rules() == [FOREIGN_RULE, {**OUR_RULE, "AllowedOrigins": ["*"]}]


def test_cors_rule_on_a_bucket_without_cors(cdn: CdnBucket) -> None:
	assert cdn.cors_rules() == []
	assert cdn.apply_cors([APP]) == 0
	assert cdn.cors_rules() == [{**OUR_RULE, "AllowedOrigins": [APP]}]


def test_cors_missing_names_the_origins_no_rule_lets_get(cdn: CdnBucket) -> None:
	origins = [APP, "https://m.learn.example", "https://evil.example", "*"]
	assert cdn.cors_missing(origins) == origins  # no CORS configuration at all
	cdn.client.put_bucket_cors(Bucket=cdn.config.bucket, CORSConfiguration={"CORSRules": [FOREIGN_RULE]})
	assert cdn.cors_missing([APP]) == [APP]  # a rule for another origin, and not for GET
	cdn.apply_cors([APP, "https://*.learn.example"])
	assert cdn.cors_missing(origins) == ["https://evil.example", "*"]
	cdn.apply_cors(["*"])
	assert cdn.cors_missing(origins) == []


def test_connection_test_warns_about_missing_cors_but_still_works(cdn: CdnBucket) -> None:
	result = cdn.probe(cors_origins=[APP])
	assert [step.name for step in result.steps] == ["write", "read", "list", "delete", "cors"]
	cors = result.steps[-1]
	assert (cors.ok, cors.warning) == (False, True)
	assert cors.message == (
		f"the bucket has no CORS rule allowing GET from {APP}: CDN Settings > CDN > Apply CORS Rule "
		"(or, with a CDN in front of the bucket, set CORS on the CDN instead)"
	)
	assert result.ok
	assert result.message == f"write, read, list and delete all succeeded, but {cors.message}"
	assert "any origin (*)" in cdn.probe(cors_origins=["*"]).steps[-1].message

	cdn.apply_cors([APP])
	result = cdn.probe(cors_origins=[APP])
	assert result.ok and result.steps[-1].ok
	assert result.message == "write, read, list and delete all succeeded"
	assert [step.name for step in cdn.probe().steps] == ["write", "read", "list", "delete"]


def test_connection_test_checks_cors_only_once_the_bucket_answers(moto_server: MotoServer) -> None:
	result = CdnBucket(make_config(moto_server.url, "memora-no-such-bucket")).probe(cors_origins=[APP])
	assert [(step.name, step.ok) for step in result.steps] == [("write", False)]
	assert not result.ok and "does not exist" in result.message


def test_cors_on_a_missing_bucket_fails_clearly(moto_server: MotoServer) -> None:
	bucket = CdnBucket(make_config(moto_server.url, "memora-no-such-bucket"))
	with pytest.raises(CdnError) as raised:
		bucket.apply_cors(["*"])
	assert raised.value.kind is CdnErrorKind.BUCKET_MISSING
	assert (
		str(raised.value)
		== "CORS read failed: the bucket 'memora-no-such-bucket' does not exist [NoSuchBucket]"
	)


def test_cors_refusals_name_the_missing_permission(
	cdn: CdnBucket, proxy: FaultProxy, proxied_cdn: CdnBucket, bucket_name: str
) -> None:
	"""Keys without a CORS permission: the store answers AccessDenied to just that call."""
	cdn.client.put_bucket_cors(Bucket=bucket_name, CORSConfiguration={"CORSRules": [FOREIGN_RULE]})
	proxy.denied = {"s3:PutBucketCORS"}
	with pytest.raises(CdnError) as raised:
		proxied_cdn.apply_cors([APP])
	assert raised.value.kind is CdnErrorKind.ACCESS_DENIED
	assert str(raised.value) == (
		"CORS update failed: access denied, the keys need the s3:PutBucketCORS permission on the bucket [AccessDenied]"
	)
	assert cdn.cors_rules() == [FOREIGN_RULE]  # nothing was written
	assert proxy.forwarded["GET"] == 1  # the rules were read first; the write was refused

	proxy.denied = {"s3:GetBucketCORS"}
	result = proxied_cdn.probe(cors_origins=[APP])
	assert result.ok  # the keys may do all the app does: the connection works
	assert [step.name for step in result.steps] == ["write", "read", "list", "delete", "cors"]
	assert result.steps[-1].warning
	assert "the keys need the s3:GetBucketCORS permission" in result.steps[-1].message


def test_a_store_without_bucket_cors_is_named(proxy: FaultProxy, proxied_cdn: CdnBucket) -> None:
	proxy.set_fault(501)
	with pytest.raises(CdnError) as raised:
		proxied_cdn.apply_cors([APP])
	assert raised.value.kind is CdnErrorKind.REJECTED
	assert "this S3 server has no per-bucket CORS rules" in str(raised.value)
	assert "MINIO_API_CORS_ALLOW_ORIGIN" in str(raised.value)

	proxy.set_fault(501, after=4)  # write, read, list and delete reach the bucket; the CORS read does not
	result = proxied_cdn.probe(cors_origins=[APP])
	assert result.ok
	assert result.steps[-1].warning and "no per-bucket CORS rules" in result.steps[-1].message


def test_the_strict_store_refuses_checksum_headers_as_b2_does(
	strict_store: FaultProxy, bucket_name: str
) -> None:
	refused = strict_store.refused
	with pytest.raises(ClientError) as caught:
		boto3.session.Session().client(
			"s3",
			endpoint_url=strict_store.url,
			region_name="us-east-1",
			aws_access_key_id=ACCESS_KEY,
			aws_secret_access_key=SECRET_KEY,
			config=Config(s3={"addressing_style": "path"}),
		).put_object(Bucket=bucket_name, Key="k.json", Body=DATA, ChecksumAlgorithm="CRC32")
	assert caught.value.response["Error"]["Code"] == "InvalidArgument"
	assert "Unsupported header" in caught.value.response["Error"]["Message"]
	assert strict_store.refused == refused + 1


def test_uploads_deletes_and_the_probe_send_no_checksum_header_a_strict_store_refuses(
	cdn: CdnBucket, strict_store: FaultProxy
) -> None:
	refused = strict_store.refused
	for n in range(3):
		cdn.put(f"plans/P/u{n}.json", DATA)
	assert cdn.delete_many(["plans/P/u0.json"]) == {"plans/P/u0.json": None}
	cdn.delete("plans/P/u1.json")
	assert cdn.delete_prefix("plans/P") == 1
	assert cdn.probe().ok
	assert list(cdn.list()) == []
	assert strict_store.refused == refused


def test_checksums_are_asked_for_only_when_required_where_botocore_has_the_option(cdn: CdnBucket) -> None:
	config = cdn.client.meta.config
	if "request_checksum_calculation" not in Config.OPTION_DEFAULTS:
		pytest.skip(f"botocore {botocore.__version__} sends no checksum header of its own")
	assert config.request_checksum_calculation == "when_required"
	assert config.response_checksum_validation == "when_required"


def test_connection_test_names_a_header_the_store_refuses(cdn: CdnBucket) -> None:
	"""As a boto3 that sends its checksums whatever it is told would be refused."""

	def add_checksum_header(request, **kwargs) -> None:
		request.headers["x-amz-sdk-checksum-algorithm"] = "CRC32"

	cdn.client.meta.events.register("before-send.s3.PutObject", add_checksum_header)
	result = cdn.probe()
	assert not result.ok
	assert "does not accept the request header 'x-amz-sdk-checksum-algorithm'" in result.message
	assert "checksum headers newer boto3 versions" in result.message
