"""AuroraClient: a local copy of one environment, kept fresh over SSE, answered from memory."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from aurora_client._cache import _MISSING, Change, LocalCache, why_unusable
from aurora_client.evaluation import Evaluation, Reason, evaluate
from aurora_client.events import ChangeEvent
from aurora_client.state import FlagState, JsonValue
from aurora_client.targeting import Context, Result, Variant
from aurora_client.targeting import Reason as TargetingReason
from aurora_client.targeting import evaluate as evaluate_targeting
from aurora_client.targeting import is_enabled as targeting_is_enabled

log = logging.getLogger("aurora_client")

DEFAULT_HEARTBEAT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 5.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
# A server's retry hint is obeyed up to this: a bogus one must not park the client for a day.
RETRY_HINT_CAP_SECONDS = 300.0
PERSIST_EVERY_SECONDS = 1.0
# After a failed state-file write the next attempt waits twice as long as the last, up to this.
PERSIST_RETRY_CAP_SECONDS = 30.0
# What valid JSON of the wrong shape raises while an event is parsed and applied.
BAD_EVENT_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


# What get_variant answers for an unknown flag (Unleash's answer for a flag it does not know).
DISABLED_VARIANT = Variant(name="disabled", payload=None, enabled=False, feature_enabled=False)
_ROLLOUT = {True: Reason.ROLLOUT_IN, False: Reason.ROLLOUT_OUT}
_NO_CONTEXT = Context.of(None)


def _user_context(user_id: str | None) -> Context:
    return _NO_CONTEXT if user_id is None else Context.of({"userId": user_id})


class Status(StrEnum):
    NOT_READY = "NOT_READY"  # nothing loaded yet
    READY = "READY"  # live: connected, and heard from the server within two heartbeats
    STALE = "STALE"  # serving what it has (last state, bootstrap), but not confirmed live
    ERROR = "ERROR"  # the server refuses our token, or nothing to serve and it cannot be reached


class AuroraClient:
    """A client for one environment (and optionally one service) of Aurora Config.

    Sync: `with AuroraClient(...) as client:` (a background thread keeps it fresh).
    Async: `async with AuroraClient(...) as client:` (a task in your event loop).
    Reads (`get`, `is_enabled`, ...) never do I/O.
    """

    def __init__(
        self,
        base_url: str,
        environment: str = "production",
        service_name: str | None = None,
        token: str | None = None,
        *,
        bootstrap: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        cache_file: str | os.PathLike[str] | None = None,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.environment = environment
        self.service_name = service_name
        self._headers = {"Accept": "text/event-stream"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._cache = LocalCache(environment, service_name)
        self._cache_file = Path(cache_file) if cache_file else None
        self._backoff_cap = backoff_cap
        self._transport = transport
        self._listeners: list[Callable[[Change], None]] = []
        self._status_listeners: list[Callable[[Status], None]] = []
        self._live = False
        self._live_since_connect = False
        self._resuming = False  # this connection sent Last-Event-ID
        self._connection_failed = False
        self._token_refused = False  # the last answer was 401/403 (retried: it may be fixed)
        self._retry_hint: float | None = None  # seconds; the server's last word, kept
        self._connected_at = 0.0
        self._heartbeat_changed = asyncio.Event()
        self._error: str | None = None
        self._last_contact: float | None = None
        self.heartbeat_seconds = DEFAULT_HEARTBEAT_SECONDS
        self.reconnects = 0
        self.snapshots = 0
        self.persist_failures = 0  # failed state-file writes (each retried)
        self._ready = threading.Event()
        self._dirty = False
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._load_initial(bootstrap)
        self._emitted_status = self.status

    # -- reads: memory only ----------------------------------------------------------------

    def get(self, key: str, default: JsonValue = None) -> JsonValue:
        """The configuration value this service sees (its own, else the global), or default."""
        value = self._cache.values.get(key, _MISSING)
        return default if value is _MISSING else value

    def is_enabled(
        self,
        flag_key: str,
        user_id: str | None = None,
        default: bool = False,
        *,
        context: Context | Mapping[str, Any] | None = None,
    ) -> bool:
        """Whether the flag is on for this user (`user_id`) or this `context` (a prebuilt
        `Context`, the fast way, or a dict in the shape `{"userId": ..., "properties": {...}}`);
        `default` for an unknown flag."""
        if context is None:
            plain = self._cache.plain.get(flag_key)
            if plain is not None:  # a flag as before targeting: today's one hash, unchanged
                return evaluate(plain, user_id).enabled
            context = _user_context(user_id)
        elif user_id is not None:
            raise TypeError("is_enabled() takes a user_id or a context, not both")
        elif not isinstance(context, Context):
            context = Context.of(context)
        targets = self._cache.targets
        flag = targets.flags.get(flag_key)
        if flag is None:
            return default
        return targeting_is_enabled(flag, context, targets.flags, targets.segments)

    def get_variant(
        self,
        flag_key: str,
        context: Context | Mapping[str, Any] | None = None,
        default: Variant | None = None,
    ) -> Variant:
        """The flag's variant for this context. An unknown flag answers `default`, else the
        `disabled` variant (not enabled, feature not enabled), as Unleash does."""
        result = self.details(flag_key, context)
        if result is not None:
            return result.variant
        return DISABLED_VARIANT if default is None else default

    def details(
        self, flag_key: str, context: Context | Mapping[str, Any] | None = None
    ) -> Result | None:
        """The whole evaluation for this context: enabled, variant, reason (with the rule that
        matched) and error code; None for an unknown flag."""
        if not isinstance(context, Context):
            context = Context.of(context)
        targets = self._cache.targets
        flag = targets.flags.get(flag_key)
        if flag is None:
            return None
        return evaluate_targeting(flag, context, targets.flags, targets.segments)

    def evaluation(self, flag_key: str, user_id: str | None = None) -> Evaluation | None:
        """The rollout evaluation (enabled, reason, bucket), or None for an unknown flag. For a
        flag with rules, variants or prerequisites, the targeting result in these terms
        (DISABLED, else ROLLOUT_IN / ROLLOUT_OUT, without a bucket): use `details()` there."""
        flag = self._cache.plain.get(flag_key)
        if flag is not None:
            return evaluate(flag, user_id)
        result = self.details(flag_key, _user_context(user_id))
        if result is None:
            return None
        if result.reason is TargetingReason.DISABLED:
            return Evaluation(False, Reason.DISABLED, None)
        return Evaluation(result.enabled, _ROLLOUT[result.enabled], None)

    def all_configs(self) -> dict[str, JsonValue]:
        return dict(self._cache.values)

    def all_flags(self) -> dict[str, FlagState]:
        return dict(self._cache.flags)

    # -- freshness -------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        if self._token_refused:
            return Status.ERROR  # distinct from a mere outage, even with a copy to serve
        if not self._cache.loaded:
            return Status.ERROR if self._error else Status.NOT_READY
        age = self.last_contact_age
        if self._live and age is not None and age <= 2 * self.heartbeat_seconds:
            return Status.READY
        return Status.STALE

    @property
    def loaded(self) -> bool:
        """True once there is a copy to serve: from the server, a bootstrap or the state file."""
        return self._cache.loaded

    @property
    def cursor(self) -> str | None:
        """The feed position the local copy reflects: `<epoch>:<revision>`."""
        return self._cache.cursor

    @property
    def last_contact_age(self) -> float | None:
        """Seconds since the server was last heard from (an event or a heartbeat)."""
        return None if self._last_contact is None else time.monotonic() - self._last_contact

    @property
    def last_error(self) -> str | None:
        return self._error

    def on_change(self, callback: Callable[[Change], None]) -> Callable[[Change], None]:
        """Call `callback(change)` after each change applied (from the client's own thread or
        task: keep it short). Usable as a decorator."""
        self._listeners.append(callback)
        return callback

    def on_status(self, callback: Callable[[Status], None]) -> None:
        """Call `callback(status)` on every transition of `status` (from the client's own thread
        or task)."""
        self._status_listeners.append(callback)

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until the first live state arrives (True) or the timeout passes (False)."""
        return self._ready.wait(timeout)

    async def ready(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - as the sync one
        """`wait_until_ready` for async code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="aurora-client")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        """Keep the local copy fresh from a background thread (sync use)."""
        if self._thread is not None:
            return
        started = threading.Event()

        def run() -> None:
            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                started.set()
                await self._run()

            asyncio.run(main())

        self._thread = threading.Thread(target=run, name="aurora-client", daemon=True)
        self._thread.start()
        started.wait(5)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background thread: a connect or read in progress is cancelled, then the state
        file is saved one last time. Waits up to `timeout` seconds; if the thread is still busy
        then (a listener or the disk hangs), logs a warning and returns (it is a daemon thread)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("aurora client thread did not stop within %.1f s of close()", timeout)

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - as close()
        """`close` for async use: stops the task and waits for it (up to `timeout` seconds, then
        cancels it, waits again as long, and logs a warning)."""
        if self._stop is not None:
            self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            log.warning("aurora client task did not stop within %.1f s of aclose()", timeout)
            task.cancel()
            await asyncio.wait({task}, timeout=timeout)

    # -- the stream ------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._stop is not None
        stop = self._stop
        self._heartbeat_changed = asyncio.Event()  # of this loop
        # No read timeout: silence is judged by _watch, at the heartbeat the server announced.
        timeout = httpx.Timeout(CONNECT_TIMEOUT_SECONDS, read=None)
        async with httpx.AsyncClient(
            transport=self._transport, headers=self._headers, timeout=timeout
        ) as http:
            persister = asyncio.create_task(self._persist_periodically(stop))
            failures = 0
            while not stop.is_set():
                await self._stream_once(http, stop)
                if stop.is_set():
                    break
                healthy = self._live_since_connect and not self._connection_failed
                failures = 0 if healthy else failures + 1
                self._set_live(False)
                # Full jitter: after a server restart, 1,000 clients spread over the window
                # instead of reconnecting in lockstep.
                delay = random.uniform(0, self._backoff_window(failures))  # noqa: S311 - jitter
                self.reconnects += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
            persister.cancel()
        await self._persist()

    def _backoff_window(self, failures: int) -> float:
        """The window to draw the next delay from: base · 2^failures, capped, where the base is
        the server's last hint (`retry:` or `Retry-After`), kept across attempts. The hint is
        also the window's floor, even above the cap: the server knows best when to come back."""
        hint = self._retry_hint or 0.0
        window = min(self._backoff_cap, max(hint, BACKOFF_BASE_SECONDS) * 2.0**failures)
        return max(window, hint)

    def _learn_retry_hint(self, seconds: float) -> None:
        self._retry_hint = min(max(seconds, 0.0), RETRY_HINT_CAP_SECONDS)

    async def _stream_once(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """One connection, until it ends, goes silent or the client closes."""
        self._live_since_connect = False
        self._connection_failed = False  # a bad event or an unexpected error ended it
        self._connected_at = time.monotonic()
        connection = asyncio.create_task(self._connect(http), name="aurora-stream")
        stopper = asyncio.create_task(stop.wait())
        try:
            await self._watch(connection, stopper)
        finally:
            # Cancelling interrupts whatever the connection awaits: connect, head or body.
            connection.cancel()
            stopper.cancel()
            await asyncio.wait({connection, stopper})

    async def _watch(self, connection: asyncio.Task[None], stopper: asyncio.Task[bool]) -> None:
        """Wait until the connection ends or the client closes; give up on it once the server has
        been silent (no event, no heartbeat, not even a response head) for two heartbeats. The
        interval is re-read on every wake-up, so one a snapshot announces applies at once; a
        read timeout would stay fixed at what was known when connecting."""
        while True:
            since = max(self._connected_at, self._last_contact or 0.0)
            limit = 2 * self.heartbeat_seconds
            silent_for = time.monotonic() - since
            if silent_for >= limit:
                self._error = f"the server was silent for {silent_for:.1f} s"
                log.warning("aurora stream: %s; reconnecting", self._error)
                return
            self._heartbeat_changed.clear()
            changed = asyncio.create_task(self._heartbeat_changed.wait())
            done, _ = await asyncio.wait(
                {connection, stopper, changed},
                timeout=limit - silent_for,
                return_when=asyncio.FIRST_COMPLETED,
            )
            changed.cancel()
            if connection in done or stopper in done:
                return

    async def _connect(self, http: httpx.AsyncClient) -> None:
        headers = {"Last-Event-ID": self._cache.cursor} if self._cache.cursor else {}
        self._resuming = bool(headers)
        params = {"environment": self.environment}
        if self.service_name:
            params["service_name"] = self.service_name
        try:
            async with aconnect_sse(
                http, "GET", f"{self.base_url}/api/v1/stream", params=params, headers=headers
            ) as source:
                if source.response.status_code != 200:
                    await self._refused(source.response)
                    return
                self._token_refused = False
                self._publish_status()
                async for sse in source.aiter_sse():
                    if sse.retry is not None:
                        self._learn_retry_hint(sse.retry / 1000)
                    try:
                        self._handle(sse)
                    except BAD_EVENT_ERRORS as exc:
                        self._bad_event(sse, exc)
                        return
        except httpx.HTTPError as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            log.info("aurora stream interrupted: %s", self._error)
        except Exception as exc:
            # Whatever else goes wrong costs this connection, never the client's loop.
            self._connection_failed = True
            self._error = f"{type(exc).__name__}: {exc}"
            log.exception("aurora stream failed unexpectedly; reconnecting")

    async def _refused(self, response: httpx.Response) -> None:
        await response.aread()
        code = response.status_code
        if code in {429, 503}:
            after = _retry_after(response.headers.get("Retry-After"))
            if after is not None:
                self._learn_retry_hint(after)
        self._token_refused = code in {401, 403}
        why = " (the server refuses the token)" if self._token_refused else ""
        self._error = f"HTTP {code}{why}: {response.text[:200]}"
        log.warning("aurora stream refused: %s", self._error)
        self._publish_status()

    def _bad_event(self, sse: ServerSentEvent, exc: Exception) -> None:
        """An event we cannot use ends the connection; the cursor still points before it, so the
        next one resumes there (with backoff, in case the server keeps sending it)."""
        self._connection_failed = True
        self._error = f"bad {sse.event or 'message'} event (id {sse.id or '-'}): {exc!r}"
        log.warning(
            "aurora client: %s; reconnecting from cursor %s", self._error, self._cache.cursor
        )

    def _handle(self, sse: ServerSentEvent) -> None:
        """Apply one event. Raises one of BAD_EVENT_ERRORS (and changes nothing) for data of the
        wrong shape."""
        self._last_contact = time.monotonic()
        if sse.event == "snapshot":
            data = _json_object(sse.data)
            self._learn_heartbeat(data)
            self._notify(self._cache.load(data))
            self.snapshots += 1
        elif sse.event in {"upsert", "delete"}:
            event = ChangeEvent.from_dict(_json_object(sse.data))
            self._notify(self._cache.apply(event, sse.id))
        elif sse.event == "heartbeat":
            self._learn_heartbeat(_json_object(sse.data or "{}"))
            if not self._live_since_connect and not self._resuming:
                return  # a heartbeat before our first state says nothing about our copy
            # On a resumed stream the server sends one right after the replay (even an empty
            # one): the copy is then confirmed current, with no change needed to prove it.
        else:
            return
        self._live_since_connect = True
        self._error = None
        self._set_live(True)
        self._ready.set()

    def _learn_heartbeat(self, data: Mapping[str, Any]) -> None:
        seconds = data.get("heartbeat_seconds")
        if seconds is None:
            return
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"heartbeat_seconds is {seconds!r}")
        if not 0 < seconds < math.inf:
            raise ValueError(f"heartbeat_seconds is {seconds!r}")
        if seconds != self.heartbeat_seconds:
            self.heartbeat_seconds = float(seconds)
            self._heartbeat_changed.set()  # the watchdog re-arms with it

    def _set_live(self, live: bool) -> None:
        self._live = live
        self._publish_status()

    def _publish_status(self) -> None:
        """Tell listeners if the status differs from the last one told. Compared with what was
        emitted, not with `status` just before a change: `status` also moves by itself (silence
        ages it to STALE, an error makes an empty client ERROR), and those are transitions too."""
        status = self.status
        if status is self._emitted_status:
            return
        log.info("aurora client %s -> %s", self._emitted_status, status)
        self._emitted_status = status
        for listener in self._status_listeners:
            try:
                listener(status)
            except Exception:
                log.exception("aurora status listener failed")

    def _notify(self, changes: list[Change]) -> None:
        if changes:
            self._dirty = True
        for change in changes:
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception("aurora change listener failed for %s", change.key)

    # -- bootstrap and persistence ---------------------------------------------------------

    def _load_initial(self, bootstrap: str | os.PathLike[str] | Mapping[str, Any] | None) -> None:
        """The last good state on disk wins (it carries a cursor to resume from), else the
        bootstrap. Either way the client starts STALE until the server confirms it."""
        for source in (self._cache_file, bootstrap):
            if source is None:
                continue
            name = "the bootstrap dict" if isinstance(source, Mapping) else str(source)
            try:
                data = (
                    source if isinstance(source, Mapping) else json.loads(Path(source).read_text())
                )
                problem = why_unusable(data, self.environment, self.service_name)
                if problem is None:
                    self._cache.load(data)
                    log.info("aurora client starts from %s", name)
                    return
                log.warning("aurora client ignores %s: %s", name, problem)
            except (OSError, *BAD_EVENT_ERRORS) as exc:
                log.warning("aurora client could not load %s: %s", name, exc)

    async def _persist_periodically(self, stop: asyncio.Event) -> None:
        """Save the state file at most once a second while it changes. A failed write (a full
        disk, a read-only directory) costs an attempt, not persistence: it is retried, backing off
        up to PERSIST_RETRY_CAP_SECONDS, and saving goes on once the disk works again."""
        failures = 0
        while not stop.is_set():
            delay = min(PERSIST_EVERY_SECONDS * 2.0**failures, PERSIST_RETRY_CAP_SECONDS)
            await asyncio.sleep(delay)
            failures = 0 if await self._persist() else failures + 1

    async def _persist(self) -> bool:
        """Write the state file if anything changed; False if the write failed (the state stays
        to be written, so the next attempt saves the newest one)."""
        if self._cache_file is None or not self._dirty or not self._cache.loaded:
            return True
        self._dirty = False
        try:
            await asyncio.to_thread(_write_atomically, self._cache_file, self._cache.snapshot())
        except Exception as exc:  # whatever it is must not end persistence for good (issue 9)
            self._dirty = True
            self.persist_failures += 1
            log.warning(
                "aurora client could not save its state to %s: %s; will retry",
                self._cache_file,
                exc,
                exc_info=not isinstance(exc, OSError),  # a bug, not the disk: keep its traceback
            )
            return False
        return True


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    if value.strip().isdecimal():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _json_object(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())  # on disk before it replaces the last good state
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
