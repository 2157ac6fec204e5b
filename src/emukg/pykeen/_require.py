"""The one check that PyKEEN is there (the optional extra ``emukg[pykeen]``), and the version range it is tested with."""

from __future__ import annotations

import logging

from ..errors import EmukgError

TESTED = ((1, 11), (1, 12))  # PyKEEN >= 1.11, < 1.12: the range the pyproject extra pins and the tests run
MISSING = 'emukg.pykeen needs PyKEEN 1.11; install it with pip install "emukg[pykeen]".'

log = logging.getLogger("emukg")


class MissingExtraError(EmukgError):
    """An optional dependency is not installed; the message names the ``pip install`` line."""


def pykeen_version() -> str:
    """The installed PyKEEN's version string (``MissingExtraError`` without it)."""
    try:
        from pykeen.version import get_version
    except ImportError:
        raise MissingExtraError(MISSING) from None
    return str(get_version())


def require_pykeen() -> str:
    """Import PyKEEN or raise the one-sentence :class:`MissingExtraError`; log a warning outside the tested range."""
    try:
        import pykeen  # noqa: F401
        import pykeen.training  # noqa: F401
    except ImportError:
        raise MissingExtraError(MISSING) from None
    version = pykeen_version()
    try:
        parts = tuple(int(p) for p in version.split("-")[0].split(".")[:2])
    except ValueError:
        parts = TESTED[0]
    if not TESTED[0] <= parts < TESTED[1]:
        log.warning("emukg.pykeen is tested with PyKEEN 1.11.x, not %s; its private interfaces may differ.", version)
    return version
