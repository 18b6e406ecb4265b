"""Keep lines of other products out of the events.

A bucket that FluentD fills from one syslog port often receives other
devices' syslog too. A line is taken as a Kaspersky Security Center export
when its structured data has an `event@<digits>` element with an `et`
parameter, or when its APP-NAME has the form `PRODUCT|version` (`KES|11.0.0.0`,
`KES|`) and its structured data is absent (a relay dropped it) or is such an
element. A bare `@23668` is no evidence: a VMware line carries
`[Originator@6876 opID="host-17@23668-2a"]`.
"""

from __future__ import annotations

import re

import apache_beam as beam

from transforms.batches import Record, apply_step
from transforms.errors import LineRejected

KASPERSKY_SD_ID = re.compile(r"event@\d+")
KASPERSKY_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}\|[0-9A-Za-z._-]*")


def is_kaspersky(ident: str | None, sd_id: str | None, sd_params: dict) -> bool:
    """Tell whether the syslog fields are those of a KSC export."""
    kaspersky_element = sd_id is not None and KASPERSKY_SD_ID.fullmatch(sd_id)
    if kaspersky_element and "et" in sd_params:
        return True
    ident_matches = ident is not None and KASPERSKY_IDENT.fullmatch(ident)
    return bool(ident_matches and (sd_id is None or kaspersky_element))


def reject_foreign(record: Record) -> None:
    """Raise `LineRejected("not_kaspersky")` for another product's line."""
    ident = record.get("_ident")
    sd_id = record.get("sd_id")
    if not is_kaspersky(ident, sd_id, record.get("sd_params") or {}):
        raise LineRejected(
            "not_kaspersky",
            f"line from ident {ident!r} with structured data {sd_id!r} is not "
            "a Kaspersky Security Center export",
        )


class RejectForeignLines(beam.PTransform):
    """Route lines of other products to the dead letters as `not_kaspersky`."""

    def expand(self, batches: beam.PCollection):
        return apply_step(batches, "RejectForeignLines", reject_foreign)
