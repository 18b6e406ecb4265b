r"""Split the body of a KSC syslog event into its `Key: value` items.

Kaspersky Security Center writes the event description as items separated
by the literal four characters `\r\n` (backslash, r, backslash, n). The
`message` value of a FluentD record (after JSON decoding, one line wrapped
after each separator here) reads

    Event type: Processing error\r\nName: WINWORD.EXE\r\n
    Application path: C:\Program Files\Microsoft Office\root\Office16\r\n
    Process ID: 12820\r\nUser: EXAMPLE\User1 (Initiator)\r\n
    Component: File Threat Protection\r\nResult description: Processing error\r\n
    Object type: File\r\n
    Path to object: \\server.example.com\profiles$\User1\Outlook\r\n
    Object name: User1@example.org.ost\r\nReason: Read error

Backslashes in the body are not escaped, so `Office16\root` contains `\r`, a UNC
path starts with `\\server`, and a path that ends in `\` runs into the
separator (`Application\Path: C:\...\Kaspersky Endpoint Security for
Windows\\r\n` in a KES 11 "Task stopped" event). The text is therefore split
only on the exact four-character separator, left to right, and on real line
breaks, never by replacing `\r` on its own.

Keys come through as sent: hierarchical (`Result\Description`), flat
(`Result description`) or localized (`Описание результата`).
"""

from __future__ import annotations

import apache_beam as beam

from transforms.batches import Record, apply_step

BOM = "\ufeff"
# The item separator as it appears in the text: backslash r backslash n.
LITERAL_CRLF = "\\r\\n"
_KEY_SPACE = " \t"


def _split_items(text: str) -> list[str]:
    r"""Split on the literal `\r\n`, then on real CR LF, LF and CR.

    `str.split` scans left to right, and the four-character separator cannot
    overlap itself, so the first `\r\n` found is always the one that a
    left-to-right scan would take.
    """
    # NOTE: a path with a folder `r` followed by one whose name starts with `n`
    # (`C:\r\new`) contains the separator, and is split there like KSC's own
    # item breaks, because nothing in the text distinguishes the two.
    items: list[str] = []
    for chunk in text.split(LITERAL_CRLF):
        # Real line-break characters only: `str.splitlines` would also split
        # on form feeds, U+2028 and other characters that a value may contain.
        chunk = chunk.replace("\r\n", "\n").replace("\r", "\n")
        items.extend(chunk.split("\n"))
    return items


def _find_key_colon(item: str) -> int:
    """Return the offset of the first `:` followed by a space or tab, or -1."""
    colon = item.find(":")
    while colon >= 0:
        if item[colon + 1 : colon + 2] in (" ", "\t"):
            return colon
        colon = item.find(":", colon + 1)
    return -1


def split_item(item: str) -> tuple[str, str]:
    r"""Split one body item at its first `:` followed by spaces or tabs.

    An item without such a colon (a free sentence, `C:\path`) gives
    ("", item) with surrounding whitespace removed.
    """
    colon = _find_key_colon(item)
    if colon < 0:
        return "", item.strip()
    key = item[:colon].strip()
    value_start = colon + 1
    while value_start < len(item) and item[value_start] in _KEY_SPACE:
        value_start += 1
    return key, item[value_start:].rstrip()


def parse_message_body(text: str) -> list[tuple[str, str]]:
    """Return the (key, value) items of a message body in order.

    A leading BOM is removed and empty or whitespace-only items are skipped.
    `Result: Detected: EICAR` gives ("Result", "Detected: EICAR"), and
    `Object not disinfected. Reason: busy` gives ("", "Object not
    disinfected.") and ("Reason", "busy").
    """
    if text.startswith(BOM):
        text = text[1:]
    if "\t" in text or "\r" in text or "\n" in text:
        return _parse_items(_split_items(text))
    return _parse_common_body(text)


def _parse_common_body(text: str) -> list[tuple[str, str]]:
    r"""Parse a body without tabs or real line breaks, the common form.

    This fast path gives the same items as `_parse_items` and exists because
    it splits each item with one `str.partition`. Without tabs, the first
    `: ` is the first colon followed by a space or tab, and an item that
    contains a colon is never blank.
    """
    fields: list[tuple[str, str]] = []
    append = fields.append
    for item in text.split(LITERAL_CRLF):
        key, separator, value = item.partition(": ")
        if not separator:
            value = item.strip()
            if value:
                append(("", value))
            continue
        key = key.strip()
        if ". " in key:
            sentence_end = key.rfind(". ")
            append(("", key[: sentence_end + 1]))
            key = key[sentence_end + 2 :].strip()
        append((key, value.lstrip(" ").rstrip()))
    return fields


def _parse_items(items: list[str]) -> list[tuple[str, str]]:
    """Parse the items of any body, skipping blank ones."""
    fields: list[tuple[str, str]] = []
    for item in items:
        if not item.strip():
            continue
        key, value = split_item(item)
        # Keys are short labels and never hold a sentence end, so in Windows
        # Server protection bodies such as `Object not disinfected. Reason:
        # object cannot be disinfected` the sentence is an item of its own.
        sentence_end = key.rfind(". ")
        if sentence_end >= 0:
            fields.append(("", key[: sentence_end + 1]))
            key = key[sentence_end + 2 :].strip()
        fields.append((key, value))
    return fields


def parse_message(record: Record) -> None:
    """Add message_fields from `_message` (None gives [])."""
    message = record.get("_message")
    record["message_fields"] = [] if message is None else parse_message_body(message)


class ParseMessageBody(beam.PTransform):
    """Split the message body of each record into items without rejecting any line."""

    def expand(
        self, batches: beam.PCollection
    ) -> tuple[beam.PCollection, beam.PCollection]:
        return apply_step(batches, "ParseMessageBody", parse_message)
