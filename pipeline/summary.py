"""The run summary: counts of every outcome, and the check that they balance.

Every line read ends as an event, a dropped duplicate or a dead letter, so

    lines_read == sum(events_written) + duplicates_dropped + sum(dead_letters)

holds for a complete run. A file that fails part-way counts its lines read
before the failure, plus one `unreadable_file` dead letter that stands for
the rest of the file.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from transforms.schema import CATEGORIES


def merge_stats(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """Add two stats documents: numbers add, mappings merge, lists concatenate."""
    merged = dict(left)
    for key, value in right.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict):
            merged[key] = merge_stats(merged[key], value)
        elif isinstance(value, list):
            merged[key] = merged[key] + value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


class MergeStats(beam.CombineFn):
    """Combine stats documents from every step into one."""

    def create_accumulator(self) -> dict[str, Any]:
        return {}

    def add_input(self, accumulator, element):
        return merge_stats(accumulator, element)

    def merge_accumulators(self, accumulators):
        merged: dict[str, Any] = {}
        for accumulator in accumulators:
            merged = merge_stats(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


def finish_summary(stats: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """Build the summary document from merged stats and the run's header."""
    events = {category: 0 for category in CATEGORIES}
    events.update(stats.get("events_written", {}))
    dead_letters = dict(sorted(stats.get("dead_letters", {}).items()))
    summary = dict(header)
    summary.update(
        {
            "inputs": sorted(stats.get("inputs", []), key=lambda item: item["pattern"]),
            "files_read": stats.get("files_read", 0),
            "files_unreadable": sorted(stats.get("files_unreadable", [])),
            "lines_read": stats.get("lines_read", 0),
            "events_written": events,
            "duplicates_dropped": stats.get("duplicates_dropped", 0),
            "duplicates_already_stored": stats.get("duplicates_already_stored", 0),
            "dead_letters": dead_letters,
            "files_written": len(stats.get("files_written", [])),
        }
    )
    summary["lines_accounted"] = accounted_lines(summary)
    summary["balanced"] = summary["lines_accounted"] == summary["lines_read"]
    return summary


def accounted_lines(summary: dict[str, Any]) -> int:
    """Count the lines that ended as an event, a duplicate or a dead letter."""
    return (
        sum(summary["events_written"].values())
        + summary["duplicates_dropped"]
        + sum(summary["dead_letters"].values())
    )


def format_summary(summary: dict[str, Any]) -> str:
    """Render the summary as the table printed at the end of a run."""
    rows: list[tuple[str, str]] = [
        ("run id", summary["run_id"]),
        ("input patterns", str(len(summary["inputs"]))),
        ("files read", str(summary["files_read"])),
        ("files unreadable", str(len(summary["files_unreadable"]))),
        ("lines read", str(summary["lines_read"])),
    ]
    for category, count in summary["events_written"].items():
        rows.append((f"events written: {category}", str(count)))
    rows.append(("duplicates dropped", str(summary["duplicates_dropped"])))
    rows.append(
        ("  of which stored by earlier runs", str(summary["duplicates_already_stored"]))
    )
    for code, count in summary["dead_letters"].items():
        rows.append((f"dead letters: {code}", str(count)))
    rows.append(("lines accounted for", str(summary["lines_accounted"])))
    rows.append(("books balance", "yes" if summary["balanced"] else "NO"))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    for item in summary["inputs"]:
        note = f"  ({item['error']})" if item.get("error") else ""
        lines.append(f"input {item['pattern']}: {item['files']} files{note}")
    for path in summary["files_unreadable"]:
        lines.append(f"unreadable: {path}")
    return "\n".join(lines)
