"""Waiting out a tracking store that went away, instead of spending the budget against it.

A trial or a final run that meets a tracking error is queued again (the configuration is not
at fault), but the next one would meet the same dead server a few seconds later: an outage of
a minute and a half used to burn every retry of five configurations. So a worker that meets
such an error first waits for the store to answer again, probing it with a growing pause
(2 s, doubling, at most 30 s between probes), and only then takes the next trial. A store
still down after the allowed wait stops the worker with one message: nothing further could be
recorded anyway, and what was recorded stays (the queued trials wait for the next run).
"""

from __future__ import annotations

import logging
import time

from bench import interrupt
from bench.errors import short_reason
from bench.stores import StoreAddress, mask

log = logging.getLogger("bench.outage")

FIRST_PAUSE_S = 2.0
LONGEST_PAUSE_S = 30.0
PROBE_TIMEOUT_S = 5.0


def probe(store: StoreAddress) -> str | None:
    """None when the store answers now; else why not, in a few words.

    A tracking server counts as up when ``/health`` answers without a server error (a 401 or
    404 from a front that guards it is an answer); a database store when it serves a query.
    """
    try:
        if store.is_http:
            import requests

            answer = requests.get(f"{store.connect().rstrip('/')}/health",
                                  timeout=PROBE_TIMEOUT_S, allow_redirects=False)
            if answer.status_code >= 500:   # a gateway whose server is down, or restarting
                return f"HTTP {answer.status_code}"
        else:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=store.connect()).search_experiments(max_results=1)
    except Exception as exc:
        return mask(short_reason(exc).split(" (")[0])
    return None


def wait_for(store: StoreAddress, limit_s: float) -> tuple[bool, float]:
    """Waits until ``store`` answers, for at most ``limit_s`` seconds.

    Returns whether it answered and the seconds waited. A stop signal (SIGTERM, Ctrl-C) ends
    the wait at once, as it would end a trial: :func:`bench.interrupt.check` raises.
    """
    start = time.monotonic()
    why = probe(store)
    if why is None:
        return True, 0.0
    log.warning("tracking store %s unreachable (%s); waiting up to %.0f s for it before the "
                "next run", store, why, limit_s)
    pause = FIRST_PAUSE_S
    while time.monotonic() - start < limit_s:
        until = min(time.monotonic() + pause, start + limit_s)
        while time.monotonic() < until:
            interrupt.check()
            time.sleep(min(0.5, max(0.0, until - time.monotonic())))
        why = probe(store)
        if why is None:
            waited = time.monotonic() - start
            log.warning("tracking store %s answers again after %.0f s", store, waited)
            return True, waited
        pause = min(pause * 2, LONGEST_PAUSE_S)
    log.error("tracking store %s still unreachable after %.0f s (%s)", store, limit_s, why)
    return False, time.monotonic() - start
