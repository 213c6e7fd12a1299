"""The CDN bucket: an S3-compatible client that uploads content files and proves what it stored.

Every upload sends Content-MD5 (a conforming server refuses bytes that arrived damaged) and the
SHA-256 as object metadata, then reads the object's size and ETag back before it reports success.
Timeouts are short and boto3 retries only once: the durable retry schedule (`backoff`) does the
long waits. No other checksum header is ever sent: boto3 1.36 and later add CRC32 headers to every
upload and delete by default, which Backblaze B2, older R2, GCS, Ceph, Wasabi and older MinIO
refuse, so those checksums are asked for only where an operation requires one (DeleteObjects,
PutBucketCors), and there Content-MD5 is sent instead, as older botocore did. Every failure surfaces as one `CdnError` whose text is a short sentence fit for a
"last error" field; neither the secret key nor the access key ever appears in it or in a repr.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
	BotoCoreError,
	ClientError,
	ConnectionClosedError,
	ConnectTimeoutError,
	EndpointConnectionError,
	NoCredentialsError,
	PartialCredentialsError,
	ReadTimeoutError,
)
from botocore.handlers import add_expect_header
from botocore.retries import standard

from memora_storage.utils import canonical
from memora_storage.utils.paths import validate_relpath

CONTENT_TYPE = "application/json; charset=utf-8"
# Short: a changed file must reach readers soon, and the URL of a content path never changes.
DEFAULT_CACHE_CONTROL = "public, max-age=300"
SHA256_METADATA = "sha256"  # sent as the header x-amz-meta-sha256
# Two tries in all inside boto3 (one retry of a dropped connection, a timeout or a 5xx); anything
# longer is the durable schedule's job. botocore's `max_attempts` would count retries only.
TOTAL_ATTEMPTS = 2
DELETE_BATCH = 1000  # the most keys S3 accepts in one DeleteObjects call
CORS_RULE_ID = "memora-storage"  # our rule among the bucket's CORS rules
CORS_MAX_AGE = 3600  # seconds a browser may keep the preflight's answer
PROBE_PREFIX = ".memora-probe-"  # a leading dot: no content path can collide with a probe object


class CdnErrorKind(str, Enum):
	"""What went wrong, coarse enough for an administrator to know what to fix."""

	UNREACHABLE = "unreachable"
	TIMEOUT = "timeout"
	ACCESS_DENIED = "access_denied"
	BUCKET_MISSING = "bucket_missing"
	CHECKSUM_MISMATCH = "checksum_mismatch"
	SERVER_ERROR = "server_error"
	THROTTLED = "throttled"  # the store asks to slow down (503 SlowDown, 429): a rate, not an outage
	REJECTED = "rejected"
	MISCONFIGURED = "misconfigured"


class CdnError(Exception):
	"""One CDN operation that failed; `str(error)` is a short sentence safe to store and show."""

	def __init__(
		self,
		kind: CdnErrorKind,
		message: str,
		path: str | None = None,
		status: int | None = None,
		code: str | None = None,
	):
		super().__init__(message)
		self.kind = kind
		self.path = path
		self.status = status
		self.code = code


@dataclass(frozen=True)
class S3Config:
	"""Where and how to reach the bucket. Empty keys mean boto3's default chain (environment, instance role)."""

	bucket: str
	endpoint_url: str = ""  # empty: AWS S3 in `region`
	region: str = "us-east-1"
	key_prefix: str = ""  # e.g. "memora" puts content path P at key "memora/P"
	access_key: str = field(default="", repr=False)
	secret_key: str = field(default="", repr=False)
	connect_timeout: float = 5.0
	read_timeout: float = 15.0
	max_pool_connections: int = 16
	addressing_style: str = "auto"  # "path" for most self-hosted S3 servers
	# True where the ETag is the MD5 of the bytes (AWS without SSE-KMS/SSE-C, R2, MinIO, Spaces, B2):
	# uploads and verification then check the server's own hash. False (SSE-KMS, SSE-C, multipart):
	# the SHA-256 metadata, read back by HEAD. None: not known yet, an upload whose ETag differs is
	# read back once to tell (`CdnBucket.etag_is_md5_seen` says what was found).
	etag_is_md5: bool | None = True

	def __post_init__(self) -> None:
		if not self.bucket or not self.bucket.strip():
			raise ValueError("the bucket name is empty")
		if self.endpoint_url and urlsplit(self.endpoint_url).scheme not in ("http", "https"):
			raise ValueError(
				f"the endpoint URL must start with http:// or https://, got {self.endpoint_url!r}"
			)
		if self.key_prefix.strip("/"):
			validate_relpath(self.key_prefix.strip("/"))
		if self.addressing_style not in ("auto", "path", "virtual"):
			raise ValueError(f"addressing style must be auto, path or virtual, got {self.addressing_style!r}")

	@property
	def endpoint_host(self) -> str:
		"""The endpoint as shown in messages: host and port only, never user info."""
		if not self.endpoint_url:
			return f"s3.{self.region}.amazonaws.com"
		parts = urlsplit(self.endpoint_url)
		return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


class StoredObject(NamedTuple):
	"""An object as the server reports it; `sha256` comes from our metadata and is None if absent."""

	path: str
	size: int
	etag: str
	sha256: str | None


class ListedObject(NamedTuple):
	"""One entry of a bucket listing: content path (relative to the key prefix), size, ETag."""

	path: str
	size: int
	etag: str


@dataclass(frozen=True)
class ProbeStep:
	name: str
	ok: bool
	seconds: float
	message: str = ""
	warning: bool = False  # a failure worth fixing that does not stop the connection from working


@dataclass(frozen=True)
class ProbeResult:
	"""What "Test connection" shows: each step with its outcome and time."""

	steps: tuple[ProbeStep, ...]

	@property
	def ok(self) -> bool:
		return bool(self.steps) and all(step.ok or step.warning for step in self.steps)

	@property
	def message(self) -> str:
		failed = [step for step in self.steps if not step.ok and not step.warning]
		warned = [step for step in self.steps if not step.ok and step.warning]
		if failed:
			return failed[0].message
		done = "write, read, list and delete all succeeded"
		return f"{done}, but {warned[0].message}" if warned else done


class CdnBucket:
	"""The content files in one bucket under one key prefix. Thread-safe: share one per process."""

	def __init__(
		self, config: S3Config, cache_control: str = DEFAULT_CACHE_CONTROL, confirm_with_head: bool = True
	):
		"""`confirm_with_head=False` trusts the ETag of the PUT answer when it is the MD5 of the bytes
		sent (the server's hash of what it stored): half the requests; a HEAD still settles any doubt."""
		self.config = config
		self.cache_control = cache_control
		self.confirm_with_head = confirm_with_head
		self.etag_is_md5_seen: bool | None = None  # what uploads showed of the store's ETags
		prefix = config.key_prefix.strip("/")
		self._prefix = f"{prefix}/" if prefix else ""
		boto_config = Config(
			**CHECKSUMS_WHEN_REQUIRED,
			region_name=config.region,
			signature_version="s3v4",
			connect_timeout=config.connect_timeout,
			read_timeout=config.read_timeout,
			retries={"total_max_attempts": TOTAL_ATTEMPTS, "mode": "standard"},
			max_pool_connections=config.max_pool_connections,
			s3={"addressing_style": config.addressing_style},
		)
		# A session of its own: boto3's default session is not safe to share between threads.
		self.client = boto3.session.Session().client(
			"s3",
			endpoint_url=config.endpoint_url or None,
			aws_access_key_id=config.access_key or None,
			aws_secret_access_key=config.secret_key or None,
			config=boto_config,
		)
		# Content files are small: waiting for `100 Continue` before each body would only add a round trip.
		self.client.meta.events.unregister("before-call.s3", add_expect_header)
		send_content_md5_only(self.client)
		_leave_throttling_to_the_caller(self.client)

	def __repr__(self) -> str:
		return f"<CdnBucket {self.config.bucket}/{self._prefix} at {self.config.endpoint_host}>"

	def key(self, path: str) -> str:
		"""The object key of a content path."""
		return self._prefix + validate_relpath(path)

	def put(
		self, path: str, data: bytes, cache_control: str | None = None, content_type: str = CONTENT_TYPE
	) -> StoredObject:
		"""Upload `data` as the object of `path` and return it only once the server shows the same bytes."""
		key = self.key(path)
		md5 = hashlib.md5(data, usedforsecurity=False)
		digest = canonical.sha256(data)
		response = self._call(
			"upload",
			path,
			self.client.put_object,
			Bucket=self.config.bucket,
			Key=key,
			Body=data,
			ContentMD5=base64.b64encode(md5.digest()).decode("ascii"),
			ContentType=content_type,
			CacheControl=self.cache_control if cache_control is None else cache_control,
			Metadata={SHA256_METADATA: digest},
		)
		etag = str(response.get("ETag", "")).strip('"')
		if not self.confirm_with_head and self.config.etag_is_md5 is not False and etag == md5.hexdigest():
			self._saw_etag(True)
			return StoredObject(path, len(data), etag, digest)
		return self._confirm(path, self._head("upload", path), data, md5.hexdigest(), digest)

	def _confirm(
		self, path: str, stored: StoredObject | None, data: bytes, md5: str, digest: str
	) -> StoredObject:
		"""Return the object now at `path` if it holds `data`, else raise CHECKSUM_MISMATCH.

		An ETag that is not our MD5 is not proof of damage: with SSE-KMS, SSE-C or multipart uploads
		it never is the MD5. Unless the store is known for that, the object is read back once: our
		bytes mean such a store (`etag_is_md5_seen`), other bytes mean damage and the object goes.
		An object holding exactly what was sent is never deleted.
		"""
		size = len(data)
		if stored is None:
			raise CdnError(
				CdnErrorKind.CHECKSUM_MISMATCH,
				f"upload of {path!r} could not be confirmed: the object is missing right after the upload",
				path,
			)
		if stored.sha256 is not None and stored.sha256 != digest:
			raise CdnError(
				CdnErrorKind.CHECKSUM_MISMATCH,
				f"upload of {path!r} could not be confirmed: another version replaced it meanwhile",
				path,
			)
		if stored.size == size and stored.etag == md5:
			self._saw_etag(True)
			return stored
		if stored.size == size and stored.sha256 == digest:
			if self.config.etag_is_md5 is False:
				return stored
			if self.get(path) == data:
				self._saw_etag(False)
				return stored
		if stored.sha256 == digest:
			# Our upload, stored damaged (a server that skipped the Content-MD5 check): nothing is
			# better than wrong bytes, and the next attempt uploads it again.
			self.delete(path)
		raise CdnError(
			CdnErrorKind.CHECKSUM_MISMATCH,
			f"upload of {path!r} failed: checksum mismatch, the CDN stored {stored.size} bytes "
			f"(ETag {stored.etag}) for {size} bytes (MD5 {md5}) sent",
			path,
		)

	def put_canary(self, name: str, data: bytes, cache_control: str) -> None:
		"""Upload the health probe's object `name` (a dot name, which no content path can be) under the
		key prefix, where the CDN Base URL serves it."""
		if not name.startswith(".") or "/" in name:
			raise ValueError(f"a canary name is one dot name, got {name!r}")
		self._call(
			"canary upload",
			None,
			self.client.put_object,
			Bucket=self.config.bucket,
			Key=self._prefix + name,
			Body=data,
			ContentMD5=base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii"),
			ContentType=CONTENT_TYPE,
			CacheControl=cache_control,
		)

	def _saw_etag(self, is_md5: bool) -> None:
		"""Once one object's ETag was not its MD5, the store is taken for one that does that."""
		if self.etag_is_md5_seen is not False:
			self.etag_is_md5_seen = is_md5

	def head(self, path: str) -> StoredObject | None:
		"""The stored object of `path`, or None if there is none."""
		return self._head("check", path)

	def _head(self, action: str, path: str) -> StoredObject | None:
		try:
			response = self._call(
				action, path, self.client.head_object, Bucket=self.config.bucket, Key=self.key(path)
			)
		except CdnError as e:
			if e.status == 404:
				return None
			raise
		return StoredObject(
			path,
			int(response["ContentLength"]),
			response["ETag"].strip('"'),
			response.get("Metadata", {}).get(SHA256_METADATA),
		)

	def get(self, path: str) -> bytes:
		"""The bytes stored for `path`."""
		response = self._call(
			"download", path, self.client.get_object, Bucket=self.config.bucket, Key=self.key(path)
		)
		return response["Body"].read()

	def delete(self, path: str) -> None:
		"""Delete the object of `path`; deleting an absent object succeeds, as in S3."""
		self._call("delete", path, self.client.delete_object, Bucket=self.config.bucket, Key=self.key(path))

	def delete_many(self, paths: list[str]) -> dict[str, CdnError | None]:
		"""Delete the objects of these paths, one request per 1,000; each path's error, or None."""
		results: dict[str, CdnError | None] = {}
		for start in range(0, len(paths), DELETE_BATCH):
			batch = paths[start : start + DELETE_BATCH]
			try:
				response = self._call(
					"delete",
					batch[0] if len(batch) == 1 else None,
					self.client.delete_objects,
					Bucket=self.config.bucket,
					Delete={"Objects": [{"Key": self.key(path)} for path in batch], "Quiet": True},
				)
			except CdnError as e:
				results.update(dict.fromkeys(batch, e))
				continue
			errors = {item.get("Key", "")[len(self._prefix) :]: item for item in response.get("Errors", [])}
			for path in batch:
				error = errors.get(path)
				results[path] = error and CdnError(
					_kind_of(error.get("Code", ""), 0),
					f"delete of {path!r} failed: {error.get('Code', 'unknown error')} {error.get('Message', '')}".strip(),
					path,
					code=error.get("Code"),
				)
		return results

	def delete_prefix(self, prefix: str) -> int:
		"""Delete every object in the folder `prefix` (a Plan's `plans/{plan}`); returns how many."""
		folder = self.key(prefix) + "/"
		deleted = 0
		for page in self._pages(folder, prefix):
			keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
			for start in range(0, len(keys), DELETE_BATCH):
				batch = keys[start : start + DELETE_BATCH]
				response = self._call(
					"delete",
					prefix,
					self.client.delete_objects,
					Bucket=self.config.bucket,
					Delete={"Objects": batch, "Quiet": True},
				)
				errors = response.get("Errors", [])
				if errors:
					first = errors[0]
					raise CdnError(
						_kind_of(first.get("Code", ""), 0),
						f"delete of {prefix!r} failed for {len(errors)} object(s), e.g. "
						f"{first.get('Key', '')[len(self._prefix) :]!r}: {first.get('Code', 'unknown error')}",
						prefix,
						code=first.get("Code"),
					)
				deleted += len(batch)
		return deleted

	def list(self, prefix: str = "") -> Iterator[ListedObject]:
		"""Every object under the key prefix (or its folder `prefix`), page by page."""
		folder = self.key(prefix) + "/" if prefix else self._prefix
		for page in self._pages(folder, prefix or None):
			for item in page.get("Contents", []):
				yield ListedObject(
					item["Key"][len(self._prefix) :], int(item["Size"]), item["ETag"].strip('"')
				)

	def _pages(self, key_prefix: str, path: str | None) -> Iterator[dict[str, Any]]:
		pages = self.client.get_paginator("list_objects_v2").paginate(
			Bucket=self.config.bucket, Prefix=key_prefix
		)
		iterator = iter(pages)
		while True:
			try:
				page = self._call("list", path, next, iterator)
			except StopIteration:
				return
			yield page

	def apply_cors(self, origins: list[str]) -> int:
		"""Let browsers on `origins` (or `*`) GET and HEAD the content: our rule replaces the one it
		wrote before, rules of others on the bucket are kept (their number is returned)."""
		others = [rule for rule in self.cors_rules() if rule.get("ID") != CORS_RULE_ID]
		ours = {
			"ID": CORS_RULE_ID,
			"AllowedMethods": ["GET", "HEAD"],
			"AllowedOrigins": list(origins),
			"AllowedHeaders": ["*"],
			"ExposeHeaders": ["ETag", "Content-Length"],
			"MaxAgeSeconds": CORS_MAX_AGE,
		}
		self._cors_call(
			"CORS update",
			"s3:PutBucketCORS",
			self.client.put_bucket_cors,
			CORSConfiguration={"CORSRules": [*others, ours]},
		)
		return len(others)

	def cors_rules(self) -> list[dict[str, Any]]:
		"""The bucket's CORS rules, ours and others'; none when it has no CORS configuration."""
		try:
			response = self._cors_call("CORS read", "s3:GetBucketCORS", self.client.get_bucket_cors)
		except CdnError as e:
			if e.code == "NoSuchCORSConfiguration":
				return []
			raise
		return list(response.get("CORSRules", []))

	def cors_missing(self, origins: list[str]) -> list[str]:
		"""The origins no rule of the bucket lets GET (AllowedOrigins may hold `*` wildcards)."""
		rules = [rule for rule in self.cors_rules() if "GET" in rule.get("AllowedMethods", [])]
		return [
			origin
			for origin in origins
			if not any(
				fnmatch.fnmatchcase(origin, allowed)
				for rule in rules
				for allowed in rule.get("AllowedOrigins", [])
			)
		]

	def _cors_call(self, action: str, permission: str, function: Any, **kwargs: Any) -> Any:
		"""A bucket CORS call whose refusals say what to fix: the permission the keys lack, or a store
		(community MinIO) that has no per-bucket CORS at all."""
		try:
			return self._call(action, None, function, Bucket=self.config.bucket, **kwargs)
		except CdnError as e:
			if e.code == "AccessDenied":
				kind, reason = (
					e.kind,
					f"access denied, the keys need the {permission} permission on the bucket",
				)
			elif e.code == "NotImplemented":
				kind, reason = (
					CdnErrorKind.REJECTED,
					"this S3 server has no per-bucket CORS rules; set CORS in its own settings "
					"(MinIO: MINIO_API_CORS_ALLOW_ORIGIN, * by default) or on the CDN in front of it",
				)
			else:
				raise
			raise CdnError(kind, f"{action} failed: {reason} [{e.code}]", status=e.status, code=e.code) from e

	def probe(self, cors_origins: list[str] | None = None) -> ProbeResult:
		"""Write, read back, list and delete a small probe object: the "Test connection" button. With
		`cors_origins`, once the write worked, also whether the bucket lets browsers on them fetch the
		content: a warning, not a failure, since the connection works either way and CORS may be set
		on a CDN in front of the bucket instead."""
		key = f"{self._prefix}{PROBE_PREFIX}{uuid.uuid4().hex}.json"
		payload = canonical.dumps({"probe": key, "at": time.time()})
		bucket = self.config.bucket
		steps: list[ProbeStep] = []
		written_etag: list[str] = []

		def step(name: str, action: Any, warning: bool = False) -> bool:
			started = time.monotonic()
			try:
				action()
			except CdnError as e:
				steps.append(ProbeStep(name, False, time.monotonic() - started, str(e), warning))
				return False
			steps.append(ProbeStep(name, True, time.monotonic() - started))
			return True

		def write() -> None:
			response = self._call(
				"test write",
				None,
				self.client.put_object,
				Bucket=bucket,
				Key=key,
				Body=payload,
				ContentMD5=base64.b64encode(hashlib.md5(payload, usedforsecurity=False).digest()).decode(
					"ascii"
				),
				ContentType=CONTENT_TYPE,
			)
			written_etag.append(str(response.get("ETag", "")).strip('"'))

		def read() -> None:
			response = self._call("test read", None, self.client.get_object, Bucket=bucket, Key=key)
			if response["Body"].read() != payload:
				raise CdnError(
					CdnErrorKind.CHECKSUM_MISMATCH, "test read returned other bytes than were written"
				)
			# The bytes came back as written: now the ETag tells what kind of store this is.
			self._saw_etag(written_etag[0] == hashlib.md5(payload, usedforsecurity=False).hexdigest())

		def listing() -> None:
			self._call("test list", None, self.client.list_objects_v2, Bucket=bucket, Prefix=key, MaxKeys=1)

		def delete() -> None:
			self._call("test delete", None, self.client.delete_object, Bucket=bucket, Key=key)

		def cors() -> None:
			if missing := self.cors_missing(cors_origins or []):
				who = "any origin (*)" if missing == ["*"] else ", ".join(missing)
				raise CdnError(
					CdnErrorKind.REJECTED,
					f"the bucket has no CORS rule allowing GET from {who}: CDN Settings > CDN > Apply "
					"CORS Rule (or, with a CDN in front of the bucket, set CORS on the CDN instead)",
				)

		if step("write", write):
			step("read", read)
			step("list", listing)
			step("delete", delete)
			if cors_origins:
				step("cors", cors, warning=True)
		return ProbeResult(tuple(steps))

	def _call(self, action: str, path: str | None, function: Any, *args: Any, **kwargs: Any) -> Any:
		"""Run one client call, turning whatever boto3 raises into a CdnError that names the cause."""
		try:
			return function(*args, **kwargs)
		except ClientError as e:
			raise self._client_error(action, path, e) from e
		except BotoCoreError as e:
			raise self._transport_error(action, path, e) from e

	def _what(self, action: str, path: str | None) -> str:
		return f"{action} of {path!r}" if path else action

	def _client_error(self, action: str, path: str | None, error: ClientError) -> CdnError:
		status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
		code = str(error.response.get("Error", {}).get("Code") or status)
		kind = _kind_of(code, status, str(error.response.get("Error", {}).get("Message") or ""))
		if header := _refused_header(str(error.response.get("Error", {}).get("Message") or "")):
			reason = (
				f"the storage service does not accept the request header {header!r}; it is one of the "
				"checksum headers newer boto3 versions (1.36 and later) add, which many S3-compatible "
				"stores (Backblaze B2, older Cloudflare R2, MinIO, Ceph) refuse. This app asks boto3 not "
				"to send them: update the app, or ask the store's provider about the header"
			)
			return CdnError(kind, f"{self._what(action, path)} failed: {reason} [{code}]", path, status, code)
		reason = {
			CdnErrorKind.ACCESS_DENIED: "access denied: check the access key, the secret key and the bucket policy",
			CdnErrorKind.BUCKET_MISSING: f"the bucket {self.config.bucket!r} does not exist",
			CdnErrorKind.CHECKSUM_MISMATCH: "checksum mismatch: the CDN received other bytes than were sent",
			CdnErrorKind.SERVER_ERROR: f"the CDN answered HTTP {status}; it may be overloaded or down",
			CdnErrorKind.THROTTLED: f"the CDN asked to slow down (HTTP {status}); it refused requests for too long",
		}.get(kind, "no such object" if status == 404 else f"the CDN refused the request (HTTP {status})")
		return CdnError(kind, f"{self._what(action, path)} failed: {reason} [{code}]", path, status, code)

	def _transport_error(self, action: str, path: str | None, error: BotoCoreError) -> CdnError:
		host = self.config.endpoint_host
		if isinstance(error, ReadTimeoutError):
			kind, reason = (
				CdnErrorKind.TIMEOUT,
				f"timed out, no answer from {host} within {self.config.read_timeout:g} s",
			)
		elif isinstance(error, ConnectTimeoutError):
			kind, reason = (
				CdnErrorKind.TIMEOUT,
				f"timed out connecting to {host} (more than {self.config.connect_timeout:g} s)",
			)
		elif isinstance(error, EndpointConnectionError):
			kind, reason = CdnErrorKind.UNREACHABLE, f"endpoint unreachable, could not connect to {host}"
		elif isinstance(error, ConnectionClosedError):
			kind, reason = CdnErrorKind.UNREACHABLE, f"{host} closed the connection before answering"
		elif isinstance(error, NoCredentialsError | PartialCredentialsError):
			kind, reason = CdnErrorKind.MISCONFIGURED, "no access key and secret key are configured"
		else:
			# Other transport failures (TLS, a reset connection) carry no secrets, only their class name.
			kind, reason = CdnErrorKind.UNREACHABLE, f"connection to {host} failed ({type(error).__name__})"
		return CdnError(kind, f"{self._what(action, path)} failed: {reason}", path)


# botocore 1.36 added these options (and CRC32 checksums on by default); older botocore, such as the
# 1.34 Frappe v15 pins, sends no such header and has no such option.
CHECKSUMS_WHEN_REQUIRED = (
	{"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required"}
	if "request_checksum_calculation" in Config.OPTION_DEFAULTS
	else {}
)
_CHECKSUM_HEADER_PREFIXES = ("x-amz-checksum-", "x-amz-sdk-checksum-")


def _refused_header(message: str) -> str | None:
	"""The header a store's error message says it refuses ("Unsupported header 'x-amz-...'", as B2
	words it; R2 and AWS name it in "A header you provided implies functionality ...: x-amz-...")."""
	match = re.search(r"(?i)header[^']*'([\w-]+)'", message) or re.search(
		r"(?i)header you provided.*?\b(x-amz-[\w-]+|transfer-encoding|content-encoding)", message
	)
	return match.group(1) if match else None


def send_content_md5_only(client: Any) -> None:
	"""Make `client` send Content-MD5 where an operation requires a checksum: newer botocore sends
	CRC32 there even "when required", which strict stores refuse; MD5 every S3 store accepts."""
	client.meta.events.register("before-sign.s3", _content_md5_instead_of_crc)


def _content_md5_instead_of_crc(request: Any, **kwargs: Any) -> None:
	names = [name for name in request.headers if name.lower().startswith(_CHECKSUM_HEADER_PREFIXES)]
	if not names:
		return
	for name in names:
		del request.headers[name]
	body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
	request.headers["Content-MD5"] = base64.b64encode(
		hashlib.md5(body, usedforsecurity=False).digest()
	).decode()


_ACCESS_CODES = {
	"AccessDenied",
	"InvalidAccessKeyId",
	"SignatureDoesNotMatch",
	"InvalidToken",
	"ExpiredToken",
	"AccountProblem",
	"AllAccessDisabled",
}
_CHECKSUM_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}


_THROTTLE_CODES = {
	"SlowDown",
	"TooManyRequests",
	"RequestLimitExceeded",
	"Throttling",
	"ThrottlingException",
	"RequestThrottled",
}


def throttled(code: str, status: int, message: str = "") -> bool:
	"""Whether an answer asks the client to slow down: SlowDown, 429, or a 503 that says so (AWS
	words one "Reduce your request rate")."""
	return code in _THROTTLE_CODES or status == 429 or (status == 503 and "request rate" in message.lower())


def _leave_throttling_to_the_caller(client: Any) -> None:
	"""boto3 would retry a throttled request once after up to a second, blind to the others in flight;
	the uploader pauses from 100 ms and lowers its concurrency instead (`utils/throttle.py`). Every
	other retry (a dropped connection, a timeout, a 5xx) stays boto3's, once."""
	name = client.meta.service_model.service_id.hyphenize()
	unique_id = f"retry-config-{name}"
	handler = standard.register_retry_handler(client, max_attempts=TOTAL_ATTEMPTS)
	client.meta.events.unregister(f"needs-retry.{name}", unique_id=unique_id)

	def needs_retry(**kwargs: Any) -> Any:
		response = kwargs.get("response")
		if response is not None:
			error = (response[1] or {}).get("Error", {})
			if throttled(str(error.get("Code", "")), response[0].status_code, str(error.get("Message", ""))):
				return None
		return handler.needs_retry(**kwargs)

	client.meta.events.register(f"needs-retry.{name}", needs_retry, unique_id=unique_id)


def _kind_of(code: str, status: int, message: str = "") -> CdnErrorKind:
	if throttled(code, status, message):
		return CdnErrorKind.THROTTLED
	if code in _ACCESS_CODES or status == 403:
		return CdnErrorKind.ACCESS_DENIED
	if code == "NoSuchBucket":
		return CdnErrorKind.BUCKET_MISSING
	if code in _CHECKSUM_CODES:
		return CdnErrorKind.CHECKSUM_MISMATCH
	if status >= 500 or code in ("InternalError", "ServiceUnavailable"):
		return CdnErrorKind.SERVER_ERROR
	return CdnErrorKind.REJECTED
