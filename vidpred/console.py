"""What a person sees of a ``vidpred`` command: one clear line for every expected failure.

:func:`guarded` is the error boundary every subcommand runs inside. An expected failure (a
:class:`~vidpred.config.UserError`: config, data, storage, checkpoint, cluster, a missing tool; or the
environment refusing a write: permission, full disk, read-only file system) ends as one line
``vidpred: error: ...`` and exit status 2; ``--debug`` or ``VIDPRED_DEBUG=1`` prints the traceback first.
Anything else is a bug: it keeps its traceback (exit 1), so it is seen and reported. Ctrl-C ends with one
line and status 130. Every message is passed through :func:`redact`, so no credential reaches the screen.

This module imports nothing of vidpred but the config (the lowest room), so every command module may use it.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from vidpred.config import UserError, folder_problem

DEBUG_ENV = "VIDPRED_DEBUG"
# Credentials that may sit in the environment; their values never appear in a message.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_URI_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
# The environment refusing a write or a read is the user's to fix, not a bug: errno → what would fix it.
ENVIRONMENT_ERRNOS = {
    errno.EACCES: "check the permissions of that path, or choose another",
    errno.EPERM: "check the permissions of that path, or choose another",
    errno.ENOSPC: "free some space on that file system, or write elsewhere",
    errno.EDQUOT: "free some space (disk quota exceeded), or write elsewhere",
    errno.EROFS: "that file system is read-only: write elsewhere",
}


def redact(text: str) -> str:
    """``text`` without credentials: a URI's ``user:password@`` part and the values of :data:`SECRET_ENV`."""
    text = _URI_USERINFO.sub(r"\1***@", text)
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def debug_wanted(argv: list[str]) -> tuple[bool, list[str]]:
    """(traceback wanted, ``argv`` without ``--debug``): the flag may stand anywhere on the command line."""
    rest = [a for a in argv if a != "--debug"]
    return len(rest) != len(argv) or os.environ.get(DEBUG_ENV, "") not in ("", "0"), rest


def error(message: str) -> None:
    print(f"vidpred: error: {redact(message)}", file=sys.stderr, flush=True)


def _environment_hint(exc: BaseException) -> str | None:
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        where = exc.filename if exc.filename is not None else "a file"
        return f"{where}: {exc.strerror or exc}; {ENVIRONMENT_ERRNOS[exc.errno]}"
    return None


def guarded(run: Callable[[], int], debug: bool = False) -> int:
    """``run()``'s exit status; an expected failure as one line and 2, Ctrl-C as one line and 130."""
    try:
        return run()
    except KeyboardInterrupt:
        if debug:
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        print("vidpred: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        message = str(exc) if isinstance(exc, UserError) else _environment_hint(exc)
        if message is None:
            raise  # a bug: its traceback is the report
        if debug:
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        error(message)
        return 2


def output_file(path: str | os.PathLike, force: bool, flag: str) -> Path:
    """``path`` as a file vidpred may write: not a folder, its folder makeable, and not an existing file
    unless ``force`` (``--force``): nothing is written over unasked. Returns it absolute."""
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        raise UserError(f"{flag} {str(path)!r}: is a folder; give a file name, e.g. {p / 'generator.pt'}")
    if problem := folder_problem(p.parent):
        raise UserError(f"{flag} {str(path)!r}: {problem}")
    if (p.exists() or p.is_symlink()) and not force:
        raise UserError(f"{flag} {str(path)!r}: exists; add --force to replace it, or choose another name")
    return p
