"""Errors that emseg raises for bad input: one class per kind of problem.

Every error names the file (or config source) and the problem in one line, so that the
CLI can print ``str(error)`` and exit with code 2.
"""

from __future__ import annotations


class EmsegError(Exception):
    """Base class of every error emseg raises on purpose (bad input, bad config)."""


class VolumeNotFoundError(EmsegError, FileNotFoundError):
    """The path does not exist."""


class UnsupportedFormatError(EmsegError):
    """The file's extension or layout is not a volume format emseg reads."""


class CorruptFileError(EmsegError):
    """The file exists but cannot be read (truncated, not what its extension says)."""


class AmbiguousSourceError(EmsegError):
    """The path holds several arrays/datasets; the user must pick one."""


class ShapeMismatchError(EmsegError):
    """Arrays that must have the same shape do not (slices of a stack, labels vs raw)."""


class InvalidVoxelSizeError(EmsegError):
    """A voxel size is missing an axis, negative or zero."""


class InvalidValuesError(EmsegError):
    """The data holds values emseg cannot use (NaN, wrong dtype, RGB without a channel)."""


class OutputExistsError(EmsegError):
    """The output exists and would be overwritten without ``--overwrite``."""


class ConfigError(EmsegError):
    """A YAML/pydantic configuration is invalid."""


class UnsafeOutputError(EmsegError):
    """The output path is an input, holds an input, or is not something emseg may replace."""


class IncompleteInputError(EmsegError):
    """The input is an emseg output marked incomplete (a killed or failed run left it half done)."""


class DiskFullError(EmsegError):
    """The output did not fit on its file system (no space left on device, or over quota)."""


class PathTooLongError(EmsegError):
    """The output path or one of its names is longer than the file system allows."""


class UnwritableOutputError(EmsegError):
    """The output cannot be created where asked (read-only file system, no permission, link loop)."""
