"""Find a dataset file, or fetch it, and never hand a loader a file that is known bad.

Order of search for each file: ``<data_dir>/<subdir>/<name>`` then ``<data_dir>/<name>``,
for every accepted name in the order the dataset config lists them (so a copy placed by
hand, compressed or not, wins over a download). A file with a published checksum is
checked against it; a file this module downloaded gets a ``<name>.sha256`` record beside
it, so a later truncation or bit flip is caught even where nobody publishes a checksum.
A file that fails its check is moved aside (``<name>.corrupt``) and fetched again, unless
its source says ``on_mismatch: validate``: a file that is re-published with new bytes for
the same content (Yahoo re-adjusts past prices) is then used when the loader's checks of
its schema, rows and dates pass, with a warning naming both checksums.

Downloads stream to a temporary file in the target folder and are renamed into place
only once complete and verified, so an interrupted download never looks like a file.
Offline (``BENCH_OFFLINE=1``, or the network fails) with nothing usable on disk, the
loader stops with one message naming the files, where to put them and the URLs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.data.base import ConfigError, DataError
from bench.errors import short_reason

ENV_OFFLINE = "BENCH_OFFLINE"
ENV_CACHE = "BENCH_CACHE_DIR"
CHUNK = 1 << 20
T = TypeVar("T")
ON_MISMATCH = ("refuse", "validate")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One accepted form of a file: its name on disk, where to get it, how to check it."""

    name: str
    url: str | None = None
    mirrors: tuple[str, ...] = ()
    md5: str | None = None
    sha256: str | None = None
    member: str | None = None  # the CSV inside a zip archive
    is_dir: bool = False  # an extracted folder (e.g. aclImdb/) instead of an archive
    on_mismatch: str = "refuse"  # refuse | validate: see the module's docstring

    @classmethod
    def from_cfg(cls, d: Mapping, key: str = "sources") -> Source:
        if isinstance(d, str):
            return cls(name=d)
        if not d.get("name"):
            raise ConfigError(f"dataset.{key}: every entry needs a 'name' (the file name on disk)")
        return cls(
            name=str(d["name"]),
            url=d.get("url"),
            mirrors=tuple(d.get("mirrors") or ()),
            md5=(d.get("md5") or None) and str(d["md5"]).lower(),
            sha256=(d.get("sha256") or None) and str(d["sha256"]).lower(),
            member=d.get("member"),
            is_dir=bool(d.get("is_dir", False)),
            on_mismatch=_on_mismatch(d.get("on_mismatch", "refuse"), key),
        )

    @property
    def urls(self) -> tuple[str, ...]:
        return ((self.url,) if self.url else ()) + self.mirrors


def _on_mismatch(value, key: str) -> str:
    if value not in ON_MISMATCH:
        raise ConfigError(f"dataset.{key}[].on_mismatch: {value!r}; expected one of "
                          f"{list(ON_MISMATCH)}")
    return value


def sources_from_cfg(items: Iterable, key: str) -> list[Source]:
    out = [Source.from_cfg(d, key) for d in (items or [])]
    if not out:
        raise ConfigError(f"dataset.{key}: empty; expected at least one accepted file")
    return out


@dataclass
class Located:
    path: Path
    source: Source
    status: str  # human-readable checksum status, shown by `python -m bench.data list`
    verified: bool  # a checksum (published or recorded at download) matched
    downloaded: bool = False
    mismatch: str | None = None  # the checksum status of a file kept for validation


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(path: Path, source: Source) -> tuple[bool | None, str]:
    """``(True|False, status)`` when something could be checked, ``(None, status)`` when not."""
    if source.is_dir or path.is_dir():
        return None, "folder (counts checked on load)"
    for algo, want in (("sha256", source.sha256), ("md5", source.md5)):
        if want:
            got = digest(path, algo)
            if got == want:
                return True, f"{algo} ok"
            return False, f"{algo} mismatch: expected {want}, got {got}"
    rec = _record_path(path)
    if rec.exists():
        want = rec.read_text().split()[0] if rec.read_text().strip() else ""
        got = digest(path, "sha256")
        if got == want:
            return True, "sha256 recorded at download ok"
        return False, f"sha256 recorded at download mismatch: expected {want}, got {got}"
    return None, "no checksum published (validated on load)"


def candidates(data_dir: Path, subdir: str | None, name: str) -> list[Path]:
    out = [data_dir / subdir / name] if subdir else []
    return out + [data_dir / name]


def locate(
    sources: list[Source], data_dir: Path, subdir: str | None
) -> tuple[Located | None, list[tuple[Path, Source, str]]]:
    """The first usable file, and every file found that failed its checksum."""
    bad: list[tuple[Path, Source, str]] = []
    for src in sources:
        for path in candidates(data_dir, subdir, src.name):
            if not (path.is_dir() if src.is_dir else path.is_file()):
                continue
            ok, status = verify(path, src)
            if ok is False and src.on_mismatch == "validate":
                return Located(path, src, f"{status} (used if its contents check)",
                               verified=False, mismatch=status), bad
            if ok is False:
                bad.append((path, src, status))
                continue
            return Located(path, src, status, verified=bool(ok)), bad
    return None, bad


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def missing_message(label: str, sources: list[Source], data_dir: Path, subdir: str | None,
                    reason: str = "") -> str:
    where = data_dir / subdir if subdir else data_dir
    names = " or ".join(f"'{s.name}'" + (" (folder)" if s.is_dir else "") for s in sources)
    urls = [u for s in sources for u in s.urls]
    lines = [
        f"{label}: no usable copy found. Expected {names} in {where}/ (or {data_dir}/).",
        "Place the file there by hand, or set BENCH_DATA_DIR (or data_dir=...) to the folder "
        "that holds it.",
    ]
    if urls:
        lines.append("Download it from: " + " | ".join(urls))
    if reason:
        lines.append(f"Automatic download failed: {reason}")
    return "\n".join(lines)


def _progress():
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def download(url: str, dest: Path, source: Source, timeout: float = 30.0) -> None:
    """Streams ``url`` to ``dest`` atomically; raises DataError on any failure or bad checksum."""
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    hashes = {a: hashlib.new(a) for a in ("md5", "sha256")}
    try:
        with requests.get(url, stream=True, timeout=(10, timeout)) as r:
            r.raise_for_status()
            total = int(r.headers.get("content-length") or 0) or None
            with _progress() as bar, open(tmp, "wb") as f:
                task = bar.add_task(f"downloading {dest.name}", total=total)
                for chunk in r.iter_content(CHUNK):
                    f.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    bar.advance(task, len(chunk))
            if total is not None and tmp.stat().st_size != total:
                raise DataError(
                    f"{url}: download ended after {tmp.stat().st_size} of {total} bytes"
                )
        for algo, want in (("sha256", source.sha256), ("md5", source.md5)):
            if want and hashes[algo].hexdigest() != want:
                raise DataError(
                    f"{url}: checksum mismatch for {dest.name}: {algo} expected {want}, "
                    f"got {hashes[algo].hexdigest()}; the download is corrupt or the file changed"
                )
        os.replace(tmp, dest)
    except requests.RequestException as e:
        raise DataError(f"{url}: download failed: {short_reason(e)}") from e
    finally:
        if tmp.exists():
            tmp.unlink()
    _record_path(dest).write_text(f"{hashes['sha256'].hexdigest()}  {dest.name}\n")


def _set_aside(path: Path) -> None:
    try:
        os.replace(path, path.with_name(path.name + ".corrupt"))
        _record_path(path).unlink(missing_ok=True)
    except OSError:
        pass


def fetch(label: str, sources: list[Source], data_dir: Path, subdir: str | None,
          replace: Path | None = None) -> Located:
    """Downloads the first source that has a URL; raises the 'where to put it' DataError."""
    remote = [s for s in sources if s.urls]
    if not remote:
        raise DataError(missing_message(label, sources, data_dir, subdir, "no download URL known"))
    if offline():
        raise DataError(missing_message(label, sources, data_dir, subdir,
                                        f"{ENV_OFFLINE} is set, not trying the network"))
    src = remote[0]
    folder = replace.parent if replace is not None and _writable_dir(replace.parent) else (
        data_dir / subdir if subdir else data_dir
    )
    if not _writable_dir(folder):
        raise DataError(missing_message(
            label, sources, data_dir, subdir, f"the folder {folder} is not writable"))
    dest = folder / src.name
    errors = []
    for url in src.urls:
        try:
            download(url, dest, src)
            status = "sha256 ok" if src.sha256 else "md5 ok" if src.md5 else "downloaded"
            return Located(dest, src, status, verified=bool(src.sha256 or src.md5),
                           downloaded=True)
        except DataError as e:
            errors.append(str(e))
    raise DataError(missing_message(label, sources, data_dir, subdir, "; ".join(errors)))


def ensure(label: str, sources: list[Source], data_dir: Path, subdir: str | None) -> Located:
    """A usable copy of one file: found and verified, else (re-)downloaded."""
    found, bad = locate(sources, data_dir, subdir)
    if found is not None:
        return found
    if bad:
        path, _, status = bad[0]
        try:
            for p, _, _ in bad:
                if os.access(p.parent, os.W_OK):
                    _set_aside(p)
            return fetch(label, sources, data_dir, subdir, replace=path)
        except DataError as e:
            raise DataError(
                f"{path}: {status}. The file is corrupt or not the expected version; delete it "
                f"and place a good copy there.\n{e}"
            ) from e
    return fetch(label, sources, data_dir, subdir)


def load_verified(
    label: str, sources: list[Source], data_dir: Path, subdir: str | None,
    parse: Callable[[Located], T],
) -> tuple[T, Located]:
    """``parse(ensure(...))``; an unverified file that fails to parse is re-fetched once.

    Only files whose integrity no checksum vouches for are re-fetched: when a checksum
    matched, a parse failure is a real problem (or a config mistake) and is reported.
    """
    loc = ensure(label, sources, data_dir, subdir)
    if loc.mismatch:
        return _parse_mismatched(loc, parse), loc
    try:
        return parse(loc), loc
    except DataError:
        if loc.downloaded:  # never keep a download that fails validation
            _set_aside(loc.path)
            raise
        if loc.verified or loc.source.is_dir or not loc.source.urls or offline():
            raise
        if not os.access(loc.path.parent, os.W_OK):
            raise
        bad = loc.path
        _set_aside(bad)
        loc = fetch(label, sources, data_dir, subdir, replace=bad)
    try:
        return parse(loc), loc
    except DataError:
        _set_aside(loc.path)
        raise


def _parse_mismatched(loc: Located, parse: Callable[[Located], T]) -> T:
    """A file whose checksum differs from the reference's, used only if its contents check."""
    try:
        value = parse(loc)
    except DataError as e:
        raise DataError(
            f"{loc.path}: {loc.mismatch}, and its contents differ from the reference's too: "
            f"{e}\nTo train on this file as it is, use it as any CSV series: python -m bench "
            f"dataset=csv dataset.path={loc.path} dataset.target=<column> "
            "dataset.date_column=<column> (see conf/dataset/csv.yaml)") from e
    log.warning("%s: %s; its columns, rows and dates match the reference's, so it is used "
                "(values may differ slightly: the source re-publishes adjusted prices)",
                loc.path, loc.mismatch)
    return value


# ---------------------------------------------------------------- preprocessing cache


def cache_dir(data_dir: Path) -> Path:
    """Where derived arrays go: ``BENCH_CACHE_DIR``, else ``<data_dir>/cache`` when writable,
    else ``~/.cache/bench/cache`` (a read-only shared data folder still gets a cache)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    own = data_dir / "cache"
    if _writable_dir(own):
        return own
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bench" / "cache"
    return base


def source_fingerprint(path: Path) -> dict:
    """Identifies the bytes a cache was built from without hashing a big file each time:
    a changed size or modification time (a new download, an edit) changes the key."""
    st = path.stat()
    if path.is_dir():
        return {"path": str(path.resolve()), "mtime_ns": st.st_mtime_ns}
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(params: Mapping) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
