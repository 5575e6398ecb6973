"""What the export API names: data types, their columns, export types and partitions (§2.2, §2.11).

Shared by the content generator, the part store and the HTTP app; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# export_date is Beijing time (API doc §2.2); China has had no DST since 1991, so a fixed offset
# is exact and needs no tz database.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")

EXPORT_TYPES = ("hour", "day")  # API doc §2.2

# The 10 data types of the new docs, in their order (API doc §2.2).
ALL_DATA_TYPES: tuple[str, ...] = tuple(
    "visit page action action_tag custom_event ads_track_activation ads_track_click "
    "pvar evar vstr".split()
)

_CUSTOMER_ATTRS = " ".join(f"customerAttributes{i}" for i in range(2, 11))
_PAGE_ATTRS = " ".join(f"pageAttributes{i}" for i in range(1, 11))

# SDK 1.x leftovers in the page table (§2.11); always empty in generated rows.
SDK1_ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(f"{_CUSTOMER_ATTRS} {_PAGE_ATTRS}".split())

# Documented 2.0 columns per type, in the order of the field tables (API doc §2.11). Column
# order is not documented, so the simulator simply uses the tables' order.
COLUMNS: dict[str, tuple[str, ...]] = {
    data_type: tuple(names.split())
    for data_type, names in {
        "visit": "visitUserId sessionId accountVersion platform domain page queryParameters "
        "referrer language screenHeight screenWidth time sendTime ip userAgent operatingSystem "
        "operatingSystemVersion clientVersion channel deviceBrand deviceModel deviceType "
        "deviceOrientation latitude longitude vstRequestId idfa androidId IMEI",
        "page": "visitUserId sessionId platform domain page queryParameters referrer "
        "referrerPage title time sendTime deviceOrientation loginUserId pageGroup appVariable "
        f"{_CUSTOMER_ATTRS} {_PAGE_ATTRS} pageRequestId vstRequestId",
        "action": "visitUserId sessionId requestType domain page sendTime time href "
        "requestValue index info pageRequestId actionRequestId",
        "action_tag": "sendTime actionRequestId ruleId",
        "custom_event": "visitUserId sessionId time sendTime pageTime domain page "
        "queryParameters eventName eventNumber eventVariable loginUserId pageRequestId",
        "ads_track_activation": "visitUserId idfa imei uuid androidId ip userAgent platform "
        "operatingSystemVersion sendTime linkId campaignId channelId linkName campaignName "
        "channelName adsVariable OAID",
        "ads_track_click": "idfa IMEI uuid androidId ip userAgent platform "
        "operatingSystemVersion eventTime linkId campaignId channelId linkName campaignName "
        "channelName adsVariable OAID clickUrl",
        "pvar": "visitUserId sessionId time sendTime pageTime domain page pageVariable "
        "pageRequestId",
        "evar": "visitUserId sessionId time sendTime domain conversionVariable",
        "vstr": "visitUserId sessionId time sendTime visitorVariable",
    }.items()
}


@dataclass(frozen=True)
class Partition:
    """One hour or day of export, as the API names it (Beijing time)."""

    export_type: str
    export_date: str  # cut to the type's precision: yyyyMMddHH (hour) or yyyyMMdd (day)
    start: datetime  # aware, Beijing

    @property
    def end(self) -> datetime:
        return self.start + (
            timedelta(hours=1) if self.export_type == "hour" else timedelta(days=1)
        )


def parse_partition(export_type: str, raw_date: str) -> Partition | None:
    """Parse `export_date` (12 digits as documented, or 10/8); None if it is not valid.

    Digits beyond the export type's precision are checked for validity and then ignored (§2.2).
    """
    if export_type not in EXPORT_TYPES or not (raw_date.isascii() and raw_date.isdigit()):
        return None
    if len(raw_date) not in (8, 10, 12) or (export_type == "hour" and len(raw_date) == 8):
        return None
    padded = raw_date.ljust(12, "0")  # hour and minute default to 00
    try:
        full = datetime(
            int(padded[0:4]), int(padded[4:6]), int(padded[6:8]), int(padded[8:10]),
            int(padded[10:12]), tzinfo=BEIJING,
        )  # fmt: skip
    except ValueError:
        return None
    if export_type == "hour":
        return Partition("hour", raw_date[:10], full.replace(minute=0))
    return Partition("day", raw_date[:8], full.replace(hour=0, minute=0))
