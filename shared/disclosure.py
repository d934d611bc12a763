"""What may be shown to authorities: counts, never a count small enough to single out a
member (issue 10, defect 13; docs/security.md).

One rule for every count an authority reads (members' availability counts, alerts'
readiness figure): a count below k is shown as the string "< k", zero too, since a 0
beside a "< k" would tell where the one member is.
"""

from __future__ import annotations


def shown(count: int, k: int) -> int | str:
    """A count as it may be shown: itself from k on, else "< k"."""
    return count if count >= k else f"< {k}"


def shown_share(part: int, whole: int, k: int) -> float | None:
    """`part / whole` rounded to a thousandth, or None when either count is below k (a
    share of a small group, with the group's size, gives its members away)."""
    if whole <= 0 or part < k or whole < k:
        return None
    return round(part / whole, 3)
