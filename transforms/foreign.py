"""Keep lines of other products out of the events.

A bucket that FluentD fills from one syslog port often receives other
devices' syslog too. A line is taken as a Kaspersky Security Center export
when its structured data has an `event@<digits>` element with an `et`
parameter. It is one too when its APP-NAME is `PRODUCT|version` with a
Kaspersky product code (`KES|11.0.0.0`, `KES|`, listed in
`transforms/data/products.csv`) and its structured data is absent (a relay
dropped it) or is such an element.
A bare `@23668` is no evidence: a VMware line carries
`[Originator@6876 opID="host-17@23668-2a"]`.

Lines that FluentD's syslog parser could not split (`emit_unmatched_lines`
stores them as `{"unmatched_line": "<10>1 2022-02-28T15:48:55Z ..."}`) and
KSC's CEF export get reasons of their own, so they are not mistaken for
another product's lines.
"""

from __future__ import annotations

import functools
import re

import apache_beam as beam

from transforms import tables
from transforms.batches import Record, apply_step
from transforms.errors import LineRejected

KASPERSKY_SD_ID = re.compile(r"event@\d+")
KASPERSKY_IDENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]{0,31})\|[0-9A-Za-z._-]*")
_CEF_KASPERSKY = re.compile(r"CEF:\d+\|KasperskyLab\|")
_QUOTED_CHARS = 120


@functools.cache
def product_codes() -> frozenset[str]:
    """Load the Kaspersky product codes of products.csv."""
    return frozenset(row["code"] for row in tables.read_rows("products.csv"))


def is_kaspersky(ident: str | None, sd_id: str | None, sd_params: dict) -> bool:
    """Tell whether the syslog fields are those of a KSC export."""
    kaspersky_element = sd_id is not None and KASPERSKY_SD_ID.fullmatch(sd_id)
    if kaspersky_element and "et" in sd_params:
        return True
    match = KASPERSKY_IDENT.fullmatch(ident) if ident is not None else None
    if match is None or match.group(1) not in product_codes():
        return False
    return sd_id is None or bool(kaspersky_element)


def _quote(text: str) -> str:
    if len(text) > _QUOTED_CHARS:
        text = text[:_QUOTED_CHARS] + "..."
    return repr(text)


def reject_foreign(record: Record) -> None:
    """Raise `LineRejected` for a line that is not a KSC syslog export."""
    ident = record.get("_ident")
    sd_id = record.get("sd_id")
    if is_kaspersky(ident, sd_id, record.get("sd_params") or {}):
        return
    payload = record.get("_record") or {}
    unmatched = payload.get("unmatched_line")
    if isinstance(unmatched, str):
        raise LineRejected(
            "unmatched_syslog",
            f"FluentD's syslog parser could not split the message {_quote(unmatched)}; "
            "check that in_syslog uses message_format rfc5424",
        )
    message = record.get("_message") or ""
    if _CEF_KASPERSKY.search(message) or _CEF_KASPERSKY.search(unmatched or ""):
        raise LineRejected(
            "unsupported_format",
            f"message {_quote(message)} is a KSC CEF export; export events as "
            "syslog (RFC 5424) instead",
        )
    if ident is None and sd_id is None:
        detail = (
            "record has no ident (APP-NAME) and no structured data, so nothing "
            "marks it as a Kaspersky Security Center export"
        )
    else:
        detail = (
            f"line from ident {ident!r} with structured data {sd_id!r} is not a "
            "Kaspersky Security Center export"
        )
    raise LineRejected("not_kaspersky", detail)


class RejectForeignLines(beam.PTransform):
    """Route lines of other products to the dead letters as `not_kaspersky`."""

    def expand(self, batches: beam.PCollection):
        return apply_step(batches, "RejectForeignLines", reject_foreign)
