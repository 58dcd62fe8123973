"""The Operator: a long-lived worker bound to one skill, living on the lens loop.

Runs are queued FIFO and served one at a time by the operator's task; each caller gets its own
result. A run that ends by timeout or `stop()` returns what it found (stop reason ``timeout`` or
``stopped``). A caller that gives up (Ctrl-C in a blocking `run()`, a cancelled `arun()`)
interrupts its own run: a running one is cancelled and keeps what it found (stop reason
``interrupted``, reachable through `wait()`, `last_result` and `lensbook.last()`), a queued one
never starts, and the next run starts at once. A run whose model fails raises `LLMError` with
its notifications. If the serving task itself crashes, the supervisor fails that run with
`OperatorCrashed`, publishes ``operator_crashed`` and restarts the task, which goes on with the
queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lensbook import _loop, events, records, sampling
from lensbook._errors import (
    LensbookError,
    OperatorCrashed,
    OperatorStopped,
    RunFailed,
    contained,
    containing,
)
from lensbook.clients.base import LLMClient, Message, ModelRequest
from lensbook.clients.chain import ClientChain
from lensbook.clients.resolve import resolve_client
from lensbook.limits import (
    COMPACTION_KEEP_LAST,
    COMPACTION_MAX_TOKENS,
    MAX_ITERATIONS,
    MAX_WAIT_SECONDS,
    MODEL_CALL_TIMEOUT,
    RUN_TIMEOUT,
)
from lensbook.operator import prompts
from lensbook.operator.investigation import Investigation, RunSettings, publish_completed
from lensbook.skills import resolve_skill
from lensbook.skills.base import SkillLike, render_output
from lensbook.types import (
    CompletionResult,
    HealthState,
    MessageResponse,
    Notification,
    NotificationList,
    Status,
    new_id,
)

__all__ = ["Operator"]

_log = logging.getLogger("lensbook.operator")

_pending: set[asyncio.Future[Any]] = set()

NotificationCallback = Callable[[Notification], Any]
CompleteCallback = Callable[[CompletionResult], Any]

_RUN_OPTIONS = {
    "client",
    "client_registry",
    "max_iterations",
    "timeout",
    "compaction_max_tokens",
    "compaction_keep_last",
    "max_wait_seconds",
    "model_timeout",
}


@dataclass
class _Request:
    context: dict[str, Any]
    options: dict[str, Any]
    future: asyncio.Future[CompletionResult]
    on_notification: NotificationCallback | None = None
    on_complete: CompleteCallback | None = None
    run_id: str = field(default_factory=new_id)
    #: the caller gave up on this run (Ctrl-C, a cancelled await)
    interrupted: bool = False


def _merge_context(context: Mapping[str, Any] | None, options: dict[str, Any]) -> dict[str, Any]:
    merged = dict(context or {})
    if "context" in options:
        merged.update(options.pop("context") or {})
    if "reason" in options:
        merged["reason"] = options.pop("reason")
    unknown = set(options) - _RUN_OPTIONS
    if unknown:
        raise TypeError(
            f"unknown run option(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_RUN_OPTIONS | {'context', 'reason'}))}"
        )
    _check_seconds(options, "timeout", none_ok=True)
    _check_seconds(options, "model_timeout", none_ok=False)
    return merged


def _check_seconds(options: Mapping[str, Any], name: str, *, none_ok: bool) -> None:
    """A time limit is a positive number of seconds (or None, for no limit, where allowed)."""
    if name not in options or (none_ok and options[name] is None):
        return
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        allowed = "a positive number of seconds" + (" or None" if none_ok else "")
        raise ValueError(f"{name} must be {allowed}, not {value!r}")


class Operator:
    """A worker bound to one skill. Create with `Operator.start(skill=...)`."""

    def __init__(
        self,
        skill: Any,
        *,
        name: str | None = None,
        client: LLMClient | ClientChain | str | None = None,
        client_registry: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        max_iterations: int = MAX_ITERATIONS,
        compaction_max_tokens: int = COMPACTION_MAX_TOKENS,
        compaction_keep_last: int = COMPACTION_KEEP_LAST,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
        timeout: float | None = RUN_TIMEOUT,
        model_timeout: float = MODEL_CALL_TIMEOUT,
        on_notification: NotificationCallback | None = None,
        on_complete: CompleteCallback | None = None,
    ) -> None:
        self.skill: SkillLike = resolve_skill(skill)
        self.name = name or self.skill.id
        self.client = client
        self.client_registry = client_registry
        self.context = dict(context or {})
        self.defaults: dict[str, Any] = {
            "max_iterations": max_iterations,
            "compaction_max_tokens": compaction_max_tokens,
            "compaction_keep_last": compaction_keep_last,
            "max_wait_seconds": max_wait_seconds,
            "model_timeout": model_timeout,
        }
        RunSettings(**self.defaults)  # validate early
        _check_seconds({"timeout": timeout}, "timeout", none_ok=True)
        #: seconds a run may take (None: no limit); `run(timeout=...)` sets it for one run
        self.timeout = timeout
        self.on_notification = on_notification
        self.on_complete = on_complete
        self.state: HealthState = "healthy"
        self.last_result: CompletionResult | None = None
        self._chain: ClientChain | None = None
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task[None] | None = None
        self._active: _Request | None = None
        self._investigation: Investigation | None = None
        self._run_task: asyncio.Task[CompletionResult] | None = None
        self._last_future: asyncio.Future[CompletionResult] | None = None
        self._conversation: list[Message] = []
        self._stopped = False
        self.crashes = 0

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(cls, skill: Any, *, start_run: bool = False, **options: Any) -> Operator:
        """Create an operator and start it on the lens loop, idle until invoked.

        With `start_run=True` it begins a run at once with the `context` option.
        """
        op = cls(skill, **options)
        _loop.run_sync(op._astart())
        if start_run:
            op.run_in_background(op.context)
        return op

    async def _astart(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._stopped = False
        self._queue = asyncio.Queue()
        sampling.store.listen()
        records.writer.listen()
        self._spawn()
        events.publish("operator_started", self.name, skill=self.skill.id)

    def _spawn(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._serve(), name=f"lensbook-operator-{self.name}"
        )
        # the loop holds tasks weakly: an operator lives until stopped, referenced or not
        _pending.add(self._task)
        self._task.add_done_callback(_pending.discard)
        self._task.add_done_callback(self._supervise)

    def _supervise(self, task: asyncio.Task[None]) -> None:
        """Restart the serving task if it died of anything but a stop."""
        if task.cancelled() or self._stopped:
            return
        exc = task.exception()
        if exc is None:
            return
        self.crashes += 1
        request, investigation = self._active, self._investigation
        self._active = self._investigation = self._run_task = None
        found = list(investigation.notifications) if investigation else []
        result = (
            investigation.result("error", error=f"{type(exc).__name__}: {exc}")
            if investigation
            else None
        )
        if result is not None:
            # what the crashed run found is its outcome, as a failed run's is (`_serve`)
            self.last_result = result
        _log.error("operator %s crashed; restarting", self.name, exc_info=exc)
        events.publish(
            "operator_crashed",
            self.name,
            request.run_id if request else "",
            error=f"{type(exc).__name__}: {exc}",
            notifications=len(found),
        )
        if request is not None and not request.future.done():
            request.future.set_exception(
                OperatorCrashed(
                    f"operator {self.name} crashed during this run: {type(exc).__name__}: {exc}",
                    notifications=found,
                    result=result,
                )
            )
        self._spawn()
        events.publish("operator_restarted", self.name, crashes=self.crashes)

    def stop(self) -> None:
        """Stop the operator: the running run returns what it found, queued runs fail."""
        if self._task is None:
            return
        _loop.run_sync(self.astop())

    async def astop(self) -> None:
        self._stopped = True
        run_task = self._run_task
        if self._task is not None and not self._task.done():
            # cancelling the serving task ends the active run with what it found ("stopped")
            self._task.cancel()
            await asyncio.wait([self._task])
        await _cancel_until_done(run_task)
        self._active = None
        self._task = None
        while self._queue is not None and not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.future.done():
                request.future.set_exception(
                    OperatorStopped(f"operator {self.name} was stopped before this run started")
                )
        events.publish("operator_stopped", self.name)

    def cancel_run(self) -> None:
        """End the active run now (it returns what it found, stopped by ``stopped``); the
        operator stays up and takes the next queued run."""
        if self._task is not None:
            _loop.run_sync(self.acancel_run())

    async def acancel_run(self) -> None:
        """The async twin of `cancel_run`."""
        await _loop.run_on_loop(self._cancel_active())

    async def _cancel_active(self) -> None:
        await _cancel_until_done(self._run_task)

    @property
    def started(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- runs ------------------------------------------------------------------------------

    def run(self, context: Mapping[str, Any] | None = None, **options: Any) -> NotificationList:
        """Run an investigation and block until it ends; returns its notifications.

        Options for this call only: `reason`, `client`, `client_registry`, `max_iterations`,
        `timeout` (seconds, default `lensbook.limits.RUN_TIMEOUT`; the run then stops and
        returns what it found), `model_timeout` (seconds per model call).
        """
        result = _loop.run_sync(self.arun_result(context, **options))
        return NotificationList(result)

    async def arun(
        self, context: Mapping[str, Any] | None = None, **options: Any
    ) -> NotificationList:
        """The async twin of `run`, awaitable from any event loop."""
        return NotificationList(await self.arun_result(context, **options))

    async def arun_result(
        self, context: Mapping[str, Any] | None = None, **options: Any
    ) -> CompletionResult:
        """Like `arun`, returning the whole `CompletionResult`.

        `run_id` (optional) is the id the run gets, so a view made before the run is queued
        can follow its events and no other run's (the card of a queued `%lens run`).
        """
        return await _loop.run_on_loop(self._enqueue_and_wait(context, options))

    def run_in_background(
        self,
        context: Mapping[str, Any] | None = None,
        on_notification: NotificationCallback | None = None,
        on_complete: CompleteCallback | None = None,
        **options: Any,
    ) -> concurrent.futures.Future[CompletionResult]:
        """Queue a run and return at once with a future of its result.

        The run is queued before this returns (so `wait()` waits for it); callbacks fire on
        the lens loop's thread; cancelling the future interrupts the run, which keeps what it
        found. Options as `run`'s, and `run_id` (see `arun_result`).
        """
        options = dict(options)
        run_id = options.pop("run_id", None)
        ctx = _merge_context(context, options)
        request = _loop.run_sync(
            self._enqueue(ctx, options, on_notification, on_complete, run_id=run_id)
        )
        return _loop.submit(self._follow(request))

    def run_async(
        self,
        context: Mapping[str, Any] | None = None,
        on_notification: NotificationCallback | None = None,
        on_complete: CompleteCallback | None = None,
        **options: Any,
    ) -> None:
        """Deprecated: `run_in_background` (this one was never asynchronous)."""
        warnings.warn(
            "Operator.run_async is deprecated: use Operator.run_in_background",
            DeprecationWarning,
            stacklevel=2,
        )
        self.run_in_background(context, on_notification, on_complete, **options)

    def wait(self, timeout: float | None = None) -> CompletionResult:
        """Wait for the latest queued run (or return the last result when idle)."""
        return _loop.run_sync(self.await_(), timeout)

    async def await_(self) -> CompletionResult:
        """The async twin of `wait`."""
        return await _loop.run_on_loop(self._await_latest())

    async def _await_latest(self) -> CompletionResult:
        latest = self._last_future
        if latest is not None and not latest.cancelled():
            try:
                return await asyncio.shield(latest)
            except asyncio.CancelledError:
                if not latest.cancelled():
                    raise  # this wait itself was cancelled
        if self.last_result is not None:
            return self.last_result
        raise LensbookError(f"operator {self.name} has not been asked to run")

    async def _enqueue_and_wait(
        self, context: Mapping[str, Any] | None, options: dict[str, Any]
    ) -> CompletionResult:
        options = dict(options)
        run_id = options.pop("run_id", None)
        ctx = _merge_context(context, options)
        request = await self._enqueue(ctx, options, None, None, run_id=run_id)
        return await self._follow(request)

    async def _follow(self, request: _Request) -> CompletionResult:
        """The outcome of a queued run; a caller that gives up interrupts it."""
        try:
            # shielded: the run's outcome outlives this caller, for wait() and last_result
            return await asyncio.shield(request.future)
        except asyncio.CancelledError:
            self._interrupt(request)
            raise

    def _interrupt(self, request: _Request) -> None:
        """The caller gave up on `request`: cancel it if it runs, drop it if it is queued."""
        request.interrupted = True
        if self._active is request and self._run_task is not None:
            # in a task of its own: a cancellation can be swallowed once (see _cancel_until_done)
            task = asyncio.get_running_loop().create_task(_cancel_until_done(self._run_task))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
        elif not request.future.done():
            request.future.cancel()

    async def _enqueue(
        self,
        context: dict[str, Any],
        options: dict[str, Any],
        on_notification: NotificationCallback | None,
        on_complete: CompleteCallback | None,
        run_id: str | None = None,
    ) -> _Request:
        if not self.started or self._queue is None:
            await self._astart()
        assert self._queue is not None
        future: asyncio.Future[CompletionResult] = asyncio.get_running_loop().create_future()
        # a result nobody awaits must not log "exception never retrieved"
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        request = _Request(
            {**self.context, **context}, options, future, on_notification, on_complete
        )
        if run_id:
            request.run_id = str(run_id)
        self._last_future = future
        await self._queue.put(request)
        events.publish("run_queued", self.name, request.run_id, queued=self._queue.qsize())
        return request

    async def _serve(self) -> None:
        assert self._queue is not None
        while True:
            request = await self._queue.get()
            if request.future.done():
                continue
            if self._stopped:
                request.future.set_exception(
                    OperatorStopped(f"operator {self.name} was stopped before this run started")
                )
                continue
            self._active = request
            try:
                result = await self._execute(request)
            except RunFailed as exc:
                if exc.result is not None:
                    self._finish(request, exc.result)
                if not request.future.done():
                    request.future.set_exception(exc)
            else:
                self._finish(request, result)
                if not request.future.done():
                    request.future.set_result(result)
            # on any other exception _active stays set: the supervisor fails that run
            self._active = None

    async def _execute(self, request: _Request) -> CompletionResult:
        options = request.options
        settings = RunSettings(**{k: options.get(k, v) for k, v in self.defaults.items()})
        chain = self._chain_for(options)

        def notify(note: Notification) -> None:
            for callback in (request.on_notification, self.on_notification):
                _call_back(callback, note)

        investigation = Investigation(
            operator=self.name,
            skill=self.skill,
            chain=chain,
            context=request.context,
            settings=settings,
            state=self.state,
            on_notification=notify,
            run_id=request.run_id,
        )
        self._investigation = investigation
        self._run_task = asyncio.get_running_loop().create_task(containing(investigation.run()))
        # its outcome is read below; this keeps a run cancelled by stop() from logging noise
        self._run_task.add_done_callback(lambda t: t.cancelled() or t.exception())
        timeout = options.get("timeout", self.timeout)
        try:
            done, _ = await asyncio.wait([self._run_task], timeout=timeout)
            if not done:
                await _cancel_until_done(self._run_task)
                return investigation.result("timeout", error=f"stopped after {timeout} s")
            if self._run_task.cancelled():
                return investigation.result("interrupted" if request.interrupted else "stopped")
            return self._run_task.result()
        except asyncio.CancelledError:
            # stop(): the serving task is cancelled while the run is being awaited
            if self._run_task is not None and not self._run_task.done():
                self._run_task.cancel()
            result = investigation.result("stopped")
            self._finish(request, result)
            if not request.future.done():
                request.future.set_result(result)
            raise
        finally:
            self.state = investigation.state
            self._conversation = list(investigation.messages)
            self._run_task = None

    def _finish(self, request: _Request, result: CompletionResult) -> None:
        self.state = result.state
        self.last_result = result
        publish_completed(self.name, result)
        for callback in (request.on_complete, self.on_complete):
            _call_back(callback, result)

    def _chain_for(self, options: Mapping[str, Any]) -> ClientChain:
        if "client" in options or "client_registry" in options:
            return resolve_client(
                options.get("client", self.client),
                options.get("client_registry", self.client_registry),
            )
        if self._chain is None:
            self._chain = resolve_client(self.client, self.client_registry)
        return self._chain

    # -- questions and status --------------------------------------------------------------

    def message(self, prompt: str, timeout: float = MODEL_CALL_TIMEOUT) -> MessageResponse:
        """Ask the operator about its investigation; its conversation is not changed."""
        return _loop.run_sync(self.amessage(prompt, timeout=timeout))

    async def amessage(self, prompt: str, timeout: float = MODEL_CALL_TIMEOUT) -> MessageResponse:
        """The async twin of `message`."""
        return await _loop.run_on_loop(asyncio.wait_for(self._answer(prompt), timeout))

    async def _answer(self, prompt: str) -> MessageResponse:
        investigation = self._investigation
        conversation = list(investigation.messages) if investigation else list(self._conversation)
        question = prompts.message_prompt(prompt)
        if not conversation:
            loop = asyncio.get_running_loop()
            snapshot = await loop.run_in_executor(None, self.skill.snapshot)
            question += "\nNo investigation has run yet. Current snapshot: " + render_output(
                snapshot
            )
        messages = _answerable(conversation, question)
        request = ModelRequest(
            system=f"{self.skill.system_prompt}\n\n{prompts.OPERATOR_PROTOCOL}",
            messages=tuple(messages),
            tools=(),
            purpose="message",
            skill_id=self.skill.id,
            context={"state": self.state},
            skill=self.skill,
        )
        chain = self._chain_for({})
        turn = await chain.complete(request)
        status = self.status()
        return MessageResponse(
            skill=self.skill.id, state=status.state, iteration=status.iteration, response=turn.text
        )

    def status(self) -> Status:
        """The operator's skill, health state, iteration and whether it is running."""
        investigation = self._investigation
        running = self._active is not None
        if investigation is not None and running:
            state, iteration = investigation.state, investigation.iteration
        else:
            state = self.state
            iteration = self.last_result.iterations if self.last_result else 0
        return Status(
            operator=self.name,
            state=state,
            iteration=iteration,
            running=running,
            queued=self._queue.qsize() if self._queue is not None else 0,
        )

    @property
    def current_action(self) -> str:
        inv = self._investigation
        return inv.current_action if inv is not None and self._active is not None else "idle"

    def __repr__(self) -> str:
        s = self.status()
        return (
            f"<Operator {self.name} ({self.skill.id}): {s.state}, "
            f"{'running' if s.running else 'idle'}, iteration {s.iteration}>"
        )


async def _cancel_until_done(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait for it to end.

    asyncio.wait_for (3.11) can swallow a cancellation that lands just as the awaited call
    returns, so the cancellation is repeated until the task has really ended.
    """
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)


def _answerable(conversation: list[Message], question: str) -> list[Message]:
    """The conversation made valid for a question: no dangling tool calls, user turn last."""
    messages = list(conversation)
    while messages and messages[-1].role == "assistant" and messages[-1].tool_calls:
        messages.pop()
    if messages and messages[-1].role == "user":
        last = messages[-1]
        if last.tool_results and (len(messages) < 2 or not messages[-2].tool_calls):
            messages.pop()
        else:
            return [
                *messages[:-1],
                Message(role="user", content=(*last.content, *Message.user(question).content)),
            ]
    return [*messages, Message.user(question)]


def _call_back(callback: Callable[[Any], Any] | None, value: Any) -> None:
    if callback is None:
        return
    try:
        outcome = callback(value)
        if inspect.isawaitable(outcome):
            task = asyncio.ensure_future(containing(outcome))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
    except BaseException as exc:  # its sys.exit() too: it runs on the lens loop's thread
        if not contained(exc):
            raise
        _log.exception("callback %r failed", callback)
