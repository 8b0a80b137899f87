from __future__ import annotations

import pytest

from archiver.errors import UnsafeUrl
from archiver.net.urls import UrlRules, check_recording_url, is_loopback, without_query

PRESIGNED = (
    "https://bucket.s3.amazonaws.com/rec/a.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Signature=deadbeef#frag"
)


def test_without_query_drops_query_and_fragment() -> None:
    assert without_query(PRESIGNED) == "https://bucket.s3.amazonaws.com/rec/a.mp4"


def test_without_query_keeps_scheme_host_port_and_path() -> None:
    assert without_query("http://127.0.0.1:8080/a/b.wav?sig=1") == "http://127.0.0.1:8080/a/b.wav"


def test_without_query_leaves_a_plain_url_unchanged() -> None:
    assert without_query("https://h.example/x.mp4") == "https://h.example/x.mp4"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1"])
def test_is_loopback_is_true_for_loopback_hosts(host: str) -> None:
    assert is_loopback(host) is True


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "0.0.0.0", "::", "localhost.evil"])
def test_is_loopback_is_false_for_other_hosts(host: str) -> None:
    assert is_loopback(host) is False


FAKE_API = UrlRules(api_on_this_machine=True)  # the API is on loopback: the fake service
REAL_API = UrlRules()
INSECURE = UrlRules(allow_insecure=True)


@pytest.mark.parametrize("rules", [REAL_API, FAKE_API, INSECURE])
def test_https_recording_url_is_accepted(rules: UrlRules) -> None:
    parsed = check_recording_url(PRESIGNED, rules)
    assert parsed.host == "bucket.s3.amazonaws.com"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/rec/a.mp4?sig=1",
        "http://[::1]:9000/rec/a.mp4?sig=1",
        "http://localhost/rec/a.mp4",
    ],
)
def test_plain_http_to_loopback_is_accepted_while_the_api_is_on_loopback(url: str) -> None:
    check_recording_url(url, FAKE_API)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/rec/a.mp4?sig=1",
        "https://127.0.0.1:9000/rec/a.mp4",
        "http://localhost/rec/a.mp4",
        "https://foo.localhost/rec/a.mp4",
        "http://[::ffff:127.0.0.1]/a.mp4",
        "http://0.0.0.0:8080/a.mp4",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/a.mp4",
    ],
)
def test_a_url_at_this_machine_is_refused_while_the_api_is_elsewhere(url: str) -> None:
    """A compromised API must not make the tool fetch local services (or cloud metadata)."""
    with pytest.raises(UnsafeUrl, match="points at this machine"):
        check_recording_url(url, REAL_API)
    check_recording_url(url, INSECURE)  # the user said so


def test_plain_http_elsewhere_is_rejected_without_leaking_the_query() -> None:
    for rules in (REAL_API, FAKE_API):
        with pytest.raises(UnsafeUrl) as caught:
            check_recording_url("http://s3.example.com/rec/a.mp4?X-Amz-Signature=s3cr3t", rules)
        message = str(caught.value)
        assert "http://s3.example.com/rec/a.mp4" in message
        assert "allow_insecure_urls" in message
        assert "s3cr3t" not in message
        assert caught.value.kind == "unsafe_url"


def test_plain_http_elsewhere_is_accepted_when_insecure_urls_are_allowed() -> None:
    check_recording_url("http://s3.example.com/rec/a.mp4?sig=1", INSECURE)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "ftp://s3.example.com/rec/a.mp4",
        "file:///etc/passwd",
        "https:///no-host",
        "//s3.example.com/rec/a.mp4",
        "javascript:alert(1)",
        # What urlsplit or yarl raise on (ValueError, UnicodeError), or the resolver would:
        "https://a..b/x",
        "https://xn--/x",
        "https://[::1/x",
        "https://h:99999/x",
        "https://h:abc/x",
        "https://exa mple.com/x",
        "https://a\x00b/x",
        "https://-bad.example/x",
        "https://" + "a" * 64 + ".example/x",
        "https://.",
    ],
)
@pytest.mark.parametrize("rules", [REAL_API, INSECURE])
def test_unusable_recording_url_is_refused_never_raised(url: str, rules: UrlRules) -> None:
    with pytest.raises(UnsafeUrl):
        check_recording_url(url, rules)


def test_a_url_with_credentials_is_refused() -> None:
    """aiohttp would send them as Authorization: Basic to the recording host."""
    with pytest.raises(UnsafeUrl, match="credentials"):
        check_recording_url("https://user:pw@s3.example.com/a.mp4", INSECURE)


def test_unusable_url_message_hides_its_query() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_recording_url("ftp://h/a.mp4?token=s3cr3t", INSECURE)
    assert "s3cr3t" not in str(caught.value)


def test_without_query_never_fails_on_a_malformed_url() -> None:
    assert without_query("https://[::1/x?sig=1") == "https://[::1/x"


def test_an_internationalised_host_is_accepted_in_its_ascii_form() -> None:
    assert check_recording_url("https://bücher.example/a.mp4", REAL_API).raw_host == (
        "xn--bcher-kva.example"
    )


def test_rules_for_an_api_on_loopback_allow_local_http() -> None:
    assert UrlRules.for_api("http://127.0.0.1:8080", False).api_on_this_machine
    assert not UrlRules.for_api("https://api.osvi.ai", False).api_on_this_machine


@pytest.mark.parametrize(
    "url",
    [
        "https://2130706433/x.mp4",
        "https://127.1/x.mp4",
        "https://0x7f000001/x.mp4",
        "https://0177.0.0.1/x.mp4",
        "https://017700000001/x.mp4",
        "https://0/x.mp4",
        "https://169.254.43518/latest/meta-data",
    ],
)
def test_numeric_forms_of_local_addresses_are_seen_through(url: str) -> None:
    """inet_aton, and so the system's resolver, reads each of these as 127.0.0.1, 0.0.0.0 or
    169.254.169.254: the rules must too."""
    with pytest.raises(UnsafeUrl, match="points at this machine"):
        check_recording_url(url, REAL_API)


def test_a_numeric_top_level_label_that_is_no_address_is_malformed() -> None:
    with pytest.raises(UnsafeUrl, match="valid host"):
        check_recording_url("https://999.999/x.mp4", REAL_API)


def test_without_query_hides_credentials_too() -> None:
    assert without_query("https://me:s3cr3t@h.example/a.mp4?sig=1") == "https://***@h.example/a.mp4"
    assert without_query("https://a:b/c@h/x") == "https://a:b/c@h/x"  # an @ in the path only
