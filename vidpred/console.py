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

import contextlib
import errno
import io
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from vidpred.config import UserError, folder_problem
from vidpred.raycompat import worker_output_dispatcher

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


# --------------------------------------------------------------------------------------------- Ray's output

MARK = "[vidpred]"
# Loggers of the libraries under vidpred: what they say goes to the log file unless --verbose.
LIBRARY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "deepspeed", "DeepSpeed", "torch", "py.warnings")
RAY_PRINTER = "ray_print_logs"   # the handler ray.init(log_to_driver=True) installs to print every Ray process


class RayOutput:
    """Where the output of Ray, Ray Data, Ray Train/Tune and DeepSpeed goes while a command runs.

    Without ``verbose``: into ``log_file`` (every line of every Ray process, as Ray would have printed it,
    and the driver's own library loggers and Python warnings), while the console shows vidpred's lines only:
    lines carrying ``[vidpred]`` from any process (the workers' progress, validation) and the decode tasks'
    "skipping video" warnings, each once. With ``verbose``: everything live as Ray prints it, and in the file
    too. Ray prints other processes' output through one handler of its driver, added by ``ray.init`` under
    the name ``ray_print_logs`` (:func:`vidpred.raycompat.worker_output_dispatcher`); :meth:`attach` swaps it
    for ours.
    """

    def __init__(self, log_file: str | os.PathLike, verbose: bool = False):
        self.path, self.verbose = Path(log_file), verbose
        self.file = None
        self.saved: dict[str, tuple[list, bool]] = {}
        self.seen: set[str] = set()
        self.attached = self.closed = False

    def __enter__(self) -> "RayOutput":
        import logging

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        handler = logging.StreamHandler(self.file)
        handler.setLevel(logging.INFO)  # Ray Data's driver loggers run at DEBUG: hundreds of lines per dataset
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.handler = handler
        logging.captureWarnings(True)
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            self.saved[name] = (list(logger.handlers), logger.propagate)
            if not self.verbose:
                for h in list(logger.handlers):
                    logger.removeHandler(h)
                logger.propagate = False
            logger.addHandler(handler)
        return self

    def attach(self) -> None:
        """After ``ray.init``: Ray's printing of its processes' output replaced by :meth:`lines` (Ray started
        elsewhere, without log_to_driver, prints nothing: then only the file-side handler is added)."""
        dispatcher = worker_output_dispatcher()
        if self.attached:
            return
        if not self.verbose:
            dispatcher.remove_handler(RAY_PRINTER)
        dispatcher.remove_handler("vidpred_console")  # an earlier command's, in the same process
        dispatcher.add_handler("vidpred_console", self.lines)
        self.attached = True

    def lines(self, data: dict) -> None:
        """One batch of lines from one Ray process: all to the file; vidpred's to the console (not verbose)."""
        who = data.get("actor_name") or data.get("task_name") or ""
        pid = data.get("pid", "")
        for line in data.get("lines", []):
            if self.file is not None and not self.file.closed:
                self.file.write(f"({who} pid={pid}) {line}\n")
            if self.verbose or self.closed:
                continue
            if MARK in line:
                print(line[line.index(MARK):], flush=True)
            elif "skipping video " in line and line not in self.seen:
                self.seen.add(line)
                print(f"{MARK} {line[line.index('skipping video '):]}", flush=True)

    def __exit__(self, *exc) -> None:
        """Library loggers back as they were. Ray's printer stays replaced: lines Ray delivers after the
        command's end (its log stream lags by a second or two) still go to the file, none to the console."""
        import atexit
        import logging

        self.closed = True
        for name, (handlers, propagate) in self.saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self.handler)
            for h in handlers:
                if h not in logger.handlers:
                    logger.addHandler(h)
            logger.propagate = propagate
        logging.captureWarnings(False)
        if self.file is not None:
            atexit.register(self.file.close)


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """A library's chatter held back for the duration (its prints, progress bars and log lines below ERROR:
    e.g. DeepSpeed's checkpoint merge prints six lines and a bar); yields what was held, for an error message."""
    import logging

    held = io.StringIO()
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
            yield held
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
