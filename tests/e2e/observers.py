"""What a user of the service sees during a fault, recorded with timestamps (issue #9).

Only externally visible behaviour: the API's reads on every instance, `/status`, an SSE client
that follows the stream the way any client would (reconnecting with Last-Event-ID), and the
SDK's status and values. A background thread samples all of them every 0.1 s; `Expectation`s
then say what must hold after which deadline, and `verdict` lists every sample that broke one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from aurora_client import AuroraClient, Status
from httpx_sse import connect_sse

CONFIGS = "/api/v1/configurations"
MISSING = "<missing>"
SAMPLE_EVERY = 0.1


class SseFollower:
    """A plain SSE client of one environment: applies snapshots and changes by version, and on
    any end or error reconnects at once with its last cursor. It is live while connected and
    heard from within two heartbeats; an event it does not know (a `stale` event, say) makes it
    not live until the next snapshot: the server saying "do not trust me"."""

    def __init__(self, base_url: str, environment: str, name: str) -> None:
        self.base_url = base_url
        self.environment = environment
        self.name = name
        self.values: dict[str, tuple[int, Any]] = {}  # global configs: key -> (version, value)
        self.cursor: str | None = None
        self.connected = False
        self.heard: float | None = None  # monotonic time of the last event of any kind
        self.ends = 0
        self.unknown_events: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sse-{name}", daemon=True)

    def start(self) -> SseFollower:
        self._thread.start()
        return self

    def state(self, key: str) -> tuple[Any, bool]:
        """(value, live): live when connected and heard from within two heartbeats (1 s each)."""
        with self._lock:
            held = self.values.get(key)
            live = self.connected and self.heard is not None and time.monotonic() - self.heard < 2
        return (MISSING if held is None else held[1]), live

    def _run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(3.0)) as client:
            while not self._stop.is_set():
                try:
                    self._follow(client)
                except httpx.HTTPError:
                    pass  # the connection ended: reconnect, as any client would
                except Exception as exc:  # a bug here must show, not silently freeze the copy
                    self.errors.append(repr(exc))
                with self._lock:
                    self.connected = False
                    self.ends += 1
                self._stop.wait(0.2)

    def _follow(self, client: httpx.Client) -> None:
        headers = {"Last-Event-ID": self.cursor} if self.cursor else {}
        params = {"environment": self.environment}
        url = f"{self.base_url}/api/v1/stream"
        with connect_sse(client, "GET", url, params=params, headers=headers) as source:
            if source.response.status_code != 200:
                return
            for sse in source.iter_sse():
                if self._stop.is_set():
                    return
                self._apply(sse.event, sse.id, sse.data)

    def _apply(self, event: str, cursor: str | None, data: str) -> None:
        with self._lock:
            self.heard = time.monotonic()
            if event == "snapshot":
                body = json.loads(data)
                self.values = {
                    item["config_key"]: (int(item["version"]), item["config_value"])
                    for item in body["configs"]
                    if item.get("service_name") is None
                }
                self.cursor = cursor
                self.connected = True
            elif event in {"upsert", "delete"}:
                change = json.loads(data)
                self.cursor = cursor
                if change["kind"] != "config" or change.get("service_name") is not None:
                    return
                held = self.values.get(change["key"])
                if held is not None and held[0] >= int(change["version"]):
                    return
                if event == "delete":
                    self.values.pop(change["key"], None)
                else:
                    self.values[change["key"]] = (
                        int(change["version"]),
                        change["state"]["config_value"],
                    )
            elif event == "heartbeat":
                self.connected = self.connected or self.cursor is not None
            elif event:
                self.unknown_events.append(event)
                self.connected = False  # e.g. `stale`: the server says it cannot be trusted

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # monotonic
    observer: str  # "read@A", "status@A", "sdk@A", "sse@A"
    environment: str
    key: str
    value: Any
    ready: bool | None = None  # SDK: READY; SSE: live; /status: claims trusted with lag 0
    note: str = ""


@dataclass(frozen=True, slots=True)
class Expectation:
    """From `reads_by` on, every instance reads `value`. From `clients_by` on, every SDK and SSE
    client holds it, and each SDK client ends READY ("converged"); or, when `honest`, no SDK
    client is READY and no SSE client live while holding anything else (STALE is allowed)."""

    environment: str
    key: str
    value: Any
    reads_by: float
    clients_by: float
    honest: bool = False
    label: str = ""


@dataclass
class Deployment:
    """The instances of one scenario, by name, with an SDK client and an SSE client on each."""

    urls: dict[str, str]
    environments: Sequence[str] = ("production",)
    keys: Sequence[str] = ("timeout",)
    sdks: dict[tuple[str, str], AuroraClient] = field(default_factory=dict)
    sse: dict[tuple[str, str], SseFollower] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_clients(self, within: float = 15.0) -> None:
        for name, url in self.urls.items():
            for env in self.environments:
                # A short backoff cap: the bounds under test are the server's, not how long a
                # client that failed a few times in a row chooses to wait before trying again.
                sdk = AuroraClient(url, env, backoff_cap=2.0)
                sdk.start()
                self.sdks[name, env] = sdk
                self.sse[name, env] = SseFollower(url, env, f"{name}-{env}").start()
        deadline = time.monotonic() + within
        for (name, env), sdk in self.sdks.items():
            assert sdk.wait_until_ready(max(0.1, deadline - time.monotonic())), (
                f"SDK client of {env} on {name} not ready: {sdk.status} {sdk.last_error}"
            )

    def start_sampling(self) -> None:
        self._thread = threading.Thread(target=self._sample_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for sdk in self.sdks.values():
            sdk.close()
        for follower in self.sse.values():
            follower.close()

    # -- sampling --------------------------------------------------------------------------

    def _sample_forever(self) -> None:
        with httpx.Client(timeout=2.0) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                self.samples.extend(self.sample_once(http))
                self._stop.wait(max(0.0, SAMPLE_EVERY - (time.monotonic() - started)))

    def sample_once(self, http: httpx.Client) -> list[Sample]:
        found: list[Sample] = []
        for name, url in self.urls.items():
            for env in self.environments:
                for key in self.keys:
                    found.append(read_sample(http, url, name, env, key))
            found.extend(status_samples(http, url, name, self.environments))
        for (name, env), sdk in self.sdks.items():
            for key in self.keys:
                before = sdk.get(key, MISSING)
                status = sdk.status
                after = sdk.get(key, MISSING)
                # READY with a value is only charged when the value read on both sides of the
                # status is the same (a change landing in between is not a violation).
                value = after if before == after else f"{before!r}->{after!r}"
                found.append(
                    Sample(time.monotonic(), f"sdk@{name}", env, key, value, status is Status.READY)
                )
        for (name, env), follower in self.sse.items():
            for key in self.keys:
                value, live = follower.state(key)
                found.append(Sample(time.monotonic(), f"sse@{name}", env, key, value, live))
        return found

    # -- waiting and judging ---------------------------------------------------------------

    def holds(self, expectation: Expectation, sample: Sample, *, live: bool = True) -> bool:
        """Whether one sample meets the expectation; `live`: a converged SDK client must also be
        READY (not asked of each sample past a deadline: one late heartbeat on a loaded machine
        is not a broken promise, so `verdict` asks it of the last sample only)."""
        if (sample.environment, sample.key) != (expectation.environment, expectation.key):
            return True
        right = bool(sample.value == expectation.value)
        if sample.observer.startswith("read@"):
            return right
        if sample.observer.startswith("sdk@") or sample.observer.startswith("sse@"):
            if expectation.honest:
                return right or not sample.ready
            return right and (sample.ready or not live or sample.observer.startswith("sse@"))
        return True

    def settled(self, expectations: Iterable[Expectation], for_seconds: float) -> bool:
        """Every expectation held by every observer in every sample of the last `for_seconds`
        (and there are such samples)."""
        cutoff = time.monotonic() - for_seconds
        recent = [s for s in list(self.samples) if s.at >= cutoff]
        if not recent or min(s.at for s in recent) > cutoff + 2 * SAMPLE_EVERY + 0.5:
            return False
        return all(self.holds(e, s) for e in expectations for s in recent)

    def observe(
        self,
        expectations: Sequence[Expectation],
        *,
        at_least_until: float,
        settle: float = 3.0,
    ) -> None:
        """Keep sampling until every expectation has held for `settle` seconds (and at least
        until `at_least_until`), or until the last deadline has passed by a margin."""
        last = max(e.clients_by for e in expectations) + 1.0
        while time.monotonic() < last:
            if time.monotonic() >= at_least_until and self.settled(expectations, settle):
                return
            time.sleep(SAMPLE_EVERY)

    def verdict(
        self, expectations: Sequence[Expectation], origin: float, until: float | None = None
    ) -> list[str]:
        """Every broken expectation, one line per observer (how many samples, from when to when,
        and what it held), times relative to `origin` (when the fault ended). Only the samples
        from `origin` to `until` count: a scenario may go on to another fault."""
        end = time.monotonic() if until is None else until
        samples = [s for s in list(self.samples) if origin <= s.at <= end]
        lines = [
            f"sse@{name} {env}: {error}"
            for (name, env), f in self.sse.items()
            for error in f.errors
        ]
        for e in expectations:
            late: dict[str, list[Sample]] = {}
            last: dict[str, Sample] = {}
            for s in samples:
                deadline = e.reads_by if s.observer.startswith("read@") else e.clients_by
                if (s.environment, s.key) == (e.environment, e.key):
                    last[s.observer] = s
                if s.at >= deadline and not self.holds(e, s, live=False):
                    late.setdefault(s.observer, []).append(s)
            label = f" [{e.label}]" if e.label else ""
            for observer, final in last.items():
                ended_badly = observer not in late and not self.holds(e, final)
                if observer.startswith("sdk@") and ended_badly:
                    lines.append(
                        f"{observer} {e.environment}/{e.key}{label}: ended {_describe(final)} "
                        f"at +{final.at - origin:.1f}s (acknowledged {e.value!r})"
                    )
            for observer, bad in late.items():
                lines.append(
                    f"{observer} {e.environment}/{e.key}{label} (acknowledged {e.value!r}): "
                    f"{_describe(bad[0])} in {len(bad)} samples past its deadline "
                    f"(+{deadline_of(e, observer) - origin:.1f}s), from +{bad[0].at - origin:.1f}s "
                    f"to +{bad[-1].at - origin:.1f}s; last {_describe(bad[-1])}"
                )
            lines.extend(self._status_claims(e, samples, origin))
        return lines

    def settled_at(self, e: Expectation, origin: float) -> dict[str, float | None]:
        """Per observer: from when on (seconds after `origin`) every sample met `e`; None if its
        last sample did not. For the log: how long a repair really took."""
        samples = [s for s in list(self.samples) if s.at >= origin]
        since: dict[str, float | None] = {}
        for s in samples:
            if (s.environment, s.key) != (e.environment, e.key) or s.observer.startswith("status"):
                continue
            if not self.holds(e, s):
                since[s.observer] = None
            elif since.get(s.observer) is None:
                since[s.observer] = round(s.at - origin, 2)
        return since

    def _status_claims(self, e: Expectation, samples: list[Sample], origin: float) -> list[str]:
        """/status saying trusted with lag 0 while the same instance's reads were stale."""
        lines = []
        for name in self.urls:
            stale_reads = [
                r.at
                for r in samples
                if r.observer == f"read@{name}"
                and (r.environment, r.key) == (e.environment, e.key)
                and r.at >= e.reads_by
                and r.value != e.value
            ]
            claims = [
                s
                for s in samples
                if s.observer == f"status@{name}"
                and s.environment == e.environment
                and s.ready
                and any(abs(s.at - at) < SAMPLE_EVERY for at in stale_reads)
            ]
            if claims:
                lines.append(
                    f"status@{name} {e.environment}: {claims[0].note} (trusted, lag 0) while its "
                    f"reads of {e.key} were stale, {len(claims)} samples from "
                    f"+{claims[0].at - origin:.1f}s to +{claims[-1].at - origin:.1f}s"
                )
        return lines


def deadline_of(e: Expectation, observer: str) -> float:
    return e.reads_by if observer.startswith("read@") else e.clients_by


def _describe(sample: Sample) -> str:
    if sample.ready is None:
        return repr(sample.value)
    if sample.observer.startswith("sdk@"):
        return f"{sample.value!r} {'READY' if sample.ready else 'not READY'}"
    return f"{sample.value!r} {'live' if sample.ready else 'not live'}"


def read_sample(http: httpx.Client, url: str, name: str, env: str, key: str) -> Sample:
    try:
        response = http.get(f"{url}{CONFIGS}/value/{key}", params={"environment": env})
    except httpx.HTTPError as exc:
        return Sample(time.monotonic(), f"read@{name}", env, key, f"<{type(exc).__name__}>")
    if response.status_code != 200:
        return Sample(time.monotonic(), f"read@{name}", env, key, f"<HTTP {response.status_code}>")
    return Sample(time.monotonic(), f"read@{name}", env, key, response.json()["value"])


def status_samples(
    http: httpx.Client, url: str, name: str, environments: Sequence[str]
) -> list[Sample]:
    """`ready` is True when /status calls the environment's copy trusted and current."""
    try:
        body = http.get(f"{url}/status").json()
    except (httpx.HTTPError, ValueError):
        return []
    replica = body.get("read_model", {}).get("replica", {})
    found = []
    for env in environments:
        copy = replica.get(env, {})
        claims = copy.get("trusted") is True and copy.get("lag") == 0
        note = json.dumps({k: copy.get(k) for k in ("trusted", "lag", "revision")})
        found.append(Sample(time.monotonic(), f"status@{name}", env, "", None, claims, note))
    return found
