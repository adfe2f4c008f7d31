"""Holding a user's mapping against the keys and values it may contain, before any work.

Definitions and settings are merged onto defaults, and a merge takes any key: ``tunning:``
or ``tuning.n_trails=2`` lands beside the setting it meant to change and the default runs.
For a benchmark a silently ignored budget is a wrong result, so every mapping a user writes
is checked here first and the first mistake is refused in one message that names the key
path, where it was written (a file, an override, a function's keywords) and what was
expected, with the closest valid key when a key is unknown.

A schema is plain data: :class:`Keys` for a mapping with fixed keys, :class:`Each` for a
mapping of free names that share one schema (datasets, baselines), and a check function for
a single value. A check raises :class:`Invalid` saying what is wrong; :func:`check` adds the
key path and the source, so the checks themselves stay one line each. The values checked
are plain containers (``OmegaConf.to_container``), never config nodes.

Imports nothing heavy, so a bad setting is refused before torch or Lightning are loaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError, ConfigError


class Invalid(Exception):
    """What is wrong with a value, before its key path and source are known.

    ``key`` names the sub-key concerned when a check of a whole mapping finds the fault in
    one of its entries (a sampler's options belong to ``sampler_kwargs``, not to the
    mapping that holds them).
    """

    def __init__(self, what: str, expected: str = "", key: str = ""):
        super().__init__(what)
        self.what, self.expected, self.key = what, expected, key


Check = Callable[[Any], None]
# A fixed label, or one per key path when the value was merged from several sources and an
# error should point at the one that wrote the key.
Source = str | Callable[[str], str]


@dataclass(frozen=True)
class Keys:
    """A mapping whose keys are all optional but must be among ``fields``.

    ``whole`` checks keys that only make sense together (a sampler's options against that
    sampler); it is skipped for a partial mapping, such as one override, whose other keys
    come from elsewhere.
    """

    fields: Mapping[str, Any]
    nullable: bool = False
    whole: Check | None = None


@dataclass(frozen=True)
class Each:
    """A mapping of free names, each value held to ``item``; ``names``, when given, are the
    only names allowed."""

    item: Any
    nullable: bool = False
    names: tuple[str, ...] | None = None


def check(value: Any, schema: Any, *, path: str = "", source: Source = "",
          partial: bool = False, error: type[BenchError] = ConfigError) -> None:
    """Raises ``error`` for the first key or value that ``schema`` does not allow.

    ``partial``: ``value`` is one layer of what will be merged (an override), so checks of a
    mapping as a whole wait for the merged result; string interpolations (``${...}``) also
    wait, since only the merged config can resolve them.
    """
    def where(p: str) -> str:
        label = source(p) if callable(source) else source
        return f" in {label}" if label else ""

    def fail(p: str, what: str, expected: str = "") -> None:
        head = f"{p}: " if p else ""
        raise error(f"{head}{what}{where(p)}" + (f"; {expected}" if expected else ""))

    def walk(v: Any, s: Any, p: str) -> None:
        if partial and isinstance(v, str) and "${" in v:
            return
        if isinstance(s, Keys | Each):
            if v is None and s.nullable:
                return
            if not isinstance(v, Mapping):
                fail(p, f"{v!r} is not allowed", "expected a mapping of keys to values")
            names = s.fields if isinstance(s, Keys) else s.names
            for key in v:
                if names is not None and key not in names:
                    fail(join(p, key), "unknown key", suggest(key, names, p))
                walk(v[key], s.fields[key] if isinstance(s, Keys) else s.item, join(p, key))
            if isinstance(s, Keys) and s.whole is not None and not partial:
                try:
                    s.whole(v)
                except Invalid as exc:
                    fail(join(p, exc.key) if exc.key else p, exc.what, exc.expected)
            return
        try:
            s(v)
        except Invalid as exc:
            fail(join(p, exc.key) if exc.key else p, exc.what, exc.expected)

    walk(value, schema, path)


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def suggest(key: Any, allowed: Iterable[str], path: str = "") -> str:
    """``did you mean 'tuning'?`` for the closest allowed key, else the allowed keys."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{join(path, close[0])}'?"
    return f"expected one of {allowed}"


# ---------------------------------------------------------------------------------------------
# Value checks
# ---------------------------------------------------------------------------------------------


def _bad(value: Any, expected: str) -> Invalid:
    return Invalid(f"{value!r} is not allowed", f"expected {expected}")


def is_int(value: Any) -> bool:
    """YAML's ``true`` is a Python int too; a count or a seed never means it."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def anything(value: Any) -> None:
    return None


def integer(minimum: int | None = None) -> Check:
    expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")

    def check_(value: Any) -> None:
        if not is_int(value) or (minimum is not None and value < minimum):
            raise _bad(value, expected)
    return check_


def number(above: float | None = None) -> Check:
    expected = "a number" + (f" > {above}" if above is not None else "")

    def check_(value: Any) -> None:
        if not is_number(value) or (above is not None and value <= above):
            raise _bad(value, expected)
    return check_


def boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad(value, "true or false")


def text(nonempty: bool = False) -> Check:
    def check_(value: Any) -> None:
        if not isinstance(value, str) or (nonempty and not value.strip()):
            raise _bad(value, "a non-empty string" if nonempty else "a string")
    return check_


def one_of(choices: Iterable[Any]) -> Check:
    choices = list(choices)

    def check_(value: Any) -> None:
        if isinstance(value, bool) or value not in choices:
            raise _bad(value, f"one of {choices}")
    return check_


def optional(inner: Check) -> Check:
    """``inner``, or null."""
    def check_(value: Any) -> None:
        if value is not None:
            inner(value)
    return check_


def list_of(item: Check, *, nonempty: bool = False, distinct: bool = False,
            what: str = "") -> Check:
    """A list whose every item passes ``item``; ``what`` describes the list in messages."""
    def check_(value: Any) -> None:
        described = what or "a list"
        if not isinstance(value, list | tuple) or (nonempty and not value):
            raise _bad(value, f"a non-empty {described.removeprefix('a ')}" if nonempty
                       else described)
        for x in value:
            try:
                item(x)
            except Invalid as exc:
                raise Invalid(f"{x!r} in {list(value)!r} is not allowed", exc.expected) from None
        if distinct and len({repr(x) for x in value}) < len(value):
            raise _bad(list(value), f"{described} without repeats")
    return check_


def mapping_of(item: Check = anything) -> Check:
    """A mapping with string keys (names chosen by the user), each value passing ``item``."""
    def check_(value: Any) -> None:
        if not isinstance(value, Mapping):
            raise _bad(value, "a mapping of names to values")
        for k, v in value.items():
            if not isinstance(k, str):
                raise Invalid(f"key {k!r} is not allowed", "expected a string")
            try:
                item(v)
            except Invalid as exc:
                raise Invalid(exc.what, exc.expected, key=k) from None
    return check_


def either(*checks: Check, expected: str) -> Check:
    """Passes when any of ``checks`` does; ``expected`` says what all of them allow."""
    def check_(value: Any) -> None:
        for c in checks:
            try:
                c(value)
                return
            except Invalid:
                continue
        raise _bad(value, expected)
    return check_
