"""Passwords in store URLs: masked wherever a URL is written or shown, carried by the
environment, put back only where a connection is opened.

A store URL travels far: Hydra saves the command line and the composed config in every run
folder, MLflow records tags and the run's config, a sweep writes its settings into payload
files for its workers, and commands print hints to paste. All of them get the masked form
``postgresql://user:***@host/db``. The password itself lives in an environment variable,
which worker processes and SLURM jobs inherit, one per kind of store:

* an Optuna storage (``hydra.sweeper.storage``, a study's ``tuning.storage``):
  ``BENCH_STORAGE_PASSWORD``;
* a database-backed MLflow store (``tracking.uri=postgresql://...``):
  ``BENCH_TRACKING_PASSWORD``;
* an MLflow tracking server (``http(s)://``): MLflow's own ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD``, which MLflow sends with every request. MLflow itself is given
  the server's URL without any user, because it prints that URL for every finished run.

Where a URL names a user but no password, the variable supplies it; where neither is set,
PostgreSQL's own ``PGPASSWORD`` and ``~/.pgpass`` still apply. The environment holds the
plain password and a URL its percent-encoded form, so any character may occur in it.

This module imports nothing heavy: ``python -m bench`` masks its arguments with it before
Hydra saves them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from urllib.parse import quote, unquote

from bench.errors import ConfigError

MASK = "***"
STORAGE_ENV = "BENCH_STORAGE_PASSWORD"
TRACKING_ENV = "BENCH_TRACKING_PASSWORD"
MLFLOW_USER_ENV = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"

# scheme://user[:password]@rest, split at the last "@": the host part never contains one, a
# password written without percent-encoding may.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][\w+.-]*://)(?P<user>[^/:@\s]+)"
                  r"(?::(?P<pw>\S*))?@(?P<rest>[^@\s]*)$")
# a URL carrying a password anywhere in a command-line value (masked ones excepted)
_ANY_PASSWORD = re.compile(r"[A-Za-z][\w+.-]*://[^/:@\s]+:(?!\*\*\*@)[^@\s]+@")
_OVERRIDE = re.compile(r"^(?P<key>[^=\s]+)=(?P<value>.*)$", re.S)


def _compose(m: re.Match, password: str | None) -> str:
    userinfo = m["user"] if password is None else f"{m['user']}:{password}"
    return f"{m['scheme']}{userinfo}@{m['rest']}"


def _has_password(m: re.Match | None) -> bool:
    return m is not None and m["pw"] not in (None, "", MASK)


def hide(url: str, env: str) -> str:
    """The masked URL; a password found in ``url`` moves into ``env``."""
    m = _URL.match(url)
    if not _has_password(m):
        return url
    os.environ[env] = unquote(m["pw"])
    return _compose(m, MASK)


def reveal(url: str, env: str) -> str:
    """The connectable URL: a masked or missing password comes from ``env``.

    Without ``env`` the URL goes without a password, so that PostgreSQL's ``PGPASSWORD`` or
    ``~/.pgpass`` can still supply one. A URL without a user is left as it is.
    """
    m = _URL.match(url)
    if m is None or _has_password(m):
        return url
    password = os.environ.get(env)
    return _compose(m, quote(password, safe="") if password else None)


def shell_form(url: str, env: str) -> tuple[str, str]:
    """``url`` as an argument to paste into a shell, and a note for the reader (or "").

    Where :func:`reveal` would insert the password, the argument reads ``$env`` instead,
    double-quoted so that the shell expands it; the screen never shows the password.
    """
    m = _URL.match(url)
    if m is None:
        return url, ""
    if _has_password(m):
        return _compose(m, MASK), ""
    if os.environ.get(env):
        return f'"{_compose(m, "$" + env)}"', f"(with {env} set to the password)"
    return _compose(m, None), ""


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def hide_tracking(uri: str) -> str:
    """The masked MLflow URI; its password moves into the variable its kind of store uses."""
    m = _URL.match(uri)
    if not _has_password(m):
        return uri
    if not _is_http(uri):
        return hide(uri, TRACKING_ENV)
    os.environ[MLFLOW_USER_ENV] = unquote(m["user"])
    os.environ[MLFLOW_PASSWORD_ENV] = unquote(m["pw"])
    return _compose(m, MASK)


def reveal_tracking(uri: str) -> str:
    """The URI to give MLflow: a server's without user (the credentials go by MLflow's own
    variables), a database's with its password."""
    uri = hide_tracking(uri)
    m = _URL.match(uri)
    if m is None:
        return uri
    if _is_http(uri):
        os.environ[MLFLOW_USER_ENV] = unquote(m["user"])
        return m["scheme"] + m["rest"]
    return reveal(uri, TRACKING_ENV)


def tracking_shell_form(uri: str) -> tuple[str, str]:
    """:func:`shell_form` for an MLflow URI: a server's address without user (the browser
    asks for the login), a database's with ``$BENCH_TRACKING_PASSWORD``."""
    m = _URL.match(uri)
    if m is not None and _is_http(uri):
        return m["scheme"] + m["rest"], ""
    return shell_form(uri, TRACKING_ENV)


# Command-line keys whose password is read back from the environment when connecting.
_HIDERS: dict[str, Callable[[str], str]] = {
    "tracking.uri": hide_tracking,
    "hydra.sweeper.storage": lambda url: hide(url, STORAGE_ENV),
}


def mask_overrides(args: list[str]) -> list[str]:
    """Command-line overrides with every password in a URL masked, before Hydra saves them.

    Hydra writes the overrides and the composed config into the run folder (``.hydra/``)
    before any code of the run starts, so this is the last point at which a password given
    on the command line can be kept out of those files. Only the keys of :data:`_HIDERS`
    have a way back to their password; a password in any other value is refused, as it
    would either land in the files or be lost.
    """
    out = []
    for arg in args:
        m = _OVERRIDE.match(arg)
        if m is None or not _ANY_PASSWORD.search(m["value"]):
            out.append(arg)
            continue
        key, value = m["key"], m["value"]
        quoted = len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]
        url = value[1:-1] if quoted else value
        hider = _HIDERS.get(key.lstrip("+~"))
        if hider is None or not _has_password(_URL.match(url)):
            raise ConfigError(
                f"{key}: this value carries a password in a URL, which would be saved in "
                f"plain text; only {' and '.join(_HIDERS)} take one (it is masked before "
                "Hydra saves the command line). Elsewhere pass it through the environment "
                "(see docs/sweeps.md, 'Passwords')")
        hidden = hider(url)
        out.append(f"{key}={value[0]}{hidden}{value[0]}" if quoted else f"{key}={hidden}")
    return out
