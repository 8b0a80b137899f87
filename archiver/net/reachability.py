"""Whether a host answers at all, and how long a run waits for one that does not (§6, exit 69).

One `Reachability` per host the run talks to (the API; each recording host). A request that
gets no answer at all (connection refused, a DNS failure, a connect or first-byte timeout,
network unreachable, a proxy that cannot reach it, a body that stalls) is told here, with
when it began and on behalf of which call:

- if some request to the host got an answer since it began, the host is up and the failure
  is the request's own: a transient error of its call, which costs an attempt;
- else the host is down for everyone (an outage): the request waits for the next probe (1 s,
  doubling to 15 s; every waiting request tries again then) and that try costs its call no
  attempt, so a network outage never burns the calls in flight;
- an outage ends the run (`Unavailable`, exit 69) once it has lasted `max_outage`, or
  `FIRST_CONTACT` when the host has not answered once in this run (a mistyped or firewalled
  host: a million calls must not each wait it out), and at once for a name that does not
  exist before the host ever answered (a typo in `--base-url`).

A refused TLS certificate is no outage: waiting will not fix it. It stops the run at once.

Which hosts speak for the run: the API always (every call needs it). A recording host only
once it has answered in this run, or once it failed for SHARED_BY different calls: a presigned
URL that one call alone was given (a broken or hostile one) is that call's failure, never the
run's, while S3 being unreachable, or its certificate refused, concerns every call.
Pure policy: the clock and sleep injected.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from yarl import URL

from archiver.errors import Unavailable

FIRST_CONTACT = 60.0  # seconds a host that never answered in this run is waited for
FIRST_PROBE = 1.0
LAST_PROBE = 15.0  # the longest wait between two tries during an outage
SHARED_BY = 3  # calls a recording host must fail for before its failures are the run's


class Reachability:
    def __init__(
        self,
        what: str,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        *,
        max_outage: float,
        essential: bool,
    ) -> None:
        self.what = what  # "the OSVI API at https://api.osvi.ai", for messages
        self._clock = clock
        self._sleep = sleep
        self._max_outage = max_outage
        self.essential = essential  # the run cannot go on without it (the API)
        self.ever_answered = False
        self._last_answer = float("-inf")
        self._down_since: float | None = None
        self._next_probe = float("-inf")
        self._probe_delay = FIRST_PROBE
        self._failed_for: set[str] = set()  # calls it failed, before it ever answered

    def now(self) -> float:
        """When a request begins: pass it to `no_answer` should it fail."""
        return self._clock()

    def answered(self) -> None:
        """The host answered (any HTTP status): it is up, whatever the answer said."""
        self.ever_answered = True
        self._last_answer = self._clock()
        self._down_since = None
        self._probe_delay = FIRST_PROBE

    def _speaks_for_the_run(self, who: str) -> bool:
        if self.essential or self.ever_answered:
            return True
        self._failed_for.add(who)
        return len(self._failed_for) >= SHARED_BY

    async def no_answer(
        self, began: float, reason: str, *, unresolved: bool = False, who: str = ""
    ) -> bool:
        """A request begun at `began`, for call `who`, got no answer. False: the failure is
        the request's own (the host answers others, or it is one call's host only). True: an
        outage, waited until the next probe: try again, free. Raises Unavailable once the
        outage is too long, or the name does not exist."""
        if self._last_answer > began or not self._speaks_for_the_run(who):
            return False
        if unresolved and not self.ever_answered:
            raise Unavailable(f"{self.what} cannot be reached: {reason} (is the host name right?)")
        now = self._clock()
        if self._down_since is None or began < self._down_since:
            self._down_since = began
        limit = self._max_outage if self.ever_answered else min(FIRST_CONTACT, self._max_outage)
        deadline = self._down_since + limit
        if now >= deadline:
            lasted = now - self._down_since
            raise Unavailable(
                f"{self.what} could not be reached for {lasted:.0f} s: {reason}"
                + ("" if self.ever_answered else " (it never answered in this run)"),
                outage=True,
            )
        if now >= self._next_probe:
            self._next_probe = now + self._probe_delay
            self._probe_delay = min(LAST_PROBE, self._probe_delay * 2)
        await self._sleep(max(0.0, min(self._next_probe, deadline) - now))
        return True

    def certificate_refused(self, reason: str, *, who: str = "") -> None:
        """A TLS certificate (or its host name) was refused: raises Unavailable when this host
        speaks for the run; else it is call `who`'s failure (the caller's to raise)."""
        if self.essential or self.ever_answered or self._speaks_for_the_run(who):
            raise Unavailable(
                f"{self.what}: its TLS certificate was refused ({reason}). If a proxy or "
                "firewall inspects TLS, trust its CA with SSL_CERT_FILE or SSL_CERT_DIR"
            )


class Hosts:
    """One Reachability per recording host (scheme, host and port), made when first met;
    the least recently used is forgotten past MAX_HOSTS (presigned URLs name a few hosts)."""

    MAX_HOSTS = 256

    def __init__(
        self,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        *,
        max_outage: float,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._max_outage = max_outage
        self._known: OrderedDict[tuple[str, str, int | None], Reachability] = OrderedDict()

    def of(self, url: URL) -> Reachability:
        key = (url.scheme, url.host or "", url.port)
        found = self._known.get(key)
        if found is None:
            what = f"the recording host {url.scheme}://{url.raw_host}:{url.port}"
            found = Reachability(
                what, self._clock, self._sleep, max_outage=self._max_outage, essential=False
            )
            self._known[key] = found
            if len(self._known) > self.MAX_HOSTS:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(key)
        return found
