"""One exception type for every error a user can fix, and its form that knows the parameter at fault.

An :class:`EmukgError` carries one sentence that names the file, line or parameter at fault and says how to fix
it.  The command line prints that sentence (no traceback) and exits with status 2.

A :class:`ParamError` is raised by library code about one of its parameters.  It keeps the parameter's name, the
value and the reason, and :meth:`ParamError.render` spells the name the way the caller wrote it: the Python
parameter (``memory_mb=-5: must be a positive integer.``) when raised, ``emukg``'s flag (``--memory-mb -5: …``)
when the CLI prints it, the reference's flag (``-lr``) in the reference mode.  Library code never names a flag.
"""

from __future__ import annotations

import re
from typing import Any

from .spellings import flag_name, one_to_one, setting_values


class EmukgError(Exception):
    """A user-facing error: bad input, a bad flag, a missing file. Exit status 2 from the CLI."""

    exit_code = 2


class ParamError(EmukgError):
    """A value of the parameter ``param`` that a library call refuses, with the ``reason`` (one sentence).

    ``reason`` may name other parameters as ``{name}``, settings with values as ``{loss=ce,sampler=uniform}``
    (``{{`` and ``}}`` are literal braces); :meth:`render` spells every name for the caller's
    ``style`` (``"python"``, ``"cli"``, ``"legacy"`` or ``"yaml"``); ``flags`` maps names whose CLI flag is not
    the parameter's own (``{"run": "RUN"}``).  ``str(error)`` is the Python spelling.
    """

    def __init__(self, param: str, value: Any, reason: str, source: str | None = None, flags: dict | None = None):
        self.param, self.value, self.reason, self.source = param, value, reason, source
        self.flags = dict(flags or {})
        super().__init__(self.render("python"))

    def _name(self, param: str, style: str) -> str:
        if style == "cli" and param in self.flags:
            return self.flags[param]
        return flag_name(param, style)

    def _spell(self, match, style: str) -> str:
        if match.group(1):  # {name}: the parameter
            return self._name(match.group(1), style)
        if match.group(2):  # {name=value,other=value}: settings with their values (the reference spells -if_CE 1)
            pairs = dict(part.split("=", 1) for part in match.group(2).split(","))
            return setting_values(pairs, style)
        return match.group(0)[0]  # {{ or }}: a literal brace

    def render(self, style: str = "python", source: str | None = None) -> str:
        """The message with every parameter spelled for ``style`` (see the class docstring)."""
        reason = re.sub(r"\{\{|\}\}|\{(\w+)\}|\{(\w+=[^{}]+)\}", lambda m: self._spell(m, style), self.reason)
        value = self.value if isinstance(self.value, str) and style in ("cli", "legacy") else repr(self.value)
        where = source or self.source
        if style == "yaml" and where:
            return f"{where}: {self.param}: {value}: {reason}"
        if self.value == "" or (style == "legacy" and not one_to_one(self.param)):
            return f"{self._name(self.param, style)}: {reason}"  # (the reference's flag holds another value than the setting)
        sep = "=" if style == "python" else " "
        return f"{self._name(self.param, style)}{sep}{value}: {reason}"

    def restyle(self, style: str, source: str | None = None) -> "ParamError":
        """The same error, its message spelled for ``style`` (the CLI and the reference mode re-raise this)."""
        err = type(self).__new__(type(self))
        err.__dict__.update(self.__dict__)
        err.source = source or self.source
        err.args = (self.render(style, source),)
        return err
