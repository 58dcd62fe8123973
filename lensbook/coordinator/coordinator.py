"""The Coordinator: runs several operators on one question and correlates what they find.

    result = lensbook.Coordinator.run({"reason": "the service slows down and memory grows"})
    result.insights                 # notifications of several operators linked by one cause
    result.operator_results         # skill -> each operator's CompletionResult

`run` is callable on the class (a fresh coordinator) or on an instance. A run never hangs: the
model failing, an operator crashing or timing out, the deadline and `cancel()` all end it with a
`CoordinatorResult` whose `stop_reason` and `error` say why; its operators are stopped and the
caller is freed. Only one run goes on per coordinator at a time.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from typing_extensions import TypedDict, Unpack

from lensbook import _loop, records
from lensbook._errors import LensbookError, LLMError
from lensbook._triage import triage
from lensbook.clients.base import LLMClient
from lensbook.clients.chain import ClientChain
from lensbook.clients.resolve import resolve_client
from lensbook.coordinator.insights import (
    CoordinatorResult,
    CoordinatorStatus,
    CoordinatorStopReason,
    Insight,
    TrackedNotification,
)
from lensbook.coordinator.session import Session, Settings
from lensbook.coordinator.strategies import STRATEGIES
from lensbook.limits import COORDINATOR_MAX_ITERATIONS, MAX_WAIT_SECONDS, OPERATOR_TIMEOUT
from lensbook.sampling import store as metrics_store
from lensbook.skills import resolve_skill, skill_ids
from lensbook.skills.base import SkillLike

__all__ = ["Coordinator", "RunOptions", "coordinator_chain"]

_log = logging.getLogger("lensbook.coordinator")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_pending: set[asyncio.Task[Any]] = set()


class _class_or_instance(Generic[P, R]):
    """A method that, called on the class itself, runs on a fresh default instance."""

    def __init__(self, fn: Callable[Concatenate[Coordinator, P], R]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Coordinator | None, owner: type[Coordinator]) -> Callable[P, R]:
        fn = self.fn

        @functools.wraps(fn)
        def bound(*args: P.args, **kwargs: P.kwargs) -> R:
            return fn(obj if obj is not None else owner(), *args, **kwargs)

        return bound


def coordinator_chain(
    client: LLMClient | ClientChain | str | None = None,
    client_registry: Mapping[str, Any] | None = None,
    *,
    namespace: Mapping[str, Any] | None = None,
) -> ClientChain:
    """The coordinator's chain, resolved as an operator's is (`resolve_client`) except that
    "offline" (and the default without an API key) is the offline coordinator."""
    from lensbook.clients.offline import OfflineInvestigator
    from lensbook.coordinator.offline import OfflineCoordinator

    if isinstance(client, OfflineInvestigator):  # the operators' offline client, asked for
        client = "offline"
    return resolve_client(client, client_registry, namespace=namespace, offline=OfflineCoordinator)


OperatorClientOption = (
    LLMClient | ClientChain | str | Mapping[str, Any] | Callable[[str], Any] | None
)


class RunOptions(TypedDict, total=False):
    """Options of one coordinator run, each overriding the coordinator's own (see `run`)."""

    skills: Iterable[Any] | None
    client: LLMClient | ClientChain | str | None
    #: seconds for the whole run
    deadline: float | None
    #: "agent" or "pipeline"
    strategy: str | None
    operator_client: OperatorClientOption
    client_registry: Mapping[str, Any] | None
    max_iterations: int
    operator_timeout: float
    operator_max_iterations: int | None
    max_wait_seconds: float


def _given(value: T | None, default: T) -> T:
    """A per-call option that was given (not None), else the coordinator's own."""
    return value if value is not None else default


class Coordinator:
    """Runs operators on several skills for one question and correlates their notifications.

    `skills` limits what it may invoke (all built-in and registered skills by default); `client`
    is the coordinator's model (the default: Anthropic with ANTHROPIC_API_KEY, else the offline
    coordinator); `operator_client` is the operators' (a client, a {skill: client} mapping or a
    callable taking the skill id; by default the same model, or the offline investigator).
    """

    def __init__(
        self,
        *,
        skills: Iterable[Any] | None = None,
        client: LLMClient | ClientChain | str | None = None,
        client_registry: Mapping[str, Any] | None = None,
        operator_client: OperatorClientOption = None,
        deadline: float | None = None,
        strategy: str = "agent",
        max_iterations: int = COORDINATOR_MAX_ITERATIONS,
        operator_timeout: float = OPERATOR_TIMEOUT,
        operator_max_iterations: int | None = None,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
        name: str = "coordinator",
        on_notification: Callable[[TrackedNotification], Any] | None = None,
        on_insight: Callable[[Insight], Any] | None = None,
        on_complete: Callable[[CoordinatorResult], Any] | None = None,
    ) -> None:
        self.name = name
        self.skills = list(skills) if skills is not None else None
        self.client = client
        self.client_registry = client_registry
        self.operator_client = operator_client
        self.strategy = _check_strategy(strategy)
        self.settings = Settings(
            max_iterations=max_iterations,
            operator_timeout=operator_timeout,
            operator_max_iterations=operator_max_iterations,
            max_wait_seconds=max_wait_seconds,
            deadline=deadline,
        )
        self.on_notification = on_notification
        self.on_insight = on_insight
        self.on_complete = on_complete
        self.last_result: CoordinatorResult | None = None
        self._session: Session | None = None
        self._task: asyncio.Task[CoordinatorResult] | None = None
        self._inner: asyncio.Task[None] | None = None

    # -- runs ------------------------------------------------------------------------------

    @_class_or_instance
    def run(
        self, /, context: Mapping[str, Any] | str | None = None, **options: Unpack[RunOptions]
    ) -> CoordinatorResult:
        """Coordinate an investigation and block until it ends; returns its result.

        `context` is a mapping (its "reason" is the question) or the question itself. Per-call
        options override the coordinator's: `skills`, `client`, `deadline` (seconds for the whole
        run), `strategy` ("agent" or "pipeline"), `operator_client`, `max_iterations`,
        `operator_timeout`. Interrupting the call (Ctrl-C) cancels the run.
        """
        return _loop.run_sync(self._arun(context, **options))

    @_class_or_instance
    async def arun(
        self, /, context: Mapping[str, Any] | str | None = None, **options: Unpack[RunOptions]
    ) -> CoordinatorResult:
        """The async twin of `run`, awaitable from any event loop."""
        return await _loop.run_on_loop(self._arun(context, **options))

    @_class_or_instance
    def run_in_background(
        self, /, context: Mapping[str, Any] | str | None = None, **options: Unpack[RunOptions]
    ) -> Coordinator:
        """Start a run and return at once (the coordinator itself: `wait`, `status`, `cancel`)."""
        _loop.run_sync(self._begin(context, **options))
        return self

    @_class_or_instance
    def run_async(
        self, /, context: Mapping[str, Any] | str | None = None, **options: Unpack[RunOptions]
    ) -> Coordinator:
        """Deprecated: `run_in_background` (this one was never asynchronous)."""
        warnings.warn(
            "Coordinator.run_async is deprecated: use Coordinator.run_in_background",
            DeprecationWarning,
            stacklevel=3,
        )
        return self.run_in_background(context, **options)

    def wait(self, timeout: float | None = None) -> CoordinatorResult:
        """The result of the current (or last) run, waiting for it up to `timeout` seconds."""
        return _loop.run_sync(self.await_(), timeout)

    async def await_(self) -> CoordinatorResult:
        """The async twin of `wait`."""
        return await _loop.run_on_loop(self._await_current())

    async def _await_current(self) -> CoordinatorResult:
        if self._task is not None:
            return await asyncio.shield(self._task)
        if self.last_result is not None:
            return self.last_result
        raise LensbookError(f"coordinator {self.name} has not been asked to run")

    def cancel(self) -> None:
        """Cancel the current run: operators stop, the result says ``cancelled``."""
        if self._task is None or not _loop.is_running():
            return
        _loop.run_sync(self.acancel())

    async def acancel(self) -> None:
        """The async twin of `cancel`."""
        await _loop.run_on_loop(self._cancel_on_loop())

    async def _cancel_on_loop(self) -> None:
        inner = self._inner
        if inner is not None and not inner.done():
            inner.cancel()

    def status(self) -> CoordinatorStatus:
        """(running, notification_count, unread_count, iteration) of the current run."""
        session = self._session
        running = self._task is not None and not self._task.done()
        if session is None:
            return CoordinatorStatus(running, 0, 0, 0)
        return CoordinatorStatus(running, len(session.notes), session.unread(), session.iteration)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def insights(self) -> tuple[Insight, ...]:
        """The insights of the current (or last) run so far."""
        return tuple(self._session.insights) if self._session is not None else ()

    @property
    def notifications(self) -> tuple[TrackedNotification, ...]:
        """The notifications of the current (or last) run so far, with their statuses."""
        return tuple(self._session.notes.values()) if self._session is not None else ()

    @property
    def run_id(self) -> str | None:
        return self._session.run_id if self._session is not None else None

    def operator_names(self) -> dict[str, str]:
        """Skill id -> the name of this coordinator's operator for it (current or last run)."""
        session = self._session
        return {s: r.operator.name for s, r in session.runs.items()} if session else {}

    # -- the run on the lens loop ------------------------------------------------------------

    async def _arun(
        self, context: Mapping[str, Any] | str | None, **options: Unpack[RunOptions]
    ) -> CoordinatorResult:
        task = await self._begin(context, **options)
        return await task

    async def _begin(
        self, context: Mapping[str, Any] | str | None, **options: Unpack[RunOptions]
    ) -> asyncio.Task[CoordinatorResult]:
        if self._task is not None and not self._task.done():
            raise LensbookError(
                f"coordinator {self.name} is already running (wait() or cancel() it first)"
            )
        # the options are typed for callers; a call from untyped code is checked here
        unknown = set(options) - set(RunOptions.__annotations__)
        if unknown:
            raise TypeError(f"unknown coordinator option(s): {', '.join(sorted(unknown))}")
        ctx = _context(context)
        settings = Settings(
            max_iterations=options.get("max_iterations", self.settings.max_iterations),
            operator_timeout=options.get("operator_timeout", self.settings.operator_timeout),
            operator_max_iterations=options.get(
                "operator_max_iterations", self.settings.operator_max_iterations
            ),
            max_wait_seconds=options.get("max_wait_seconds", self.settings.max_wait_seconds),
            deadline=_given(options.get("deadline"), self.settings.deadline),
        )
        chosen = _check_strategy(options.get("strategy") or self.strategy)
        client = _given(options.get("client"), self.client)
        registry = options.get("client_registry", self.client_registry)
        chain = coordinator_chain(client, registry)
        operator_client = _operator_clients(
            options.get("operator_client", self.operator_client), client, registry
        )
        available = _skills(_given(options.get("skills"), self.skills))
        metrics_store.listen()
        records.writer.listen()
        session = Session(
            name=self.name,
            context=ctx,
            skills=available,
            chain=chain,
            operator_client=operator_client,
            settings=settings,
            strategy=chosen,
            on_notification=self.on_notification,
            on_insight=self.on_insight,
        )
        self._session = session
        self._inner = None
        self._task = asyncio.get_running_loop().create_task(
            self._execute(session, chosen), name=f"lensbook-{self.name}"
        )
        _pending.add(self._task)
        self._task.add_done_callback(_pending.discard)
        # a result nobody awaits must not log "exception never retrieved"
        self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return self._task

    async def _execute(self, session: Session, strategy: str) -> CoordinatorResult:
        # triage first: the operators to invoke follow the evidence, not the question's words
        swept = await asyncio.get_running_loop().run_in_executor(
            None, triage, list(session.skills.values())
        )
        session.triage = swept.brief()
        session._emit(
            "coordinator_started",
            context=session.context,
            triage=session.triage,
            strategy=strategy,
            skills=list(session.skills),
            client=session.chain.name,
            deadline=session.settings.deadline,
            max_iterations=session.settings.max_iterations,
        )
        inner = asyncio.get_running_loop().create_task(STRATEGIES[strategy](session))
        self._inner = inner
        stop_reason: CoordinatorStopReason = "done"
        error: str | None = None
        try:
            finished, _ = await asyncio.wait([inner], timeout=session.remaining())
            if not finished:
                inner.cancel()
                await asyncio.wait([inner])
                stop_reason = "deadline"
                error = f"the deadline of {session.settings.deadline:g} s passed"
            elif inner.cancelled():
                stop_reason, error = "cancelled", "cancelled by cancel()"
            elif inner.exception() is not None:
                exc = inner.exception()
                stop_reason = "error"
                if isinstance(exc, LLMError):
                    error = f"the coordinator's model failed: {exc}"
                else:
                    error = f"{type(exc).__name__}: {exc}"
                    _log.error("coordinator %s failed", self.name, exc_info=exc)
            else:
                stop_reason = session.stop_reason
        except asyncio.CancelledError:
            # the caller was interrupted (Ctrl-C in run()): stop everything, keep what was found
            inner.cancel()
            await asyncio.shield(self._finish(session, "cancelled", "the caller was interrupted"))
            raise
        return await self._finish(session, stop_reason, error)

    async def _finish(
        self, session: Session, stop_reason: CoordinatorStopReason, error: str | None
    ) -> CoordinatorResult:
        await session.shutdown()
        result = session.result(stop_reason, error)
        self.last_result = result
        session._emit(
            "coordinator_completed",
            stop_reason=result.stop_reason,
            error=result.error,
            iterations=result.iterations,
            insights=len(result.insights),
            notifications=len(result.notifications),
            summary=result.summary,
            seconds=round(result.seconds, 3),
            client=result.client,
        )
        if self.on_complete is not None:
            try:
                outcome = self.on_complete(result)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                _log.exception("on_complete callback %r failed", self.on_complete)
        return result

    def __repr__(self) -> str:
        running, notes, unread, iteration = self.status()
        return (
            f"<Coordinator {self.name}: {'running' if running else 'idle'}, iteration "
            f"{iteration}, {notes} notification(s) ({unread} unread), "
            f"{len(self.insights)} insight(s)>"
        )


def _check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    return strategy


def _context(context: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if context is None:
        return {}
    if isinstance(context, str):
        return {"reason": context}
    return dict(context)


def _skills(skills: Iterable[Any] | None) -> dict[str, SkillLike]:
    chosen = list(skills) if skills is not None else skill_ids()
    resolved = [resolve_skill(s) for s in chosen]
    if not resolved:
        raise ValueError("a coordinator needs at least one skill")
    return {s.id: s for s in resolved}


def _operator_clients(
    option: OperatorClientOption,
    client: LLMClient | ClientChain | str | None,
    registry: Mapping[str, Any] | None,
) -> Callable[[str], Any]:
    """skill id -> the client its operator uses (None: the operator's default)."""
    from lensbook.clients.offline import OfflineInvestigator
    from lensbook.coordinator.offline import OfflineCoordinator

    if option is None:
        offline = client == "offline" or isinstance(client, OfflineCoordinator)
        if isinstance(client, ClientChain):
            offline = any(isinstance(c, OfflineCoordinator) for c in client.clients)
        if offline:
            # an offline coordinator's operators investigate offline too, key or no key
            return lambda skill: OfflineInvestigator()
        if client is None:
            # the operators' own default: a model with a key (or a registry), else offline
            if registry is not None:
                return lambda skill: resolve_client(None, registry)
            return lambda skill: None
        return lambda skill: client
    if isinstance(option, Mapping):
        table = dict(option)
        return lambda skill: table.get(skill)
    if callable(option) and not isinstance(option, (LLMClient, ClientChain)):
        factory: Callable[[str], Any] = option
        return factory
    fixed = option
    return lambda skill: fixed
