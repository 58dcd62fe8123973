"""The `%lens` line magic: run, watch and question lensbook's operators from IPython.

Loaded by `%load_ext lensbook` (or `c.InteractiveShellApp.extensions = ["lensbook"]`). The line
is split with `shlex` and parsed by argparse subcommands; a bad flag or an unknown skill raises a
one-line `UsageError`. `{...}` and `$x` in the line are not expanded (`@no_var_expand`), so a
`--reason` is passed as typed. Defaults are `config=True` traits (`%config LensMagics`).

The options and their checks are `lensbook.options`' (the `lensbook` command's too); this module
turns what they reject into the magic's one-line `UsageError`. The answers are display objects
(`lensbook.notebook._reports`), the views are `lensbook.notebook.widgets`', and `investigate` and
`watch` are glued in `lensbook.notebook._coordinator_commands`. Only lensbook's public surface
is used (`lensbook.run`'s operators, `lensbook.triage`, `lensbook.replay`...).
"""

from __future__ import annotations

import argparse
import html
import shlex
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand
from traitlets import CaselessStrEnum, Float, Int, Unicode

import lensbook
from lensbook import options
from lensbook.cards import CardModel
from lensbook.limits import MAX_ITERATIONS
from lensbook.notebook import _coordinator_commands, _history
from lensbook.notebook._models import FeedModel, MetricsModel, status_html, status_text
from lensbook.notebook._reports import Report, RunNotes
from lensbook.types import CompletionResult, NotificationList, new_id

if TYPE_CHECKING:
    import concurrent.futures

    from lensbook.notebook.widgets import OperatorCard

__all__ = ["LensMagics", "Report", "RunNotes", "build_parser"]

SUBCOMMANDS = (
    "run",
    "status",
    "message",
    "stop",
    "skills",
    "notifications",
    "dashboard",
    "metrics",
    "runs",
    "replay",
    "providers",
    "investigate",
    "watch",
    "postmortem",
    "history",
)


class _HelpShown(Exception):
    """argparse asked to print help (`-h`): show it instead of exiting the kernel."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises `UsageError` (one line) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see %lens?)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message.strip() if message else f"{self.prog}: exited ({status})")

    def print_help(self, file: Any = None) -> None:
        raise _HelpShown(self.format_help())


def build_parser() -> argparse.ArgumentParser:
    """The `%lens` parser; its help is the magic's docstring (`%lens?`)."""
    parser = _Parser(
        prog="%lens",
        description="Run, watch and question lensbook's operators (one per skill).",
        epilog=(
            "Defaults (client, max iterations, refresh rate, widgets) are settable with "
            "%config LensMagics.<name> = value. After a run, _ and lensbook.notebook.last() "
            "hold its notifications (.result has everything). Kernel > Interrupt stops a "
            "blocking run and keeps what it found."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run an investigation with a live operator card",
        description="Run the skill's operator (started if needed) with a live operator card; "
        "blocks until it ends unless --background.",
    )
    options.add_run_options(run, skill_help="skill id, e.g. runtime or memory")
    run.add_argument(
        "--client",
        metavar="NAME",
        help="'offline', a name in the operator's client_registry, a provider (ollama, ...), "
        "or a variable holding an LLMClient",
    )
    run.add_argument(
        "--background", action="store_true", help="return at once; the card keeps updating"
    )
    run.add_argument(
        "--on",
        choices=["dask"],
        help="dask: run on every worker of the current distributed client's cluster "
        "(lensbook.dask; attached first if needed), one live card per worker",
    )

    status = sub.add_parser("status", help="health, iteration and activity of operators")
    status.add_argument("skill", metavar="SKILL", nargs="?", help="one skill (default: all)")

    message = sub.add_parser(
        "message", help="ask an operator about its investigation (its conversation is kept)"
    )
    message.add_argument("skill", metavar="SKILL")
    message.add_argument("question", metavar="QUESTION", nargs="+", help="quoted question")

    stop = sub.add_parser("stop", help="stop an operator (its run returns what it found)")
    stop.add_argument("skill", metavar="SKILL")

    sub.add_parser("skills", help="the skills you can run")

    triage = sub.add_parser(
        "triage",
        help="a cheap sweep of the started skills, their rules and the history, ranked",
    )
    triage.add_argument(
        "skills", metavar="SKILL", nargs="*", help="skills to sweep (default: the started ones)"
    )

    notes = sub.add_parser("notifications", help="the live notification feed")
    notes.add_argument("skill", metavar="SKILL", nargs="?", help="one operator (default: all)")

    sub.add_parser("dashboard", help="every operator's card, the feed and the metrics")

    metrics = sub.add_parser("metrics", help="latest sampled values and live charts")
    metrics.add_argument("skill", metavar="SKILL", nargs="?", help="one skill (default: all)")

    runs = sub.add_parser("runs", help="the recorded runs (newest first)")
    options.add_runs_options(runs)

    replay = sub.add_parser(
        "replay", help="re-run a recorded investigation; model turns come from the record"
    )
    options.add_replay_options(replay)
    sub.add_parser(
        "providers", help="each operator's client chain and the client that answered its last run"
    )
    history = sub.add_parser(
        "history",
        help="what the flight recorder saw: a timeline of metrics and events (text in a terminal)",
    )
    history.add_argument(
        "--kinds", metavar="K1,K2", help="only these event kinds, e.g. exception,loop_lag"
    )
    history.add_argument(
        "--since", metavar="SECONDS", type=options.positive_seconds, help="only the last SECONDS"
    )
    history.add_argument(
        "--limit", metavar="N", type=options.positive_int, default=500, help="the newest N (500)"
    )
    history.add_argument("--text", action="store_true", help="no chart: the text timeline only")
    _coordinator_commands.add_parsers(sub)
    review = sub.add_parser(
        "postmortem",
        help="write a postmortem notebook from recorded runs (as `lensbook postmortem`)",
    )
    options.add_postmortem_options(review)
    return parser


def _full_help() -> str:
    parser = build_parser()
    parts = [parser.format_help()]
    subparsers = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    for name in SUBCOMMANDS:
        parts.append(f"--- %lens {name} ---\n{subparsers[name].format_help()}")
    return "\n".join(parts)


@magics_class
class LensMagics(Magics):
    """The `%lens` magic and its configurable defaults."""

    client = Unicode(
        "",
        help="Client of %lens run when --client is not given: '' (the operator's own, by "
        "default Anthropic with ANTHROPIC_API_KEY else the offline investigator), 'offline', "
        "a client_registry name, or the name of a variable holding an LLMClient.",
    ).tag(config=True)
    max_iterations = Int(
        0,
        help="Iteration limit of %lens run when --max-iterations is not given (0: the "
        f"operator's own, {MAX_ITERATIONS} by default).",
    ).tag(config=True)
    refresh_rate = Float(
        10.0, help="Most widget updates per second, per widget (the final state is always sent)."
    ).tag(config=True)
    widgets = CaselessStrEnum(
        ["auto", "on", "off"],
        "auto",
        help="Live ipywidgets: 'auto' (in a kernel with ipywidgets), 'on', or 'off' (text).",
    ).tag(config=True)
    message_timeout = Float(60.0, help="Seconds %lens message waits for an answer.").tag(
        config=True
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.parser = build_parser()

    @no_var_expand
    @line_magic
    def lens(self, line: str) -> Any:
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%lens: cannot parse the line: {exc}") from None
        if not argv:
            return Report(_full_help())
        try:
            args = self.parser.parse_args(argv)
        except _HelpShown as shown:
            return Report(shown.text)
        handler = getattr(self, f"_cmd_{args.command}")
        try:
            return handler(args)
        except options.OptionError as exc:
            raise UsageError(f"%lens {args.command}: {exc}") from None

    lens.__doc__ = _full_help()

    # -- helpers ---------------------------------------------------------------------------

    def use_widgets(self) -> bool:
        """Whether answers are live widgets (the `widgets` setting, and ipywidgets found)."""
        if self.widgets == "off":
            return False
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return False
        if self.widgets == "on":
            return True
        return getattr(self.shell, "kernel", None) is not None

    def _static(self, skill: str) -> lensbook.Operator | None:
        return lensbook.operators().get(skill)

    def _started(self, skill: str) -> lensbook.Operator:
        try:
            return lensbook.start([skill])[0]
        except lensbook.LensbookError as exc:
            raise UsageError(f"%lens: cannot start the {skill} operator: {exc}") from None

    def _client(self, name: str, op: lensbook.Operator) -> Any:
        """`--client NAME` as the run option: None (the operator's own) or its chain, resolved
        with the operator's registry as everywhere else (`lensbook.clients.resolve`)."""
        from lensbook.clients import resolve_client

        if not name:
            return None
        namespace = self.shell.user_ns if self.shell is not None else {}
        try:
            return resolve_client(name, op.client_registry, namespace=namespace)
        except lensbook.LensbookError as exc:
            raise UsageError(f"%lens: {exc}") from None

    def _feed_model(self, skill: str | None) -> FeedModel:
        """A feed model holding what the journal and the operators' last runs found."""
        feed = FeedModel(skill)
        _history.journal.copy_into(feed)
        results = [
            op.last_result
            for name, op in lensbook.operators().items()
            if op.last_result is not None and (skill is None or name == skill)
        ]
        for result in results:
            for snap in result.snapshots:
                feed.add_snapshot(snap.id, snap.data)
        feed.merge(n.to_dict() for result in results for n in result.notifications)
        return feed

    # -- subcommands -----------------------------------------------------------------------

    def _cmd_run(self, args: argparse.Namespace) -> Any:
        skill = options.skill_id(args.skill)
        if args.on == "dask":
            return self._run_on_dask(skill, args)
        op = self._started(skill)
        settings: dict[str, Any] = {}
        max_iterations = args.max_iterations or self.max_iterations
        if max_iterations:
            settings["max_iterations"] = max_iterations
        client = self._client(args.client if args.client is not None else self.client, op)
        if client is not None:
            settings["client"] = client
        if args.timeout is not None:
            settings["timeout"] = args.timeout
        context = {"reason": args.reason} if args.reason is not None else None

        run_id = new_id()
        card = self._run_card(op, max_iterations or int(op.defaults["max_iterations"]), run_id)
        try:
            future = op.run_in_background(context, run_id=run_id, **settings)
        except (lensbook.LensbookError, ValueError, TypeError) as exc:
            if card is not None:
                card.finish(error=str(exc))
            raise UsageError(f"%lens run {skill}: {exc}") from None
        if args.background:
            if card is not None:
                future.add_done_callback(lambda f: _finish_card(card, f))
                return None
            return Report(
                f"{skill}: investigating in the background. %lens status {skill} shows where it "
                f"is; lensbook.notebook.last({skill!r}, wait=True) returns its result."
            )
        return self._wait(skill, op, future, card)

    def _run_on_dask(self, skill: str, args: argparse.Namespace) -> Any:
        """`%lens run SKILL --on dask`: the cluster run, blocking, with a card per worker."""
        if args.background:
            raise UsageError("%lens run --on dask: --background is not supported on a cluster")
        try:
            from distributed import get_client

            import lensbook.dask as lensdask
        except ImportError:
            raise UsageError(
                '%lens run --on dask needs distributed: pip install "lensbook[dask]"'
            ) from None
        try:
            client = get_client()
        except ValueError:
            raise UsageError(
                "%lens run --on dask: no distributed client in this kernel; create one first "
                "(client = distributed.Client(...))"
            ) from None
        settings: dict[str, Any] = {}
        max_iterations = args.max_iterations or self.max_iterations or MAX_ITERATIONS
        settings["max_iterations"] = max_iterations
        name = args.client if args.client is not None else self.client
        if name:
            value = self.shell.user_ns.get(name) if self.shell is not None else None
            settings["client"] = value if value is not None else name
        if args.timeout is not None:
            settings["timeout"] = args.timeout
        if args.reason is not None:
            settings["reason"] = args.reason
        try:
            cluster = lensdask.current(client) or lensdask.attach(client)
            workers = list(cluster.client.nthreads())
        except lensbook.LensbookError as exc:
            raise UsageError(f"%lens run {skill} --on dask: {exc}") from None
        view = None
        if self.use_widgets():
            from lensbook.notebook.cluster_view import ClusterDashboard

            view = ClusterDashboard(
                skill, workers, max_iterations=max_iterations, refresh_rate=self.refresh_rate
            )
            view.show()
        try:
            result = cluster.run(skill, workers=workers, **settings)
        except lensbook.LensbookError as exc:
            if view is not None:
                view.finish(error=str(exc))
            raise UsageError(f"%lens run {skill} --on dask: {exc}") from None
        if view is not None:
            view.finish(result)
        return result

    def _run_card(
        self, op: lensbook.Operator, max_iterations: int, run_id: str
    ) -> OperatorCard | None:
        if not self.use_widgets():
            return None
        from lensbook.notebook.widgets import OperatorCard

        model = CardModel.of(op)
        model.queue(max_iterations, run_id)
        card = OperatorCard(model=model, refresh_rate=self.refresh_rate, feed=True, follow=False)
        card.show()
        return card

    def _wait(
        self,
        skill: str,
        op: lensbook.Operator,
        future: concurrent.futures.Future[CompletionResult],
        card: OperatorCard | None,
    ) -> Any:
        try:
            try:
                result = future.result()
            except KeyboardInterrupt:
                # Kernel > Interrupt: this run ends with what it found ("interrupted"); the
                # operator stays up for the next one
                future.cancel()
                result = op.wait(timeout=30)
        except lensbook.RunFailed as exc:
            if exc.result is None:
                if card is not None:
                    card.finish(error=str(exc))
                raise UsageError(f"%lens run {skill}: {exc}") from None
            result = exc.result
        except lensbook.LensbookError as exc:
            if card is not None:
                card.finish(error=str(exc))
            raise UsageError(f"%lens run {skill}: {exc}") from None
        if card is None:
            return NotificationList(result)
        card.finish(result)
        return RunNotes(result)

    def _cmd_status(self, args: argparse.Namespace) -> Report:
        if args.skill:
            skill = options.skill_id(args.skill)
            op = self._static(skill)
            if op is None:
                return Report(f"{skill}: not started (%lens run {skill} starts it)")
            rows = [CardModel.of(op)]
        else:
            rows = [CardModel.of(op) for op in lensbook.operators().values()]
        return Report(status_text(rows), status_html(rows))

    def _cmd_message(self, args: argparse.Namespace) -> Report:
        skill = options.skill_id(args.skill)
        op = self._started(skill)
        question = " ".join(args.question)
        try:
            answer = op.message(question, timeout=self.message_timeout)
        except TimeoutError:
            raise UsageError(
                f"%lens message {skill}: no answer within {self.message_timeout:g} s"
            ) from None
        except lensbook.LensbookError as exc:
            raise UsageError(f"%lens message {skill}: {exc}") from None
        text = f"{answer.skill} ({answer.state}, iteration {answer.iteration}): {answer.response}"
        page = (
            f"<div><b>{html.escape(answer.skill)}</b> <small>{html.escape(answer.state)}, "
            f"iteration {answer.iteration}</small></div>"
            f'<div style="white-space:pre-wrap">{html.escape(answer.response)}</div>'
        )
        return Report(text, page)

    def _cmd_stop(self, args: argparse.Namespace) -> Report:
        skill = options.skill_id(args.skill)
        op = self._static(skill)
        if op is None or not op.started:
            return Report(f"{skill}: not running")
        was_running = op.status().running
        op.stop()
        return Report(
            f"{skill}: stopped"
            + (" (its run returned what it had found)" if was_running else "")
            + f"; %lens run {skill} starts it again"
        )

    def _cmd_skills(self, args: argparse.Namespace) -> Report:
        from lensbook.skills import resolve_skill, skill_ids

        running = lensbook.operators()
        ids = list(dict.fromkeys([*skill_ids(), *running]))
        rows: list[tuple[str, str, str, str]] = []
        for sid in ids:
            op = running.get(sid)
            where = "not started"
            if op is not None:
                where = "running" if op.status().running else ("idle" if op.started else "stopped")
            try:
                skill = resolve_skill(sid)
                rows.append((sid, skill.title or sid, skill.description, where))
            except Exception as exc:
                rows.append((sid, "(unavailable)", f"{type(exc).__name__}: {exc}", where))
        width = max(len(r[0]) for r in rows)
        text = "\n".join(f"{r[0]:<{width}}  {r[3]:<11}  {r[1]}: {r[2]}" for r in rows)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
        )
        page = (
            "<table><thead><tr><th>skill</th><th>title</th><th>description</th>"
            f"<th>operator</th></tr></thead><tbody>{body}</tbody></table>"
        )
        return Report(text, page)

    def _cmd_triage(self, args: argparse.Namespace) -> Report:
        found = lensbook.triage([options.skill_id(s) for s in args.skills] or None)
        return Report(found.text(), found._repr_html_())

    def _cmd_notifications(self, args: argparse.Namespace) -> Report | None:
        skill = options.skill_id(args.skill) if args.skill else None
        model = self._feed_model(skill)
        if not self.use_widgets():
            return Report(model.text(), model.html())
        from lensbook.notebook.widgets import NotificationFeed

        NotificationFeed(skill, model=model, refresh_rate=self.refresh_rate).show()
        return None

    def _cmd_metrics(self, args: argparse.Namespace) -> Report | None:
        skill = options.skill_id(args.skill) if args.skill else None
        if not self.use_widgets():
            model = MetricsModel(skill)
            return Report(model.text(), model.html())
        from lensbook.notebook.widgets import MetricsView

        MetricsView(skill, refresh_rate=self.refresh_rate).show()
        return None

    def _cmd_history(self, args: argparse.Namespace) -> Any:
        import time

        from lensbook.notebook.history_view import HistoryReport
        from lensbook.recorder import history_events

        kinds = options.event_kinds(args.kinds)
        since = time.time() - args.since if args.since else None
        events = history_events(since=since, kinds=kinds, limit=args.limit)
        return HistoryReport(events, chart=not args.text)

    def _cmd_investigate(self, args: argparse.Namespace) -> Any:
        return _coordinator_commands.investigate(self, args)

    def _cmd_watch(self, args: argparse.Namespace) -> Any:
        return _coordinator_commands.watch_command(self, args)

    def _cmd_providers(self, args: argparse.Namespace) -> Any:
        from lensbook.clients import providers_report

        return providers_report()

    def _cmd_runs(self, args: argparse.Namespace) -> Any:
        table = lensbook.runs(args.directory)
        if table.empty:
            return Report(f"no recorded runs in {args.directory or 'the records folder'}")
        return table

    def _cmd_replay(self, args: argparse.Namespace) -> Any:
        from lensbook.records import RecordError

        try:
            record = lensbook.load_run(args.path)
        except (OSError, RecordError) as exc:
            raise UsageError(f"%lens replay: {exc}") from None
        try:
            outcome = lensbook.replay(record, tools=args.tools)
        except lensbook.LensbookError as exc:
            raise UsageError(f"%lens replay: {exc}") from None
        if self.use_widgets():
            from lensbook.notebook.run_view import show_run

            show_run(record)
        return Report(repr(outcome))

    def _cmd_postmortem(self, args: argparse.Namespace) -> Any:
        try:
            return options.postmortem_from(args)
        except (OSError, ValueError, lensbook.LensbookError) as exc:
            raise UsageError(f"%lens postmortem: {exc}") from None

    def _cmd_dashboard(self, args: argparse.Namespace) -> Report | None:
        ops = list(lensbook.operators().values())
        feed = self._feed_model(None)
        if not self.use_widgets():
            rows = [CardModel.of(op) for op in ops]
            metrics = MetricsModel()
            return Report(
                "\n\n".join([status_text(rows), feed.text(), metrics.text()]),
                status_html(rows) + feed.html() + metrics.html(),
            )
        from lensbook.notebook.widgets import Dashboard

        Dashboard(ops, feed=feed, refresh_rate=self.refresh_rate).show()
        return None


def _finish_card(card: OperatorCard, future: concurrent.futures.Future[CompletionResult]) -> None:
    from lensbook.notebook.widgets import in_current_cell

    in_current_cell(lambda: _finish_card_now(card, future))


def _finish_card_now(
    card: OperatorCard, future: concurrent.futures.Future[CompletionResult]
) -> None:
    if future.cancelled():
        card.finish(error="cancelled")
        return
    exc = future.exception()
    if exc is None:
        card.finish(future.result())
    elif isinstance(exc, lensbook.RunFailed) and exc.result is not None:
        card.finish(exc.result)
    else:
        card.finish(error=f"{type(exc).__name__}: {exc}")
