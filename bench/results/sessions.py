"""Every session of the record ends: one cut off by a kill is closed as interrupted.

A session the process could not close (SIGKILL, a machine lost) stays ``RUNNING`` in MLflow
with no end time, so the study's wall time cannot be counted and a reader cannot tell a
session still in progress from a dead one. The record's reader closes it at its last heartbeat:
the ``session/heartbeat_ms`` metric the runner logs after every cell, or, for sessions recorded
before the runner logged one, the latest end of a run the session made (same commit, one of the
datasets its command names, started after it and before the next session of the same command).
Its status becomes ``INTERRUPTED`` and ``end_source`` says where the end time came from.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

INTERRUPTED = "INTERRUPTED"
HEARTBEAT = "metric:session/heartbeat_ms"
WORK_KINDS = ("tune", "final", "baseline", "trial")


def _datasets(command: object) -> set[str] | None:
    m = re.search(r"--datasets[ =](\S+)", command) if isinstance(command, str) else None
    return set(m.group(1).split(",")) if m else None


def last_heartbeat(session: pd.Series, sessions: pd.DataFrame, rows: pd.DataFrame) -> float:
    """The last moment the record shows ``session`` alive (ms since the epoch)."""
    hb = session.get(HEARTBEAT)
    if hb is not None and pd.notna(hb):
        return float(hb)
    if pd.isna(session.get("start_ms")):
        return math.nan
    start = float(session["start_ms"])
    later = sessions[(sessions["start_ms"] > start)
                     & (sessions["command"].fillna("") == (session.get("command") or ""))]
    until = float(later["start_ms"].min()) if len(later) else math.inf
    work = rows[rows["kind"].isin(WORK_KINDS) & (rows["start_ms"] >= start)
                & (rows["start_ms"] < until)]
    if isinstance(session.get("git_sha"), str) and session["git_sha"]:
        work = work[work["git_sha"].fillna("") == session["git_sha"]]
    names = _datasets(session.get("command"))
    if names is not None:
        work = work[work["dataset"].isin(names)]
    ends = pd.concat([work["end_ms"], work["start_ms"]]).dropna().to_numpy(float)
    # a run left open is closed by the next session, at its start or later: not a beat of this one
    return float(min(np.max(ends), until)) if len(ends) else start


def _silent_through_a_sitting(rows: pd.DataFrame, i, sessions: pd.DataFrame) -> bool:
    """Whether a later sitting of the same command began after session ``i``'s last heartbeat
    and ended, with no beat of ``i`` in between: a runner beats after every cell, so one silent
    through a whole later sitting is gone, whoever writes the record and whenever."""
    hb = last_heartbeat(rows.loc[i], sessions, rows)
    if math.isnan(hb):
        return False
    command = rows.loc[i, "command"] if isinstance(rows.loc[i, "command"], str) else ""
    later = sessions[(sessions["command"].fillna("") == command) & (sessions["start_ms"] >= hb)
                     & sessions["end_ms"].notna()]
    return len(later) > 0


def close_interrupted(rows: pd.DataFrame, *, superseded_only: bool = False) -> pd.DataFrame:
    """The record with every session that has no end time closed at its last heartbeat.

    ``superseded_only`` closes only those silent through a whole later sitting: what a record
    written while the study may still run can say for certain (a report closes them all)."""
    if "kind" not in rows.columns:
        return rows
    is_session = rows["kind"] == "session"
    open_ = is_session & rows["end_ms"].isna()
    if superseded_only and open_.any():
        sessions = rows[is_session]
        open_ &= pd.Series({i: _silent_through_a_sitting(rows, i, sessions)
                            for i in rows.index[open_]}, dtype=bool).reindex(rows.index,
                                                                             fill_value=False)
    if not open_.any():
        return rows
    out = rows.copy()
    out["end_ms"] = out["end_ms"].astype(float)
    if "end_source" not in out.columns:
        out["end_source"] = pd.Series(pd.NA, index=out.index, dtype=object)
    sessions = out[is_session]
    for i in out.index[open_]:
        out.loc[i, "end_ms"] = last_heartbeat(out.loc[i], sessions, out)
        out.loc[i, "status"] = INTERRUPTED
        out.loc[i, "end_source"] = "last heartbeat"
    return out
