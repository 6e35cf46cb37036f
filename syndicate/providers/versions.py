"""Pinned API versions and the dates their providers retire them.

LinkedIn and the Graph API (Facebook) answer for a version the caller names in every request;
after its sunset, LinkedIn refuses the call (426 NONEXISTENT_VERSION) and Graph silently moves
it to the oldest version still available. So every pin carries its sunset date here, one place,
and ``syndicate check`` warns ``WARN_BEFORE`` ahead of it (docs/settings.md: "Moving a pin").
"""

from __future__ import annotations

import re
from datetime import date, timedelta

WARN_BEFORE = timedelta(days=60)

# learn.microsoft.com/linkedin/marketing/integrations/migrations ("API Migration Status" table).
# 202607 is the newest version LinkedIn's versioning page listed (July 2026); its sunset is not
# in the table yet, so it is taken as the documented minimum: "supported and stable for a
# minimum of one year before sunset" (learn.microsoft.com/linkedin/marketing/versioning).
LINKEDIN_DEFAULT = "202607"
LINKEDIN_SUNSETS: dict[str, date] = {
    "202510": date(2026, 10, 15),
    "202511": date(2026, 11, 16),
    "202601": date(2027, 1, 15),
    "202602": date(2027, 2, 15),
    "202603": date(2027, 3, 16),
}

# developers.facebook.com/docs/graph-api/changelog/versions ("Available Until").
GRAPH_DEFAULT = "v25.0"
GRAPH_SUNSETS: dict[str, date] = {
    "v20.0": date(2026, 9, 24),
    "v21.0": date(2027, 1, 21),
    "v22.0": date(2027, 5, 20),
    "v23.0": date(2027, 10, 8),
    "v24.0": date(2028, 2, 18),
    "v25.0": date(2028, 7, 29),
}


def linkedin_sunset(version: str) -> date | None:
    """The day LinkedIn retires VERSION (YYYYMM): the published date, else one year after release."""
    if version in LINKEDIN_SUNSETS:
        return LINKEDIN_SUNSETS[version]
    m = re.fullmatch(r"(\d{4})(\d{2})(?:\.\d+)?", version)
    if not m or not 1 <= int(m.group(2)) <= 12:
        return None
    return date(int(m.group(1)) + 1, int(m.group(2)), 15)


def graph_sunset(version: str) -> date | None:
    """The day Meta stops serving Graph API VERSION ("v25.0"), where it has published one."""
    return GRAPH_SUNSETS.get(version)


def sunset_note(service: str, option: str, version: str, sunset: date | None, today: date | None = None) -> str:
    """'' while the pin is good; else a one-line warning saying what to do."""
    if sunset is None:
        return ""
    today = today or date.today()
    if today >= sunset:
        return (f"; WARNING: {service} version {version} was retired on {sunset:%Y-%m-%d}: "
                f"set option {option} to a current one (docs/settings.md, 'Moving a pin')")
    if sunset - today <= WARN_BEFORE:
        return (f"; WARNING: {service} version {version} is retired on {sunset:%Y-%m-%d} "
                f"({(sunset - today).days} days): move option {option} to a newer one "
                f"(docs/settings.md, 'Moving a pin')")
    return ""
