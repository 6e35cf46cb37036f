"""Counts that cost the same at any ledger size: each stops at a cap and says so.

`status`'s totals by state, the desk's tab counts and its "of N" used to count every matching
row, and a ledger that has run for years holds a million sent deliveries: a whole index read
(55-380 ms by load, issue 18). Counting at most CAP + 1 rows per figure reads at most that many
index entries whatever the size, and shows "10,000+" past the cap: exact for a practice's ledger
(a few thousand deliveries a year), honest for a larger one. Not a counts table kept by every
transition: one missed path would make a figure silently wrong, and a figure that can only be
too low says "+" where a table's error would say nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from syndicate.ledger.models import Delivery

COUNT_CAP = 10_000  # rows counted per figure at most (bench/bench_scale.py: about 1 ms each)


@dataclass(frozen=True)
class Count:
    """N rows, or (EXACT false) more than N: the count stopped at its cap."""

    n: int
    exact: bool = True

    def __str__(self) -> str:
        return f"{self.n:,}" + ("" if self.exact else "+")

    def __bool__(self) -> bool:
        return self.n > 0

    def __add__(self, other: Count | int) -> Count:
        other = other if isinstance(other, Count) else Count(other)
        return Count(self.n + other.n, self.exact and other.exact)

    __radd__ = __add__

    def __sub__(self, rows: int) -> Count:
        """What is left after ROWS of them: still a lower bound if this one is."""
        return Count(self.n - rows, self.exact)

    @property
    def spoken(self) -> str:
        """As a screen reader should say it: "more than 10,000", not "10,000 plus"."""
        return str(self) if self.exact else f"more than {self.n:,}"

    @property
    def plural(self) -> bool:
        return not (self.exact and self.n == 1)


def capped_counts(s: Session, figures: Mapping[str, Iterable], cap: int | None = None) -> dict[str, Count]:
    """Each figure's deliveries (NAME -> its WHERE clauses) counted up to CAP (default COUNT_CAP,
    read at the call), in one statement:
    ``SELECT (SELECT count(*) FROM (SELECT 1 FROM deliveries WHERE ... LIMIT cap + 1)), ...``.
    The LIMIT is what bounds the work: an index scan stops at the cap + 1st entry."""
    cap = COUNT_CAP if cap is None else cap
    names = list(figures)
    if not names:
        return {}
    columns = [select(func.count()).select_from(
        select(literal_column("1")).select_from(Delivery).where(*figures[name]).limit(cap + 1).subquery())
        .scalar_subquery() for name in names]
    found = s.execute(select(*columns)).one()
    return {name: _count(n, cap) for name, n in zip(names, found, strict=True)}


def capped_count(s: Session, where: Iterable, cap: int | None = None) -> Count:
    """The deliveries WHERE names, counted up to CAP (``capped_counts`` for one figure)."""
    return capped_counts(s, {"n": where}, cap)["n"]


def cap_above(shown: int, cap: int | None = None) -> int:
    """CAP (default COUNT_CAP) raised above SHOWN, the rows a command already prints, so that
    its "N more" is never a bound below what it shows (`status --limit 50000`)."""
    return max(COUNT_CAP if cap is None else cap, shown + 1)


def _count(found: int, cap: int) -> Count:
    # cap + 1 rows found: there are more than cap, and how many more is what was not read.
    return Count(cap, exact=False) if found > cap else Count(found)
