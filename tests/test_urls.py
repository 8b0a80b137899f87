from __future__ import annotations

import pytest

from archiver.errors import ApiRejected
from archiver.urls import check_recording_url, is_loopback, without_query

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


@pytest.mark.parametrize("allow_insecure", [False, True])
def test_https_recording_url_is_accepted(allow_insecure: bool) -> None:
    check_recording_url(PRESIGNED, allow_insecure=allow_insecure)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/rec/a.mp4?sig=1",
        "http://[::1]:9000/rec/a.mp4?sig=1",
        "http://localhost/rec/a.mp4",
    ],
)
def test_plain_http_to_loopback_is_accepted(url: str) -> None:
    check_recording_url(url, allow_insecure=False)


def test_plain_http_elsewhere_is_rejected_without_leaking_the_query() -> None:
    with pytest.raises(ApiRejected) as caught:
        check_recording_url("http://s3.example.com/rec/a.mp4?X-Amz-Signature=s3cr3t", False)
    message = str(caught.value)
    assert "http://s3.example.com/rec/a.mp4" in message
    assert "allow_insecure_urls" in message
    assert "s3cr3t" not in message


def test_plain_http_elsewhere_is_accepted_when_insecure_urls_are_allowed() -> None:
    check_recording_url("http://s3.example.com/rec/a.mp4?sig=1", allow_insecure=True)


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
    ],
)
@pytest.mark.parametrize("allow_insecure", [False, True])
def test_unusable_recording_url_is_rejected(url: str, allow_insecure: bool) -> None:
    with pytest.raises(ApiRejected):
        check_recording_url(url, allow_insecure=allow_insecure)


def test_unusable_url_message_hides_its_query() -> None:
    with pytest.raises(ApiRejected) as caught:
        check_recording_url("ftp://h/a.mp4?token=s3cr3t", allow_insecure=True)
    assert "s3cr3t" not in str(caught.value)
