"""When a host that does not answer ends the run (exit 69), with the clock injected."""

from __future__ import annotations

import pytest
from yarl import URL

from archiver.errors import Unavailable
from archiver.net.reachability import FIRST_CONTACT, LAST_PROBE, SHARED_BY, Hosts, Reachability
from tests.clocks import SteppedClock


async def until_it_stops(api: Reachability, reason: str) -> Unavailable:
    """Requests failing one after the other, each trying again when told, until the run
    stops: what Unavailable said."""
    while True:
        try:
            await api.no_answer(api.now(), reason)
        except Unavailable as stopped:
            return stopped


def reach(
    clock: SteppedClock, *, max_outage: float = 300.0, essential: bool = True
) -> Reachability:
    return Reachability(
        "the OSVI API at https://api.test", clock, clock.sleep, max_outage=max_outage,
        essential=essential,
    )  # fmt: skip


async def test_a_failure_while_the_host_answers_others_is_the_requests_own() -> None:
    clock = SteppedClock()
    api = reach(clock)
    began = api.now()
    clock.now += 1
    api.answered()  # another request got an answer after this one began
    assert await api.no_answer(began, "reset") is False
    assert clock.sleeps == []


async def test_an_outage_waits_for_the_next_probe_doubling_to_fifteen_seconds() -> None:
    clock = SteppedClock()
    api = reach(clock)
    api.answered()
    clock.now += 1
    waits = []
    for _ in range(7):
        assert await api.no_answer(api.now(), "refused") is True
        waits.append(clock.sleeps[-1])
    assert waits == [1.0, 2.0, 4.0, 8.0, LAST_PROBE, LAST_PROBE, LAST_PROBE]


async def test_every_waiting_request_tries_again_at_the_same_probe() -> None:
    clock = SteppedClock()
    api = reach(clock)
    api.answered()
    clock.now += 1
    began = api.now()
    assert await api.no_answer(began, "refused")  # schedules the probe at +1 s
    clock.now -= 1  # a second request failed at the same moment: it waits for the same probe
    assert await api.no_answer(began, "refused")
    assert clock.sleeps == [1.0, 1.0]


async def test_an_outage_past_max_outage_ends_the_run_naming_host_and_reason() -> None:
    clock = SteppedClock()
    api = reach(clock, max_outage=30)
    api.answered()
    clock.now += 1
    began = api.now()
    stopped = await until_it_stops(api, "Cannot connect to host api.test:443")
    assert stopped.exit_code == 69
    message = str(stopped)
    assert "https://api.test" in message
    assert "Cannot connect to host" in message
    assert clock.now - began == pytest.approx(30, abs=0.01)  # the deadline, not past it


async def test_a_host_that_never_answered_is_waited_for_a_minute_at_most() -> None:
    clock = SteppedClock()
    api = reach(clock, max_outage=3600)
    began = api.now()
    assert "never answered" in str(await until_it_stops(api, "refused"))
    assert clock.now - began == pytest.approx(FIRST_CONTACT, abs=0.01)


async def test_a_request_that_waited_a_whole_timeout_counts_from_its_start() -> None:
    """A port that accepts and never answers: the first failure comes after read_timeout
    (60 s), which is already the whole first-contact allowance."""
    clock = SteppedClock()
    api = reach(clock)
    began = api.now()
    clock.now += FIRST_CONTACT
    with pytest.raises(Unavailable):
        await api.no_answer(began, "no data within read_timeout")


async def test_a_name_that_does_not_resolve_on_first_contact_stops_at_once() -> None:
    clock = SteppedClock()
    api = reach(clock)
    with pytest.raises(Unavailable, match="host name"):
        await api.no_answer(api.now(), "Name or service not known", unresolved=True)
    assert clock.sleeps == []


async def test_a_resolver_failure_after_answers_is_ridden_out_like_any_outage() -> None:
    clock = SteppedClock()
    api = reach(clock)
    api.answered()
    clock.now += 1
    assert await api.no_answer(api.now(), "Temporary failure in name resolution", unresolved=True)


async def test_an_answer_ends_the_outage_and_resets_the_probe_interval() -> None:
    clock = SteppedClock()
    api = reach(clock, max_outage=20)
    api.answered()
    clock.now += 1
    for _ in range(4):
        await api.no_answer(api.now(), "refused")  # 1 + 2 + 4 + 8 s
    api.answered()
    clock.now += 1
    await api.no_answer(api.now(), "refused")
    assert clock.sleeps[-1] == 1.0  # a new outage, with its own deadline
    for _ in range(3):
        await api.no_answer(api.now(), "refused")


def test_a_refused_certificate_of_the_api_ends_the_run_at_once() -> None:
    api = reach(SteppedClock())
    api.answered()
    with pytest.raises(Unavailable, match=r"certificate verify failed.*SSL_CERT_FILE"):
        api.certificate_refused("certificate verify failed: self-signed certificate")


def test_a_recording_host_of_one_call_only_never_stops_the_run() -> None:
    """A presigned URL one call alone was given (broken or hostile): that call's failure."""
    host = reach(SteppedClock(), essential=False)
    host.certificate_refused("hostname mismatch", who="call-a")
    host.certificate_refused("hostname mismatch", who="call-a")  # the same call, retried
    host.certificate_refused("hostname mismatch", who="call-b")


def test_a_recording_host_that_fails_several_calls_speaks_for_the_run() -> None:
    host = reach(SteppedClock(), essential=False)
    for who in ("a", "b"):
        host.certificate_refused("self-signed", who=who)
    with pytest.raises(Unavailable, match="certificate"):
        host.certificate_refused("self-signed", who=f"c{SHARED_BY}")


async def test_a_never_answered_recording_host_is_each_calls_until_it_is_shared() -> None:
    clock = SteppedClock()
    host = reach(clock, essential=False)
    for who in ("a", "b"):
        assert await host.no_answer(host.now(), "refused", who=who) is False
    assert await host.no_answer(host.now(), "refused", who="c") is True  # shared: an outage
    with pytest.raises(Unavailable, match="host name"):
        await host.no_answer(host.now(), "no such name", unresolved=True, who="d")


async def test_a_recording_host_that_answered_rides_out_an_outage_for_any_call() -> None:
    clock = SteppedClock()
    host = reach(clock, essential=False)
    host.answered()
    clock.now += 1
    assert await host.no_answer(host.now(), "refused", who="only-one") is True


def test_hosts_keeps_one_reachability_per_origin_and_forgets_the_oldest() -> None:
    clock = SteppedClock()
    hosts = Hosts(clock, clock.sleep, max_outage=60)
    a = hosts.of(URL("https://a.example/x?sig=1"))
    assert hosts.of(URL("https://a.example/y")) is a
    assert hosts.of(URL("https://a.example:444/y")) is not a
    assert "https://a.example" in a.what
    assert "sig" not in a.what
    for n in range(Hosts.MAX_HOSTS + 1):
        hosts.of(URL(f"https://h{n}.example/"))
    assert hosts.of(URL("https://a.example/x")) is not a
