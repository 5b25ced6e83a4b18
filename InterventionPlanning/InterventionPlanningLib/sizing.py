"""Transcatheter valve size suggestions from sizing tables shipped as data (``Resources/SizingTables/*.json``)
or added by a site (``CARDIACSUITE_SIZING_TABLES``: a folder of tables in the same form, read after the shipped
ones; a site table with the same ``family`` replaces the shipped one).

A table names the valve family, its ``order`` in the list (the first table with a size sets the default
virtual valve), the annulus figure it sizes by (``area_mm2``, ``perimeter_mm`` or
``perimeter_derived_diameter_mm``…, keys of the TAVR ``annulus`` results), one row per size with the range
of that figure, and its source. A measured value inside one row's range suggests that size; inside two rows
(the tables overlap) both, marked as borderline; outside all rows, none, with the nearest size and how far
off it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "Resources" / "SizingTables"


def load_tables(extra: str | os.PathLike | None = None) -> list[dict]:
    folders = [SHIPPED]
    site = extra or os.environ.get("CARDIACSUITE_SIZING_TABLES")
    if site:
        folders.append(Path(site))
    tables: dict[str, dict] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            table = json.loads(path.read_text(encoding="utf-8"))
            for key in ("family", "sized_by", "unit", "sizes", "source"):
                if key not in table:
                    raise ValueError(f"{path}: a sizing table needs '{key}'")
            table["file"] = str(path)
            tables[table["family"]] = table
    return sorted(tables.values(), key=lambda t: (t.get("order", 100), t["family"]))


def suggest(annulus: dict, tables: list[dict]) -> list[dict]:
    out = []
    for table in tables:
        value = annulus.get(table["sized_by"])
        if value is None:
            continue
        fits = [row for row in table["sizes"] if row["min"] <= value <= row["max"]]
        entry = {"family": table["family"], "sized_by": table["sized_by"], "value": round(float(value), 1),
                 "unit": table["unit"], "source": table["source"]}
        if fits:
            entry["sizes_mm"] = [row["size_mm"] for row in fits]
            entry["borderline"] = len(fits) > 1
        else:
            nearest = min(table["sizes"], key=lambda row: min(abs(value - row["min"]), abs(value - row["max"])))
            gap = min(abs(value - nearest["min"]), abs(value - nearest["max"]))
            entry["sizes_mm"] = []
            entry["outside_range"] = (f"{value:.1f} {table['unit']} is outside every size; nearest "
                                      f"{nearest['size_mm']} mm, {gap:.1f} {table['unit']} off its range")
        out.append(entry)
    return out
