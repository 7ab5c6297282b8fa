"""Units of measurement tables: emseg measures in nm; ``um`` gives µm, µm² and µm³ columns."""

from __future__ import annotations

from emseg.errors import InvalidValuesError

UNITS = ("nm", "um")
#: column suffix in nm → (suffix in µm, divisor)
TO_UM = {"_nm3": ("_um3", 1e9), "_nm2": ("_um2", 1e6), "_nm": ("_um", 1e3)}


def check_units(units: str) -> str:
    if units not in UNITS:
        raise InvalidValuesError(f"--units {units}: must be one of {', '.join(UNITS)}")
    return units


def column_name(column: str, units: str) -> str:
    """The name a nm column takes in ``units`` (``volume_nm3`` → ``volume_um3``)."""
    if check_units(units) == "um":
        for suffix, (new, _) in TO_UM.items():
            if column.endswith(suffix):
                return column[: -len(suffix)] + new
    return column


def in_units(table, units: str):
    """A copy of a nm measurement table with its length, area and volume columns in ``units``."""
    if check_units(units) == "nm":
        return table
    out = table.copy()
    for column in table.columns:
        for suffix, (_, divisor) in TO_UM.items():
            if str(column).endswith(suffix):
                out[column] = table[column] / divisor
                break
    return out.rename(columns={c: column_name(str(c), units) for c in table.columns})
