"""Sessions and proxies: no netrc, proxies from the environment, never for loopback."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from archiver.errors import UsageError
from archiver.net.http import Proxies, client_session, no_answer_reason


def proxies(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Proxies:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Proxies.from_environment()


async def test_sessions_never_trust_the_environment() -> None:
    """trust_env would read ~/.netrc and send its password to any host."""
    session = client_session(1, 1, 1)
    try:
        assert session.trust_env is False
    finally:
        await session.close()


def test_no_proxy_variables_means_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    assert proxies(monkeypatch).for_url(URL("https://s3.example.com/a")) == ({}, {})


def test_each_scheme_takes_its_own_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = proxies(monkeypatch, HTTPS_PROXY="http://tls-proxy:3128", HTTP_PROXY="plain:8080")
    secure, _ = chosen.for_url(URL("https://s3.example.com/a"))
    plain, _ = chosen.for_url(URL("http://api.example/x"))
    assert secure["proxy"] == URL("http://tls-proxy:3128")
    assert plain["proxy"] == URL("http://plain:8080")  # a bare host:port, as curl reads it


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "fake.localhost"])
def test_loopback_is_never_proxied(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    chosen = proxies(monkeypatch, HTTP_PROXY="http://proxy:3128", HTTPS_PROXY="http://p:1")
    assert chosen.for_url(URL(f"http://{host}:8080/x")) == ({}, {})
    assert chosen.for_url(URL(f"https://{host}:8443/x")) == ({}, {})


def test_no_proxy_names_and_suffixes_go_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = proxies(
        monkeypatch, HTTPS_PROXY="http://proxy:3128", NO_PROXY="internal.example,.corp"
    )
    assert chosen.for_url(URL("https://internal.example/a")) == ({}, {})
    assert chosen.for_url(URL("https://s3.eu.corp/a")) == ({}, {})
    assert chosen.for_url(URL("https://s3.amazonaws.com/a"))[0]


def test_proxy_credentials_go_to_the_proxy_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = proxies(
        monkeypatch,
        HTTPS_PROXY="http://me:pa%40ss@proxy:3128",
        HTTP_PROXY="http://me:pa%40ss@proxy:3128",
    )
    secure, secure_headers = chosen.for_url(URL("https://s3.example.com/a"))
    assert secure["proxy"] == URL("http://proxy:3128")  # no credentials left in the URL
    expected = aiohttp.encode_basic_auth("me", "pa@ss")
    assert secure["proxy_headers"] == {"Proxy-Authorization": expected}  # in the CONNECT
    assert secure_headers == {}
    plain, plain_headers = chosen.for_url(URL("http://api.example/x"))
    assert plain == {"proxy": URL("http://proxy:3128")}
    assert plain_headers == {"Proxy-Authorization": expected}  # the whole request goes there


@pytest.mark.parametrize("value", ["https://proxy:3128", "socks5://proxy:1080", "http://"])
def test_a_proxy_we_cannot_use_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(UsageError, match="HTTPS_PROXY"):
        proxies(monkeypatch, HTTPS_PROXY=value)


def test_an_https_proxy_error_hides_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as caught:
        proxies(monkeypatch, HTTPS_PROXY="https://me:s3cr3t@proxy:3128")
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (
            aiohttp.ConnectionTimeoutError(),
            "no connection in time (connect_timeout, or api_timeout (60 s))",
        ),
        (aiohttp.SocketTimeoutError(), "no data within read_timeout"),
        (TimeoutError(), "no answer within api_timeout (60 s)"),
        (aiohttp.ServerDisconnectedError(), "ServerDisconnectedError: Server disconnected"),
    ],
)
def test_the_reason_of_a_failure_is_said_in_words(exc: BaseException, said: str) -> None:
    assert no_answer_reason(exc, "api_timeout (60 s)") == said


def test_a_malformed_proxy_url_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unencoded `/` in a generated password makes the URL unparsable."""
    with pytest.raises(UsageError) as caught:
        proxies(monkeypatch, HTTPS_PROXY="https://user:pa/ss#x@proxy:3128")
    assert "pa/ss" not in str(caught.value)
    assert "***@proxy:3128" in str(caught.value)


def test_a_name_that_does_not_exist_is_told_from_a_resolver_that_is_down() -> None:
    import socket

    from archiver.net.http import unresolved

    key = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)
    missing = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    down = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert unresolved(aiohttp.ClientConnectorDNSError(key, missing))
    assert not unresolved(aiohttp.ClientConnectorDNSError(key, down))
    assert not unresolved(aiohttp.ClientConnectorError(key, OSError(111, "refused")))


class MapResolver:
    """Names to addresses, as a resolver would give them; no look-up."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, object]]:
        return [{"hostname": host, "host": self.names[host], "port": port, "family": 2,
                 "proto": 0, "flags": 0}]  # fmt: skip

    async def close(self) -> None:
        pass


async def test_a_name_leading_to_this_machine_is_refused_while_the_api_is_elsewhere() -> None:
    from archiver.net.http import LocalGuard, LocalTarget

    names = {"api.osvi.ai": "203.0.113.5", "evil.test": "127.0.0.1", "meta.test": "169.254.169.254",
             "s3.test": "198.51.100.1"}  # fmt: skip
    guard = LocalGuard(MapResolver(names), "api.osvi.ai", allow=False)  # type: ignore[arg-type]
    for name in ("evil.test", "meta.test"):
        with pytest.raises(LocalTarget, match=name):
            await guard.resolve(name, 443)
    assert (await guard.resolve("s3.test", 443))[0]["host"] == "198.51.100.1"
    allowed = LocalGuard(MapResolver(names), "api.osvi.ai", allow=True)  # type: ignore[arg-type]
    assert (await allowed.resolve("evil.test", 443))[0]["host"] == "127.0.0.1"


async def test_local_names_are_fine_when_the_api_itself_is_on_this_machine() -> None:
    from archiver.net.http import LocalGuard

    names = {"api.local.test": "127.0.0.1", "rec.local.test": "127.0.0.1"}
    guard = LocalGuard(MapResolver(names), "api.local.test", allow=False)  # type: ignore[arg-type]
    assert (await guard.resolve("rec.local.test", 443))[0]["host"] == "127.0.0.1"
