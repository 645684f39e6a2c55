"""How long the CLI takes to start (issue #29): the median wall time of each command
over N fresh interpreters, next to the floor, ``python -c "import typer, rich"``.

    python -m bench.startup [--runs N] [--no-warmup]

Each command runs as a new process, as a user types it (output to /dev/null), with
the interpreter running this script; the ratio column divides by the floor measured
in the same run, so runs on different or busy machines compare by ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

from iadbench.devices import cpu_model

ADBENCH = [sys.executable, "-m", "iadbench"]
FLOOR = ("python -c 'import typer, rich'", [sys.executable, "-c", "import typer, rich"])
COMMANDS = [
    FLOOR,
    ("adbench --help", [*ADBENCH, "--help"]),
    ("adbench list detectors", [*ADBENCH, "list", "detectors"]),
    ("adbench plugins", [*ADBENCH, "plugins"]),
    ("adbench run --help", [*ADBENCH, "run", "--help"]),
]


def wall_time(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per command (default 7)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first run of each command")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    env_note = {k: v for k, v in os.environ.items() if k.startswith("IADBENCH_")}
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); python {platform.python_version()}; "
          f"median of {args.runs} runs" + (f"; environment {env_note}" if env_note else ""))
    timings: dict[str, list[float]] = {}
    for label, command in COMMANDS:
        if not args.no_warmup:
            wall_time(command)  # file cache and .pyc warm, as on a second invocation
        timings[label] = [wall_time(command) for _ in range(args.runs)]
    floor = statistics.median(timings[FLOOR[0]])
    width = max(len(label) for label, _ in COMMANDS)
    print(f"{'command':<{width}}  {'median s':>8}  {'min s':>6}  {'x floor':>7}")
    for label, _ in COMMANDS:
        median = statistics.median(timings[label])
        print(f"{label:<{width}}  {median:8.3f}  {min(timings[label]):6.3f}  {median / floor:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
