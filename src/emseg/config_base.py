"""`StrictConfig`: the base of every emseg config (YAML on disk, pydantic in memory).

Unknown keys fail, assignments are validated, and old key names are accepted with a
`DeprecationWarning`: the shared vocabulary (`VOCABULARY`, docs/architecture.md, Glossary)
wherever a config has the current name, plus a config's own ``renamed_keys``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from emseg.errors import ConfigError

# old name → current name, for every config that has a field of the current name
VOCABULARY: Mapping[str, str] = {
    "lr": "learning_rate",
    "val": "validation",
    "val_every": "validate_every",
    "image": "raw",
}

C = TypeVar("C", bound="StrictConfig")


class StrictConfig(BaseModel):
    """Unknown keys fail, assignments are validated, old key names warn and are renamed.

    Subclasses declare their own renames as ``renamed_keys = {"old": "new"}`` and may name
    themselves in messages with ``config_name``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    renamed_keys: ClassVar[Mapping[str, str]] = {}
    config_name: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for old, new in cls.renamed_keys.items():
            if new not in cls.model_fields or old in cls.model_fields:
                raise TypeError(f"{cls.__name__}.renamed_keys: {old!r} → {new!r} must rename to a field, from a non-field")

    @classmethod
    def old_names(cls) -> dict[str, str]:
        """Old key → current key accepted by this config (the vocabulary's and its own)."""
        names = {**VOCABULARY, **cls.renamed_keys}
        return {old: new for old, new in names.items() if new in cls.model_fields and old not in cls.model_fields}

    @classmethod
    def rename_old_keys(cls, data: dict) -> dict:
        """``data`` with old key names replaced by the current ones (a `DeprecationWarning` each)."""
        for old, new in cls.old_names().items():
            if old in data:
                if new in data:
                    raise ValueError(f"give {new!r} only ({old!r} is its old name)")
                warnings.warn(f"{cls.config_name or cls.__name__}: {old!r} is deprecated, use {new!r}",
                              DeprecationWarning, stacklevel=3)
                data = {**{k: v for k, v in data.items() if k != old}, new: data[old]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        return cls.rename_old_keys(data) if isinstance(data, dict) else data

    def model_copy(self: C, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> C:
        """pydantic's copy (values not validated), but old names in ``update`` are renamed and unknown ones fail."""
        if update:
            try:
                update = self.rename_old_keys(dict(update))
            except ValueError as err:
                raise ConfigError(f"{type(self).__name__}.model_copy: {err}") from None
            unknown = sorted(set(update) - set(type(self).model_fields))
            if unknown:
                raise ConfigError(f"{type(self).__name__}.model_copy: unknown key {unknown[0]!r}")
        return super().model_copy(update=update, deep=deep)

    @classmethod
    def from_dict(cls: type[C], raw: Any, where: str = "config",
                  label: Callable[[tuple], str] | None = None) -> C:
        """Validate ``raw``; problems become one `ConfigError` line naming ``where`` and each key."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {problems(exc, label)}") from None


def problems(error: ValidationError, label: Callable[[tuple], str] | None = None) -> str:
    """``key → sub: problem; other: unknown key`` for every error of ``error``, on one line
    (a problem of the whole config has no key)."""
    label = label or location
    parts = []
    for err in error.errors():
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        parts.append(f"{label(err['loc'])}: {message}" if err["loc"] else message)
    return "; ".join(" ".join(part.split()) for part in parts)


def location(loc: tuple) -> str:
    """``train → 0 → raw`` for pydantic's ``('train', 0, 'raw')``."""
    return " → ".join(str(part) for part in loc)
