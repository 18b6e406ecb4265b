"""Benchmark the whole batch job against a floor measured on the same files.

    python -m benchmarks.run --events 200000

It writes `--events` distinct events with `benchmarks.synthetic` (the corpus
mix over many hosts and four days, about 1 % re-uploaded duplicates, 0.5 %
broken lines and 0.2 % other products' lines), then measures

- the floor: one process that reads the same files with the pipeline's own
  decompression and decodes each line's JSON record with orjson;
- the CLI (`python -m pipeline`) in a subprocess, once per runner mode:
  `--direct_running_mode=in_memory`, and `multi_processing` with
  `--direct_num_workers=2`.

For every run it reports lines per second, the ratio to the floor, the CPU
seconds of the process tree, and the peak resident memory of the process
tree (psutil samples the CLI and all its children every 50 ms). It checks
the run's books (the summary balances, every generated line was read) and
the rows: the Parquet row count equals the summary's events, no event id is
stored twice, and every distinct generated event is there. A failed check
exits with status 1. Results are printed as a Markdown table and stored as
`results.json` in the work folder.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import apache_beam as beam
import orjson
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from benchmarks.synthetic import generate
from transforms.read import iter_blocks
from transforms.schema import EVENT_PARTITIONING

SAMPLE_SECONDS = 0.05
_READ_BLOCK_BYTES = 1024 * 1024
MODES = {
    "in_memory": ["--direct_running_mode=in_memory"],
    "multi_processing": [
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ],
}


@dataclass
class Measurement:
    """One measured run: throughput, CPU, memory and the result of its checks."""

    name: str
    lines: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    checks: dict[str, bool] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    # 1-minute load average of the machine before and after the run: a value
    # above the core count means other processes competed for the CPU.
    load_before: float = 0.0
    load_after: float = 0.0

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds


def input_files(data_dir: str) -> list[str]:
    """List the generated object files, without the manifest."""
    pattern = os.path.join(data_dir, "kav", "**")
    return sorted(
        path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path)
    )


def measure_floor(paths: Sequence[str]) -> Measurement:
    """Read and decompress every file and decode each line's record with orjson."""
    load_before = os.getloadavg()[0]
    started_cpu = time.process_time()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    lines = 0
    for path in paths:
        data = b"".join(iter_blocks(path, _READ_BLOCK_BYTES))
        for line in data.split(b"\n"):
            if not line:
                continue
            lines += 1
            record = line.rsplit(b"\t", 1)[-1]
            try:
                orjson.loads(record)
            except orjson.JSONDecodeError:
                pass
    seconds = time.perf_counter() - started
    peak_kib = max(peak_before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return Measurement(
        name="floor (read + orjson)",
        lines=lines,
        seconds=seconds,
        cpu_seconds=time.process_time() - started_cpu,
        peak_rss_bytes=peak_kib * 1024,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )


def _tree_rss(process: psutil.Process) -> int:
    """Sum the resident memory of a process and all its descendants."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run_cli(name: str, command: list[str], log_path: str) -> tuple[Measurement, int]:
    """Run the CLI in a subprocess, sampling its process tree; returns the exit code.

    CPU time comes from `RUSAGE_CHILDREN`, which covers the CLI and every
    worker process it waited for.
    """
    env = dict(os.environ, NO_GCE_CHECK="true", AWS_EC2_METADATA_DISABLED="true")
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    peak = 0
    with open(log_path, "wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        process = psutil.Process(child.pid)
        while child.poll() is None:
            peak = max(peak, _tree_rss(process))
            time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
        cpu_after.ru_stime - cpu_before.ru_stime
    )
    measurement = Measurement(
        name=name,
        lines=0,
        seconds=seconds,
        cpu_seconds=cpu,
        peak_rss_bytes=peak,
        command=command,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )
    return measurement, child.returncode


def check_run(
    output: str, run_id: str, manifest: dict[str, Any], exit_code: int
) -> tuple[dict[str, bool], int]:
    """Check a run's books and rows against the manifest; returns checks and lines."""
    checks = {"exit status 0": exit_code == 0}
    summary_file = os.path.join(output, "_runs", f"{run_id}.json")
    if not os.path.exists(summary_file):
        checks["summary written"] = False
        return checks, 0
    with open(summary_file, encoding="utf-8") as handle:
        summary = json.load(handle)
    events = sum(summary["events_written"].values())
    checks["books balance"] = bool(summary["balanced"])
    checks["every line read"] = summary["lines_read"] == manifest["lines_total"]
    table = ds.dataset(
        output,
        format="parquet",
        partitioning=ds.partitioning(EVENT_PARTITIONING, flavor="hive"),
        ignore_prefixes=["_", "."],
    ).to_table(columns=["event_id"])
    checks["rows equal events written"] = table.num_rows == events
    unique_ids = len(pc.unique(table.column("event_id")))
    checks["no event id twice"] = unique_ids == table.num_rows
    checks["every distinct event kept"] = table.num_rows >= manifest["distinct_events"]
    return checks, summary["lines_read"]


def run_mode(
    mode: str, data_dir: str, work_dir: str, manifest: dict[str, Any]
) -> Measurement:
    """Run the CLI once in a runner mode and check what it wrote."""
    output = os.path.join(work_dir, f"out-{mode}")
    shutil.rmtree(output, ignore_errors=True)
    run_id = f"benchmark-{mode.replace('_', '-')}"
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "--input",
        os.path.join(data_dir, "kav", "**"),
        "--output",
        output,
        "--run_id",
        run_id,
        *MODES[mode],
    ]
    log_path = os.path.join(work_dir, f"{mode}.log")
    measurement, exit_code = run_cli(mode, command, log_path)
    measurement.checks, measurement.lines = check_run(
        output, run_id, manifest, exit_code
    )
    if exit_code != 0:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            sys.stderr.write(handle.read()[-4000:])
    return measurement


def machine() -> dict[str, Any]:
    """Describe the machine and the software versions of the run."""
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "beam": beam.__version__,
        "pyarrow": pa.__version__,
        "platform": platform.platform(),
    }


def format_table(floor: Measurement, runs: Sequence[Measurement], events: int) -> str:
    """Format the measurements as a Markdown table."""
    lines = [
        "| run | lines | seconds | lines/s | x floor | CPU s | peak RSS MiB "
        "| MiB per 1M events | load before/after | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for item in (floor, *runs):
        ratio = item.lines_per_second / floor.lines_per_second
        mib = item.peak_rss_bytes / 2**20
        per_million = mib * 1_000_000 / events
        passed = (
            "-"
            if not item.checks
            else ("pass" if all(item.checks.values()) else "FAIL")
        )
        lines.append(
            f"| {item.name} | {item.lines} | {item.seconds:.1f} "
            f"| {item.lines_per_second:,.0f} | {ratio:.3f} | {item.cpu_seconds:.1f} "
            f"| {mib:,.0f} | {per_million:,.0f} "
            f"| {item.load_before:.1f}/{item.load_after:.1f} | {passed} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the input, measure the floor and each runner mode, print results."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark the batch job on synthetic KSC exports.",
    )
    parser.add_argument(
        "--events", type=int, default=200_000, help="distinct events to generate"
    )
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    parser.add_argument(
        "--work_dir",
        help="folder for input, outputs and logs (default: a new temporary folder)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=sorted(MODES),
        default=list(MODES),
        help="runner modes to measure (default: all)",
    )
    args = parser.parse_args(argv)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="kav-benchmark-")
    os.makedirs(work_dir, exist_ok=True)
    data_dir = os.path.join(work_dir, "input")
    manifest_path = os.path.join(data_dir, "_manifest.json")
    manifest = None
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
        expected = {"events": args.events, "seed": args.seed}
        if {key: manifest["parameters"][key] for key in expected} != expected:
            shutil.rmtree(data_dir)
            manifest = None
    if manifest is None:
        print(f"Generating {args.events} events in {data_dir}", file=sys.stderr)
        manifest = generate(data_dir, args.events, seed=args.seed)
    paths = input_files(data_dir)

    floor = measure_floor(paths)
    runs = [run_mode(mode, data_dir, work_dir, manifest) for mode in args.modes]

    results = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "input": {
            key: manifest[key]
            for key in (
                "files_written",
                "lines_total",
                "distinct_events",
                "duplicate_lines",
                "broken_lines",
                "foreign_lines",
                "hosts",
            )
        },
        "input_bytes": sum(os.path.getsize(path) for path in paths),
        "floor": asdict(floor),
        "runs": [asdict(run) for run in runs],
    }
    with open(os.path.join(work_dir, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    print(
        json.dumps(
            {key: results[key] for key in ("date", "machine", "input")}, indent=1
        )
    )
    print(format_table(floor, runs, manifest["distinct_events"]))
    failed = [
        f"{run.name}: {name}"
        for run in runs
        for name, passed in run.checks.items()
        if not passed
    ]
    for failure in failed:
        print(f"check failed: {failure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
