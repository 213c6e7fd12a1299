"""The URL resolver: CDN on, off, explicit fallback, missing base URL, trailing slashes and encoding."""

import dataclasses
from urllib.parse import unquote, urlsplit

import pytest

from memora_storage.utils.paths import InvalidPathError
from memora_storage.utils.resolver import UrlSettings, build_url

SITE = "https://memora.example"
CDN = "https://cdn.example.com"
PATH = "plans/P1/manifest.json"


def test_cdn_enabled_uses_cdn_base_url() -> None:
	settings = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN)
	assert settings.uses_cdn is True
	assert build_url(PATH, settings) == f"{CDN}/{PATH}"


def test_cdn_disabled_uses_local_files_url() -> None:
	settings = UrlSettings(local_domain=SITE, enable_cdn=False, cdn_base_url=CDN)
	assert settings.uses_cdn is False
	assert build_url(PATH, settings) == f"{SITE}/files/memora_content/{PATH}"


def test_defaults_are_local() -> None:
	assert build_url("units/U1.json", UrlSettings(local_domain=SITE)) == (
		f"{SITE}/files/memora_content/units/U1.json"
	)


def test_local_fallback_mode_overrides_an_enabled_cdn() -> None:
	settings = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN, local_fallback_mode=True)
	assert settings.uses_cdn is False
	assert build_url(PATH, settings) == f"{SITE}/files/memora_content/{PATH}"


def test_fallback_mode_without_cdn_is_still_local() -> None:
	settings = UrlSettings(local_domain=SITE, enable_cdn=False, cdn_base_url=CDN, local_fallback_mode=True)
	assert build_url(PATH, settings) == f"{SITE}/files/memora_content/{PATH}"


def test_enabled_cdn_without_base_url_falls_back_to_local() -> None:
	"""A half-configured CDN must not produce '/plans/…' URLs that point nowhere."""
	settings = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url="")
	assert settings.uses_cdn is False
	assert build_url(PATH, settings) == f"{SITE}/files/memora_content/{PATH}"


@pytest.mark.parametrize("cdn", [CDN, CDN + "/", CDN + "//"])
@pytest.mark.parametrize("site", [SITE, SITE + "/", SITE + "//"])
def test_trailing_slashes_give_exactly_one_separator(cdn: str, site: str) -> None:
	on = UrlSettings(local_domain=site, enable_cdn=True, cdn_base_url=cdn)
	off = dataclasses.replace(on, enable_cdn=False)
	assert build_url(PATH, on) == f"{CDN}/{PATH}"
	assert build_url(PATH, off) == f"{SITE}/files/memora_content/{PATH}"


def test_cdn_base_url_with_a_path_prefix_is_kept() -> None:
	settings = UrlSettings(
		local_domain=SITE, enable_cdn=True, cdn_base_url="https://cdn.example.com/memora/v1/"
	)
	assert build_url(PATH, settings) == f"https://cdn.example.com/memora/v1/{PATH}"


def test_local_domain_with_port_and_http() -> None:
	settings = UrlSettings(local_domain="http://localhost:8000")
	assert build_url(PATH, settings) == f"http://localhost:8000/files/memora_content/{PATH}"


@pytest.mark.parametrize("enable_cdn", [True, False])
def test_names_are_percent_encoded_and_round_trip(enable_cdn: bool) -> None:
	settings = UrlSettings(local_domain=SITE, enable_cdn=enable_cdn, cdn_base_url=CDN)
	path = "plans/خطة ١/subjects/C# 101? 50%.json"
	url = build_url(path, settings)
	assert url.isascii()
	assert url.endswith("/plans/%D8%AE%D8%B7%D8%A9%20%D9%A1/subjects/C%23%20101%3F%2050%25.json")
	split = urlsplit(url)
	assert (split.query, split.fragment) == ("", "")
	prefix = "" if enable_cdn else "/files/memora_content"
	assert unquote(split.path) == f"{prefix}/{path}"


@pytest.mark.parametrize("path", ["../secret.json", "/etc/passwd", "units/a\\b.json", "units/.x.json", ""])
def test_unsafe_paths_get_no_url(path: str) -> None:
	with pytest.raises(InvalidPathError):
		build_url(path, UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN))


@pytest.mark.parametrize("path", [None, ["units/U1.json"], {"p": 1}])
def test_non_text_paths_get_invalid_path_error(path: object) -> None:
	with pytest.raises(InvalidPathError, match="must be text"):
		build_url(path, UrlSettings(local_domain=SITE))  # type: ignore[arg-type]


def test_settings_snapshot_is_frozen() -> None:
	"""One snapshot per rendered file: nobody can flip it halfway (EDGE-settings-race)."""
	settings = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN)
	with pytest.raises(dataclasses.FrozenInstanceError):
		settings.enable_cdn = False  # type: ignore[misc]


def test_a_new_snapshot_changes_the_next_url_at_once() -> None:
	"""SC-002: nothing is cached across snapshots, so a flipped setting shows on the next call."""
	on = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN)
	assert build_url(PATH, on).startswith(CDN + "/")
	off = dataclasses.replace(on, enable_cdn=False)
	assert build_url(PATH, off).startswith(SITE + "/files/memora_content/")
	assert build_url(PATH, on).startswith(CDN + "/")


def test_settings_compare_and_hash_by_value() -> None:
	"""Snapshots are values, so an adapter may cache them keyed by content."""
	one = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN)
	two = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN)
	assert one == two and hash(one) == hash(two)
	assert one != dataclasses.replace(one, local_fallback_mode=True)


def test_a_path_the_cdn_lacks_is_local_even_with_the_cdn_on() -> None:
	"""Per-version routing: the CDN is named only for a path whose current version it holds."""
	on = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN)
	assert build_url(PATH, on, on_cdn=False) == f"{SITE}/files/memora_content/{PATH}"
	assert build_url(PATH, on, on_cdn=True) == f"{CDN}/{PATH}"
	assert build_url(PATH, on, on_cdn=None) == f"{CDN}/{PATH}"


def test_a_held_path_is_local_when_the_settings_say_local() -> None:
	off = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN, local_fallback_mode=True)
	assert build_url(PATH, off, on_cdn=True) == f"{SITE}/files/memora_content/{PATH}"


def test_the_probes_verdict_sends_every_url_to_this_server() -> None:
	down = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN, cdn_down=True)
	assert down.uses_cdn is False
	assert down.base_url == f"{SITE}/files/memora_content"
	assert build_url(PATH, down, on_cdn=True) == f"{SITE}/files/memora_content/{PATH}"


def test_versioned_cdn_urls_carry_twelve_hex_digits_of_the_version() -> None:
	sha = "0123456789abcdef" * 4
	versioned = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN, version_in_urls=True)
	assert build_url(PATH, versioned, True, sha) == f"{CDN}/{PATH}?v=0123456789ab"
	# No version known (no row), or served locally: FR-007's exact form.
	assert build_url(PATH, versioned, None, None) == f"{CDN}/{PATH}"
	assert build_url(PATH, versioned, False, sha) == f"{SITE}/files/memora_content/{PATH}"
	# Off by default: the same call gives the plain URL.
	plain = dataclasses.replace(versioned, version_in_urls=False)
	assert build_url(PATH, plain, True, sha) == f"{CDN}/{PATH}"
