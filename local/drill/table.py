"""The one plain-text table of the drill: `make demo`'s summary and `make bench`'s medians.

    render([Column("scenario", 28, lambda r: r.name), Column("runs", 5, str_of_runs, ">")], rows)

A header line, a rule as wide as the header, then one line per row; each cell is cut to its column's width.
A column of width 0 is the last one and takes what it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

Row = TypeVar("Row")


@dataclass(frozen=True)
class Column(Generic[Row]):
    header: str
    width: int
    cell: Callable[[Row], str]
    align: str = "<"

    def format(self, text: str) -> str:
        if not self.width:
            return text
        return f"{text[: self.width]:{self.align}{self.width}}"


def render(columns: list[Column[Row]], rows: Iterable[Row]) -> str:
    head = " ".join(column.format(column.header) for column in columns).rstrip()
    lines = [head, "-" * len(head)]
    lines += [" ".join(column.format(column.cell(row)) for column in columns).rstrip() for row in rows]
    return "\n".join(lines)


def figure(value: float | None, spec: str = "g") -> str:
    """A number as a cell: "-" when there is none."""
    return "-" if value is None else format(value, spec)
