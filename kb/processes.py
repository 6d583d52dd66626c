"""The long-running processes: ``kb bot``, ``kb daemon`` and ``kb up`` (both at once)."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping

from kb import wiring
from kb.daemon import Daemon
from kb.runtime import Runtime, open_runtime
from kb.settings import Settings
from store.cache import AnswerCache
from store.metrics import series
from store.outage import QuietWhileUnreachable
from sync.freshness import CacheInvalidator, apply_forever
from sync.webhook_worker import WebhookWorker
from sync.webhooks import build_webhook_app, security_warning, serve_webhooks

log = logging.getLogger(__name__)


def run_bot(settings: Settings) -> int:
    from bot.host import serve
    from kb.chat_wiring import build_chat

    settings.require_chat()
    _interrupt_on_signals("kb bot")
    check_chat_credentials(settings)  # before the slow start-up: a refused token is one line
    try:
        with open_runtime(settings) as runtime:
            quiet_while_store_down(runtime)
            flow = wiring.build_flow(settings, runtime.db, runtime.embedder, runtime.cache)
            serve(build_chat(settings, flow, runtime.db), runtime.db, port=settings.port)
    except KeyboardInterrupt:
        pass  # SIGTERM or Ctrl-C: serve() closed the mounts (bounded, bot.draining)
    log.info("kb bot stopped")
    _exit_without_stuck_workers()
    return 0


def check_chat_credentials(settings: Settings) -> None:
    """Slack's ``auth.test`` with the bot token: raises a one-line error (bot/slack/app.py)."""
    if settings.slack_bot_token is not None:
        from bot.slack.app import check_slack_token

        check_slack_token(settings.slack_bot_token, settings.slack_api_url)


def quiet_while_store_down(runtime: Runtime) -> None:
    """While the store is unreachable, its probe's one line (store/outage.py) stands for the
    tracebacks and pool warnings the outage causes in every part of the process."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietWhileUnreachable(runtime.db.probe))
    # The pool warns once per connection it drops or fails to open; the probe's line says it.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def _interrupt_on_signals(process: str) -> None:
    """SIGTERM stops ``process`` the way Ctrl-C does: what runs is interrupted and every
    ``finally`` runs (answers finished or handed back, the embedded Postgres released). A second
    signal while stopping is ignored, so it cannot cut that short; SIGKILL still works."""

    def handle(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log.info("%s stopping (signal %d)", process, signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _exit_without_stuck_workers() -> None:
    """An answer still stuck after the grace (a hung model call) would hold the interpreter's
    exit, which joins every worker thread, until the platform's SIGKILL orphans the embedded
    Postgres. Run the exit hooks (they release it) and leave without joining."""
    stuck = [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
    if not stuck:
        return
    log.warning("leaving %d stuck worker thread(s) behind", len(stuck))
    logging.shutdown()
    atexit._run_exitfuncs()
    os._exit(0)


def cache_metrics(cache: AnswerCache, invalidator: CacheInvalidator) -> dict[str, float]:
    """The answer cache's counters as Prometheus series."""
    stats = cache.stats()
    samples: dict[str, float] = {
        series("kb_answer_cache_hits_total", kind="exact"): stats.get("hits_exact", 0),
        series("kb_answer_cache_hits_total", kind="nearest"): stats.get("hits_nearest", 0),
        "kb_answers_dirtied_total": stats.get("dirtied", 0),
        "kb_answers_evicted_total": stats.get("evictions", 0),
        "kb_answer_cache_units": stats.get("units", 0),
        "kb_answer_cache_bytes": stats.get("bytes", 0),
        "kb_answers_dirtied_by_this_daemon_total": invalidator.dirtied,
    }
    for key, value in stats.items():
        if key.startswith("miss_"):
            samples[series("kb_answer_cache_misses_total", gate=key[5:])] = value
    return samples


def run_daemon(settings: Settings) -> int:
    # Before any start-up work: a SIGTERM while the embedded Postgres starts or migrations run
    # unwinds the start-up (releasing the server) instead of killing the process mid-way;
    # _serve_daemon replaces the handler by the stop event once every part is built.
    _interrupt_on_signals("kb daemon")
    try:
        # The listener's 8 threads, the worker, the scheduler, requests and delivery share
        # the pool.
        with open_runtime(settings, pool_size=16, connectors=True) as runtime:
            return _serve_daemon(runtime)
    except KeyboardInterrupt:
        log.info("kb daemon stopped during start-up")
        return 0


def _serve_daemon(runtime: Runtime) -> int:
    from bot.outage import StoreOutageWatch
    from bot.outbox import OutboxDeliverer
    from kb.chat_wiring import build_delivery_platforms, close_platforms

    settings, db, cache = runtime.settings, runtime.db, runtime.cache
    invalidator, connectors = runtime.invalidator, runtime.connectors
    engine = runtime.engine()
    quiet_while_store_down(runtime)
    platforms = build_delivery_platforms(settings, db)
    ops_platform = "slack" if "slack" in platforms else "teams"
    deliverer = None
    # The one alert of a store outage goes straight to the ops channel (bot/outage.py).
    outage = StoreOutageWatch(db, platforms.get(ops_platform), settings.ops_channel)
    if platforms:
        deliverer = OutboxDeliverer(db, platforms, settings.ops_channel, ops_platform=ops_platform)
    else:
        log.warning("no chat platform configured: notices and ops alerts stay in the outbox")
    warning = security_warning(settings.webhook_secret, settings.webhook_port)
    if warning:
        log.warning("%s", warning)
    if not connectors:
        keys = " / ".join(spec.enabled_by for spec in settings.sources)
        log.warning("no source configured (%s): nothing to sync", keys)
    worker = WebhookWorker(db, engine, connectors)

    def extra_metrics() -> Mapping[str, float]:
        return cache_metrics(cache, invalidator)

    def apply_changes(stop: threading.Event) -> None:
        apply_forever(invalidator, stop)

    app = build_webhook_app(
        settings.webhook_secret,
        db,
        extra_metrics=extra_metrics,
        on_stored=worker.wake,
        sources=settings.sources,
    )
    server = serve_webhooks(app, "0.0.0.0", settings.webhook_port)
    daemon = Daemon(
        db=db,
        engine=engine,
        connectors=connectors,
        sync_every_minutes=settings.sync_every_minutes,
        cache=cache,
        deliverer=deliverer,
        background=[worker.run_forever, apply_changes, outage.run_forever],
    )
    _stop_on_signals(daemon.stop, worker.wake)
    server.start()
    log.info("webhook listener on port %d", settings.webhook_port)
    try:
        daemon.run()
    finally:
        server.close()
        close_platforms(platforms)
    return 0


def _stop_on_signals(stop: threading.Event, *wakers: object) -> None:
    def handle(signum: int, frame: object) -> None:
        stop.set()
        for wake in wakers:
            if callable(wake):
                wake()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run_up(settings: Settings) -> int:
    """``kb bot`` and ``kb daemon`` as two child processes sharing one embedded Postgres."""
    settings.require_chat()
    # Start the embedded server once here, so both children join it instead of racing.
    if settings.database_url is None:
        wiring.database_url(settings)
    names = ("daemon", "bot")
    children = [
        subprocess.Popen([sys.executable, "-m", "kb.cli", name], env=os.environ.copy())
        for name in names
    ]
    stop = threading.Event()
    _stop_on_signals(stop)
    code = 0
    while not stop.wait(0.5):
        exited = [(n, c) for n, c in zip(names, children, strict=True) if c.poll() is not None]
        if exited:
            name, child = exited[0]
            code = child.returncode or 1
            log.error("kb %s exited (%s); stopping the other", name, code)
            break
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    return code
