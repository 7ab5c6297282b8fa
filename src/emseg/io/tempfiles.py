"""Temporary siblings of outputs: names that fit NAME_MAX, leftovers of killed runs, full disks.

An output is written under a hidden sibling name and renamed into place when complete:
``.{name}.{tag}-{host}-{pid}-{random}`` (``tag``: ``partial``, ``old`` or ``tmp``; ``host``: 6 hex
digits of a hash of the host name; ``pid``: the writing process). A name too long for that
(the file system allows 255 bytes) is cut and a hash of the whole name kept.

Leftovers of a killed run are removed on the next run of the same output. The rule is
conservative, so a run still in progress is never broken: a leftover is removed only when it
was made on this host by a process that no longer exists. Leftovers of other hosts (a shared
file system) and of a live process are left alone; so are names that are not emseg's.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from emseg.errors import DiskFullError, PathTooLongError

NAME_MAX = 255  # bytes in one file name (Linux, macOS)
PATH_MAX = 4096  # bytes in a path (Linux)
SUFFIX_MAX = 48  # ".partial-hhhhhh-<pid up to 10>-<8 hex>" with room to spare
TAGS = ("partial", "old", "tmp")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class LeftoverRemovedWarning(UserWarning):
    """A temporary output of a killed run was removed."""


def host_tag() -> str:
    """Six hex digits naming this host (temp names of other hosts are never removed)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def short_name(name: str) -> str:
    """``name``, or when a temp name made from it would exceed NAME_MAX, its start plus a hash."""
    raw = os.fsencode(name)
    if len(raw) + 1 + SUFFIX_MAX <= NAME_MAX:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:12]
    keep = NAME_MAX - 1 - SUFFIX_MAX - len(digest) - 1
    return raw[:keep].decode(errors="ignore") + "~" + digest


def partial_output_name(name: str) -> str | None:
    """The output name a ``.NAME.partial-…`` temporary is written for (a cut name stays cut), else None."""
    found = re.fullmatch(r"\.(.+)\.partial-[\w.-]+", name)
    return found.group(1) if found else None


def temp_sibling(target: str | os.PathLike, tag: str) -> Path:
    """A fresh hidden sibling of ``target`` that a later run can recognise as ours."""
    if tag not in TAGS:
        raise ValueError(f"tag must be one of {TAGS}")
    target = Path(target)
    return target.with_name(f".{short_name(target.name)}.{tag}-{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def check_path_length(target: str | os.PathLike) -> None:
    """Refuse an output path the file system cannot hold (a name over NAME_MAX, a path over PATH_MAX)."""
    target = Path(target)
    full = os.fsencode(os.path.abspath(target))
    if len(full) + SUFFIX_MAX >= PATH_MAX:
        raise PathTooLongError(f"{str(target)[:60]}...: the output path is {len(full)} bytes long, too long for "
                                    f"the file system (at most {PATH_MAX - SUFFIX_MAX - 1}); choose a shorter path")
    for part in target.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise PathTooLongError(f"{target}: the name {part[:40]}... is {len(os.fsencode(part))} bytes "
                                        f"long; a file system allows at most {NAME_MAX}; choose a shorter name")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def leftovers(target: str | os.PathLike) -> Iterator[tuple[Path, str, str, int]]:
    """(path, tag, host, pid) of every emseg temp sibling of ``target``."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(short_name(target.name))}\.({'|'.join(TAGS)})-([0-9a-f]{{6}})-(\d+)-[0-9a-f]{{8}}")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if found:
            yield Path(entry.path), found.group(1), found.group(2), int(found.group(3))


def remove_leftovers(target: str | os.PathLike) -> list[Path]:
    """Remove the temp siblings of ``target`` left by killed runs on this host (see the module
    docstring for the rule); warn once per removal. Returns what was removed."""
    target = Path(target)
    removed = []
    for path, tag, host, pid in leftovers(target):
        if host != host_tag() or pid == os.getpid() or _pid_alive(pid):
            continue
        if tag == "old" and not target.exists():  # a replace was cut between its two renames: keep the old output
            continue
        remove_path(path)
        removed.append(path)
        warnings.warn(f"{target}: removed {path.name}, left by a killed emseg run (process {pid})",
                      LeftoverRemovedWarning, stacklevel=2)
    return removed


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it came from is ENOSPC/EDQUOT."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(target: str | os.PathLike) -> DiskFullError:
    """The one-line error for an output that did not fit."""
    return DiskFullError(f"{target}: cannot write the output: no space left on device (the partial output was "
                         "removed); free some space or choose another place, and run again")


def remove_path(path: Path, quiet_for: float = 0.2, at_most: float = 5.0) -> None:
    """Remove a temp file or folder, ignoring errors, until it has stayed gone for ``quiet_for``
    seconds (at most ``at_most``): after a failed store, zarr's own I/O thread can still finish
    the other chunk writes of that store and recreate entries in a folder already removed."""
    deadline = time.monotonic() + at_most
    gone_since = None
    while time.monotonic() < deadline:
        if os.path.lexists(path):
            gone_since = None
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since >= quiet_for:
            return
        time.sleep(0.02)


@contextmanager
def temp_output(target: str | os.PathLike, tag: str = "tmp",
                replace: Callable[[Path, Path], None] = os.replace) -> Iterator[Path]:
    """Write an output atomically: yields a temp sibling of ``target`` (a file or folder to create),
    moved onto ``target`` by ``replace(temp, target)`` on success; on any error the temp is removed
    and a full disk becomes `DiskFullError`. Leftovers of killed runs are removed first."""
    target = Path(target)
    check_path_length(target)
    remove_leftovers(target)
    temp = temp_sibling(target, tag)
    try:
        yield temp
        replace(temp, target)
    except BaseException as exc:
        remove_path(temp)
        if is_disk_full(exc):
            raise disk_full_error(target) from None
        raise


def write_file_atomic(target: str | os.PathLike, write: Callable[[object], None]) -> Path:
    """Call ``write(f)`` on a binary file that appears at ``target`` only once complete."""
    target = Path(target)
    with temp_output(target) as temp, open(temp, "wb") as f:
        write(f)
    return target
