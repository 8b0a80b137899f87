"""Whether a host answers at all, and how long a run waits for one that does not (§6, exit 69).

One `Reachability` per host the run talks to (the API; each recording host). A request that
gets no answer at all (connection refused, a DNS failure, a connect or first-byte timeout,
network unreachable, a proxy that is down) is told here, with when it began:

- if some request to the host got an answer since it began, the host is up and the failure
  is the request's own: a transient error of its call, which costs an attempt;
- else the host is down for everyone (an outage): the request waits for the next probe (1 s,
  doubling to 15 s; every waiting request tries again then) and that try costs its call no
  attempt, so a network outage never burns the calls in flight;
- an outage ends the run (`Unavailable`, exit 69) once it has lasted `max_outage`, or
  `FIRST_CONTACT` when the host has not answered once in this run (a mistyped or firewalled
  host: a million calls must not each wait it out), and at once for a name that does not
  resolve before the host ever answered (a typo in `--base-url`).

A refused TLS certificate is no outage: it will not clear by waiting. For an essential host
(the API) or one that never answered, it stops the run at once; from a recording host that
did answer before, it is that one call's failure. Pure policy: the clock and sleep injected.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from yarl import URL

from archiver.errors import Unavailable

FIRST_CONTACT = 60.0  # seconds a host that never answered in this run is waited for
FIRST_PROBE = 1.0
LAST_PROBE = 15.0  # the longest wait between two tries during an outage


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

    def now(self) -> float:
        """When a request begins: pass it to `no_answer` should it fail."""
        return self._clock()

    def answered(self) -> None:
        """The host answered (any HTTP status): it is up, whatever the answer said."""
        self.ever_answered = True
        self._last_answer = self._clock()
        self._down_since = None
        self._probe_delay = FIRST_PROBE

    async def no_answer(self, began: float, reason: str, *, unresolved: bool = False) -> bool:
        """A request begun at `began` got no answer. False: the host answers others, the failure
        is the request's own. True: an outage, waited until the next probe, try again free.
        Raises Unavailable once the outage is too long (or the name never resolved)."""
        if self._last_answer > began:
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
                + ("" if self.ever_answered else " (it never answered in this run)")
            )
        if now >= self._next_probe:
            self._next_probe = now + self._probe_delay
            self._probe_delay = min(LAST_PROBE, self._probe_delay * 2)
        await self._sleep(max(0.0, min(self._next_probe, deadline) - now))
        return True

    def certificate_refused(self, reason: str) -> None:
        """A TLS certificate (or host name) check failed: raises Unavailable unless this is a
        recording host that answered before (then it is the one call's failure)."""
        if self.essential or not self.ever_answered:
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
            what = f"the recording host {url.scheme}://{url.raw_authority}"
            found = Reachability(
                what, self._clock, self._sleep, max_outage=self._max_outage, essential=False
            )
            self._known[key] = found
            if len(self._known) > self.MAX_HOSTS:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(key)
        return found
