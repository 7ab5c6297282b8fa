"""Output-path safety shared by every command: decided before any work is done.

An output is never an input, never a folder that holds an input, and never inside an
input folder. An existing output is replaced only with ``overwrite``, and only if it is
of the kind the command writes (a zarr folder for OME-Zarr outputs, a file for files).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from emseg.errors import OutputExistsError, UnsafeOutputError, UnwritableOutputError

OutputKind = Literal["zarr", "file", "folder"]
ZARR_MARKERS = (".zgroup", ".zarray", "zarr.json", "attributes.json")


def input_path(spec: str | os.PathLike | object) -> Path | None:
    """The file or folder behind an input spec (``file.h5:/ds`` → ``file.h5``; a `Volume` → its path)."""
    from emseg.io.open import split_inner_path

    spec = getattr(spec, "path", spec)
    if spec is None or not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
        return None
    file_part, _ = split_inner_path(os.fspath(spec))  # type: ignore[arg-type]
    return Path(file_part)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def is_zarr_folder(path: Path) -> bool:
    """A zarr (v2/v3) or N5 group or array folder."""
    return path.is_dir() and any((path / marker).exists() for marker in ZARR_MARKERS)


def check_resolves(output: str | os.PathLike) -> Path:
    """``output`` with links resolved; refused if the OS cannot resolve it (a link loop, a file
    used as a folder, a name too long, a folder on the way we may not enter)."""
    target = _real(Path(output))
    for path in (Path(output), target):
        try:
            path.stat()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise UnwritableOutputError(f"{output}: cannot write the output ({exc.strerror})") from None
    return target


def check_writable(output: str | os.PathLike, into: bool = False) -> None:
    """Refuse, before any work, an output the OS would refuse: one `check_resolves` refuses or
    whose nearest existing folder (with ``into``: ``output`` itself if it exists, for a folder
    written into) is read-only for us (read-only file system or no permission)."""
    output = Path(output)
    target = check_resolves(output)
    folder = target if into and target.is_dir() else target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        code = errno.ENOTDIR
    elif os.access(folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return
    else:  # access(2) gives no reason: ask the file system whether it is mounted read-only
        code = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
    where = "" if folder == target.parent else f" in {folder}"
    raise UnwritableOutputError(f"{output}: cannot write the output{where} ({os.strerror(code)})")


def check_output(output: str | os.PathLike, inputs: Iterable[object] = (), overwrite: bool = False,
                 kind: OutputKind = "zarr", resume: bool = False) -> Path:
    """Refuse ``output`` if it is an input, holds an input or lies inside an input folder; if it
    exists, refuse without ``overwrite`` (``resume``: the caller continues its own output) and
    refuse to replace a symbolic link or something of another ``kind``; then `check_writable`."""
    output = Path(output)
    target = check_resolves(output)
    for spec in inputs:
        source = input_path(spec)
        if source is None or not source.exists():
            continue
        real = _real(source)
        if real == target:
            raise UnsafeOutputError(f"{output}: the output is the input {source}; choose another output path")
        if target in real.parents:
            raise UnsafeOutputError(f"{output}: this folder holds the input {source}; writing the output there "
                                    "would delete it; choose another output path")
        if real.is_dir() and real in target.parents:
            raise UnsafeOutputError(f"{output}: the output lies inside the input folder {source}; "
                                    "choose a path outside it")
    if not (output.exists() or output.is_symlink()):
        check_writable(output)
        return output
    if not overwrite:
        if resume:
            check_writable(output, into=True)
            return output
        raise OutputExistsError(f"{output}: output exists; pass --overwrite to replace it")
    if output.is_symlink():
        raise UnsafeOutputError(f"{output}: is a symbolic link; emseg does not replace links, even with "
                                "--overwrite; remove it or give another path")
    if kind == "zarr" and not is_zarr_folder(output):
        raise UnsafeOutputError(f"{output}: exists and is not a zarr folder; emseg replaces only its own kind of "
                                "output, even with --overwrite; remove it yourself or choose another path")
    if kind == "file" and not output.is_file():
        raise UnsafeOutputError(f"{output}: exists and is not a file; choose another output path")
    if kind == "folder" and not output.is_dir():
        raise UnsafeOutputError(f"{output}: exists and is not a folder; choose another output path")
    check_writable(output)
    return output
