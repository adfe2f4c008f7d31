"""Store addresses: where runs (MLflow) and trials (Optuna) are kept, resolved once.

An address enters at one of three doors: the command line, a config value, or the environment.
It is resolved there, once, into a :class:`StoreAddress`, which then travels: into configs and
payload files for worker processes, MLflow tags, log lines and hints to paste. Everything it
prints is the masked form (``postgresql://user:***@host/db``); only :meth:`StoreAddress.connect`,
called by the code that opens a connection, puts the password back. That makes the rules below
(defaults, absolute SQLite paths, drivers, passwords) one object's business instead of helpers
that every caller has to remember to chain.

Rules, applied once at resolution:

* MLflow: the given URI, else ``$MLFLOW_TRACKING_URI`` (read in this module only), else the
  config's default (``sqlite:///mlflow.db``, or a local server for ``tracking=server``).
* Optuna: the given URL, else an SQLite file ``optuna.db`` in the launch directory.
* A relative SQLite path is made absolute against the directory the user launched from, so
  workers and jobs with another working directory (Hydra job folders, SLURM nodes) open the
  very same file.
* ``postgresql://`` falls back to the psycopg2 driver where psycopg 3 is not installed.

Passwords: the password itself lives in an environment variable, which worker processes and
SLURM jobs inherit (the address also keeps it privately for its own process), one per kind of
store:

* an Optuna storage (``hydra.sweeper.storage``, a study's ``tuning.storage``):
  ``BENCH_STORAGE_PASSWORD``;
* a database-backed MLflow store (``tracking.uri=postgresql://...``):
  ``BENCH_TRACKING_PASSWORD``;
* an MLflow tracking server (``http(s)://``): MLflow's own ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD``, which MLflow sends with every request. MLflow itself is given
  the server's URL without any user, because it prints that URL for every finished run.

Where a URL names a user but no password, the variable supplies it; where neither is set,
PostgreSQL's own ``PGPASSWORD`` and ``~/.pgpass`` still apply. The environment holds the plain
password and a URL its percent-encoded form, so any character may occur in it.

This module imports nothing heavy: ``python -m bench`` masks its arguments with it before Hydra
saves them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeGuard
from urllib.parse import quote, unquote

from bench.errors import ConfigError

Kind = Literal["tracking", "optuna"]

MASK = "***"
STORAGE_ENV = "BENCH_STORAGE_PASSWORD"
TRACKING_ENV = "BENCH_TRACKING_PASSWORD"
MLFLOW_USER_ENV = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_TRACKING = "sqlite:///mlflow.db"
DEFAULT_OPTUNA_FILE = "optuna.db"

# scheme://user[:password]@rest, split at the last "@": the host part never contains one, a
# password written without percent-encoding may.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][\w+.-]*://)(?P<user>[^/:@\s]+)"
                  r"(?::(?P<pw>\S*))?@(?P<rest>[^@\s]*)$")
# a URL carrying a password anywhere in a command-line value (masked ones excepted)
_ANY_PASSWORD = re.compile(r"[A-Za-z][\w+.-]*://[^/:@\s]+:(?!\*\*\*@)[^@\s]+@")
_OVERRIDE = re.compile(r"^(?P<key>[^=\s]+)=(?P<value>.*)$", re.S)


# --------------------------------------------------------------------------- the address


class StoreAddress:
    """One store's address: printed masked, connectable only through :meth:`connect`.

    Build it with :meth:`tracking` or :meth:`optuna` where an address enters; hand the object
    on. Passing an address through a process boundary (a config, a JSON payload) sends
    ``str(address)``, the masked URL, and the receiving side wraps it again: a resolved URL
    resolves to itself.
    """

    __slots__ = ("_secret", "kind", "url")

    def __init__(self, url: str, kind: Kind, secret: str | None = None):
        self.url = url            # resolved and masked: the form that travels
        self.kind = kind
        self._secret = secret     # the plain password, for this process's own connections

    # -- doors in
    @classmethod
    def tracking(cls, uri: str | StoreAddress | None = None, *,
                 default: str | None = None) -> StoreAddress:
        """The MLflow store: ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``default`` (else
        ``sqlite:///mlflow.db``)."""
        if isinstance(uri, StoreAddress):
            return uri
        raw = str(uri or os.environ.get(TRACKING_URI_ENV) or default or DEFAULT_TRACKING)
        raw = absolute_sqlite(postgres_driver(raw))
        m = _URL.match(raw)
        if not _has_password(m):
            return cls(raw, "tracking")
        secret = unquote(m["pw"])
        if _is_http(raw):
            os.environ[MLFLOW_USER_ENV] = unquote(m["user"])
            os.environ[MLFLOW_PASSWORD_ENV] = secret
        else:
            os.environ[TRACKING_ENV] = secret
        return cls(_compose(m, MASK), "tracking", secret)

    @classmethod
    def optuna(cls, url: str | StoreAddress | None = None) -> StoreAddress:
        """The Optuna storage: ``url``, else an SQLite file ``optuna.db`` where the user
        launched."""
        if isinstance(url, StoreAddress):
            return url
        if not url:
            return cls(f"sqlite:///{(launch_dir() / DEFAULT_OPTUNA_FILE).resolve()}", "optuna")
        raw = absolute_sqlite(postgres_driver(str(url)))
        m = _URL.match(raw)
        if not _has_password(m):
            return cls(raw, "optuna")
        secret = unquote(m["pw"])
        os.environ[STORAGE_ENV] = secret
        return cls(_compose(m, MASK), "optuna", secret)

    # -- what it shows
    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"StoreAddress({self.url!r}, {self.kind!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, StoreAddress) and other.kind == self.kind
                and other.url == self.url)

    def __hash__(self) -> int:
        return hash((self.kind, self.url))

    @property
    def is_http(self) -> bool:
        return _is_http(self.url)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite:")

    @property
    def sqlite_file(self) -> Path | None:
        return sqlite_file(self.url)

    def shell_form(self) -> tuple[str, str]:
        """The address as an argument to paste into a shell, and a note for the reader (or "").

        A server's address goes without its user (the browser asks for the login); where
        :meth:`connect` would insert a password, the argument reads ``$VARIABLE`` instead,
        double-quoted so that the shell expands it: the screen never shows the password.
        """
        m = _URL.match(self.url)
        if m is None:
            return self.url, ""
        if self.is_http:
            return m["scheme"] + m["rest"], ""
        env = self._env()
        if _has_password(m):
            return _compose(m, MASK), ""
        if os.environ.get(env):
            return f'"{_compose(m, "$" + env)}"', f"(with {env} set to the password)"
        return _compose(m, None), ""

    # -- the way out
    def connect(self) -> str:
        """The URL to open a connection with: the password put back (this address's own, else
        its environment variable, else none for libpq's ``PGPASSWORD``/``~/.pgpass``); a
        tracking server's without its user (MLflow sends the credentials itself)."""
        m = _URL.match(self.url)
        if m is None:
            return self.url
        if self.is_http and self.kind == "tracking":
            if self._secret is not None:
                os.environ[MLFLOW_PASSWORD_ENV] = self._secret
            os.environ[MLFLOW_USER_ENV] = unquote(m["user"])
            return m["scheme"] + m["rest"]
        if _has_password(m):
            return self.url
        password = self._secret or os.environ.get(self._env())
        return _compose(m, quote(password, safe="") if password else None)

    def _env(self) -> str:
        return TRACKING_ENV if self.kind == "tracking" else STORAGE_ENV


# --------------------------------------------------------------------------- the rules


def launch_dir() -> Path:
    """The directory the user launched from (Hydra's original cwd when inside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.cwd)
    except (ImportError, ValueError):
        pass
    return Path.cwd()


def absolute_sqlite(url: str) -> str:
    """``sqlite:///relative.db`` made absolute against the launch directory; others as given."""
    m = re.match(r"^sqlite:///(.*)$", url)
    if m and m.group(1) and not m.group(1).startswith("/") and m.group(1) != ":memory:":
        return f"sqlite:///{(launch_dir() / m.group(1)).resolve()}"
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of an absolute ``sqlite:///`` URL; None for any other store."""
    m = re.match(r"^sqlite:///(/.+)$", str(url))
    return Path(m.group(1)) if m else None


def postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; fall back to psycopg2 if that
    is the driver installed (the ``postgres`` extra), so plain URLs keep working."""
    m = re.match(r"^postgres(?:ql)?://", url)
    if not m:
        return url
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "postgresql+psycopg2://" + url[m.end():]
    return url


def mask(text: object) -> str:
    """Any text (a traceback, a config dump, a command) with the passwords of its URLs
    hidden, such as ``postgresql://user:secret@host/db``."""
    return re.sub(r"(://[^/:@\s]+:)[^@\s]+@", r"\1***@", str(text))


@contextlib.contextmanager
def schema_lock(path: Path | None, timeout: float = 300.0) -> Iterator[None]:
    """Held while a process opens an SQLite file whose schema it may have to create.

    Several workers or sweeps started together on a fresh file otherwise all create the
    tables (``duplicate column name``, ``UNIQUE constraint failed: alembic_version``).
    The lock lives beside the file (``<file>.init.lock``), so it holds across processes
    and is released by the system when its holder dies. A folder where no lock can be made
    (read-only, missing) gets none: nobody can create a schema there either, and opening
    the store then reports the real problem.
    """
    if path is None or not path.parent.is_dir():  # filelock would create the folder
        yield
        return
    from filelock import FileLock

    lock = FileLock(path.with_name(path.name + ".init.lock"))
    try:
        lock.acquire(timeout=timeout)
        held = True
    except OSError:  # includes filelock's Timeout: a holder stuck that long is not creating
        held = False
    try:
        yield
    finally:
        if held:
            lock.release()


def password_refusal(key: str, url: object, variable: str) -> ConfigError | None:
    """The error for a password written into a file (a config, a study definition): the file
    is copied into every run folder or committed, so the secret would spread in plain text.
    On the command line the same URL is accepted: it is masked before anything is saved."""
    raw = str(url or "")
    if not _has_password(_URL.match(postgres_driver(raw))):
        return None
    if _is_http(raw):
        variable = MLFLOW_PASSWORD_ENV  # MLflow's own, for a server behind basic auth
    return ConfigError(
        f"{key}: a password written in a file is not supported (files are copied into run "
        f"folders or committed); name only the user in the URL and put the password in "
        f"${variable}, or give the URL on the command line (see docs/sweeps.md, 'Passwords')")


# --------------------------------------------------------------------------- command line


def _compose(m: re.Match[str], password: str | None) -> str:
    userinfo = m["user"] if password is None else f"{m['user']}:{password}"
    return f"{m['scheme']}{userinfo}@{m['rest']}"


def _has_password(m: re.Match[str] | None) -> TypeGuard[re.Match[str]]:
    return m is not None and m["pw"] not in (None, "", MASK)


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


# Command-line keys whose password is read back from the environment when connecting.
_HIDERS: dict[str, Callable[[str], StoreAddress]] = {
    "tracking.uri": StoreAddress.tracking,
    "hydra.sweeper.storage": StoreAddress.optuna,
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
        hidden = _hide_only(url, hider)
        out.append(f"{key}={value[0]}{hidden}{value[0]}" if quoted else f"{key}={hidden}")
    return out


def _hide_only(url: str, hider: Callable[[str], StoreAddress]) -> str:
    """The URL as written with its password masked (and moved into the environment), without
    the other resolution rules: the command line keeps what the user wrote, the run resolves
    it when it starts."""
    m = _URL.match(url)
    if m is None:
        raise ConfigError(f"not a URL of the form scheme://user:password@host: {mask(url)}")
    hider(url)  # moves the password into its variable
    return _compose(m, MASK)
