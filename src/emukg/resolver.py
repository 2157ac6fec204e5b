"""One resolver for every component looked up by name: models, losses, negative samplers, schedules, trackers.

A :class:`Registry` maps canonical names to components.  :meth:`Registry.get` (and :func:`choose` for a plain tuple
of choices) is case-insensitive, returns the canonical entry, and refuses an unknown name with a
:class:`~emukg.errors.ParamError` that names the parameter, lists the choices and suggests the nearest one::

    >>> MODELS.canonical("rotate")
    'RotatE'
    >>> MODELS.canonical("RotatEE")   # ParamError: model='RotatEE': unknown model; did you mean RotatE? Choose …

The components themselves register where they are defined (``@MODELS.register``), so a new model, loss or
sampler is one new class in one file.
"""

from __future__ import annotations

import difflib
from typing import Any, Generic, Iterable, Iterator, TypeVar

from .errors import ParamError

T = TypeVar("T")


def or_list(choices: Iterable[str]) -> str:
    """``a, b or c``."""
    choices = [str(c) for c in choices]
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else (choices[0] if choices else "")


def nearest(name: Any, choices: Iterable[str]) -> str | None:
    """The choice closest to ``name`` (case-insensitive; similarity ≥ 0.6, or a prefix of at least 3 letters)."""
    choices = list(choices)
    text = str(name).lower()
    lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(text, list(lower), n=1, cutoff=0.6)
    if close:
        return lower[close[0]]
    starts = [c for k, c in lower.items() if len(text) >= 3 and (k.startswith(text) or text.startswith(k))]
    return starts[0] if len(starts) == 1 else None


def unknown_name(param: str, value: Any, choices: Iterable[str], what: str | None = None, also: str = "",
                 error: type[ParamError] = ParamError) -> ParamError:
    """The error for a name that is not among ``choices``: the choices (then ``also``, e.g. " (or leave it unset)"),
    and the nearest one when there is one; an ``error`` (a :class:`ParamError` class, e.g. the Config's)."""
    choices = list(choices)
    guess = nearest(value, choices) if isinstance(value, str) else None
    hint = f"did you mean {guess}? " if guess is not None else ""
    label = f"unknown {what}; " if what else ""
    return error(param, value, f"{label}{hint}choose {or_list(choices)}{also}.")


def choose(param: str, value: Any, choices: Iterable[str], what: str | None = None, also: str = "",
           error: type[ParamError] = ParamError) -> str:
    """``value`` as the canonical spelling of one of ``choices`` (case-insensitive), or an ``error`` (see
    :func:`unknown_name`)."""
    choices = list(choices)
    if isinstance(value, str):
        for c in choices:
            if c.lower() == value.lower():
                return c
    raise unknown_name(param, value, choices, what, also, error)


class Registry(Generic[T]):
    """Components of one kind by canonical name; lookups are case-insensitive and suggest near misses.

    ``param`` is the parameter (and Config setting) that names the component, ``what`` the word for one (``model``).
    """

    def __init__(self, param: str, what: str):
        self.param, self.what = param, what
        self._items: dict[str, T] = {}

    def register(self, obj: T = None, *, name: str | None = None):
        """Add ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator, with or without ``name``."""
        def add(o):
            key = name or o.__name__
            if any(k.lower() == key.lower() for k in self._items):
                raise ValueError(f"{self.what} {key!r} is registered twice")
            self._items[key] = o
            return o
        return add if obj is None else add(obj)

    def canonical(self, name: Any) -> str:
        """The registered spelling of ``name``."""
        return choose(self.param, name, self._items, self.what)

    def get(self, name: Any) -> T:
        """The component registered as ``name`` (any case)."""
        return self._items[self.canonical(name)]

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self):
        return self._items.keys()

    def values(self):
        return self._items.values()

    def items(self):
        return self._items.items()

    def __repr__(self) -> str:
        return f"Registry({self.what}: {', '.join(self._items)})"
