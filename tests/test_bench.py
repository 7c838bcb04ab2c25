"""The benchmark (bench/run.py) runs end to end, and compares like with like.

The figures themselves depend on the machine and are not asserted; what is
asserted is that the benchmark finishes, reports every figure, finds no loss,
and that the three collectors it compares answer the same requests the same
way, so that a ratio between them measures the framework and nothing else.
"""

import importlib.util
import json
import shutil
import subprocess
import sys

import httpx
import pytest
from conftest import ROOT, RedisServer, need

ENTRY = {
    "service_name": "payment-service",
    "level": "ERROR",
    "message": "Transaction failed",
}
FIELDS = {*ENTRY, "id", "timestamp"}


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_run", ROOT / "bench" / "run.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need_tools(*tools: str) -> None:
    for tool in tools:
        need(shutil.which(tool) is not None, f"{tool} is not on PATH")


def test_benchmark_runs_reports_every_figure_and_loses_nothing(docker):
    need_tools("wrk", "redis-server", "redis-benchmark", "node", "npm")

    # Short runs: this proves the benchmark works, not how fast anything is.
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--duration", "1", "--warmup", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Nothing lost" in out
    for row in (
        "solution            1",
        "naive               1",
        "express             1",
    ):
        assert row in out, row
    for figure in (
        "redis-benchmark LPUSH",
        "solution / naive",
        "solution / Express",
        "/ Redis LPUSH ceiling",
        "solution p99",
        "added over the base",
        "after a code-only change",
        "dependency layer cached",
        "load average",
    ):
        assert figure in out, figure
    assert "non-2xx by status" not in out, out


BAD = {
    "missing message": ({k: v for k, v in ENTRY.items() if k != "message"}, "message"),
    "blank service_name": ({**ENTRY, "service_name": "  "}, "service_name"),
    "unknown level": ({**ENTRY, "level": "LOUD"}, "level"),
    "extra field": ({**ENTRY, "mesage": "typo"}, "mesage"),
    "message too long": ({**ENTRY, "message": "m" * 16_385}, "message"),
    "number as message": ({**ENTRY, "message": 7}, "message"),
}


@pytest.mark.parametrize("kind", ["solution", "naive", "express"])
def test_benchmarked_collectors_answer_alike(kind, redis_server: RedisServer, tmp_path):
    bench = load_bench()
    if kind == "express":
        need_tools("node", "npm")
        assert bench.npm_install()
    queue = redis_server.client()

    with bench.serve(kind, 1, redis_server.port, tmp_path) as server:
        url = server.url
        accepted = httpx.post(url + "/logs", json=ENTRY)
        rejected = {
            name: httpx.post(url + "/logs", json=body)
            for name, (body, _) in BAD.items()
        }
        too_big = httpx.post(url + "/logs", json={**ENTRY, "message": "x" * 70_000})
        array = httpx.post(url + "/logs", json=[ENTRY])
        health = httpx.get(url + "/health")

    assert accepted.status_code == 202, accepted.text
    entry = accepted.json()
    assert list(entry) == ["service_name", "level", "message", "id", "timestamp"]
    assert [json.loads(line) for line in queue.lrange("logs_queue", 0, -1)] == [entry]
    for name, (_, field) in BAD.items():
        response = rejected[name]
        assert response.status_code == 422, (name, response.text)
        assert ["body", field] in [e["loc"] for e in response.json()["detail"]], name
    assert too_big.status_code == 413
    assert array.status_code == 422
    assert health.json() == {"status": "ok", "redis": "up"}


def test_express_dependencies_are_pinned_and_locked():
    package = json.loads((ROOT / "bench/express/package.json").read_text())
    lock = json.loads((ROOT / "bench/express/package-lock.json").read_text())

    for name, version in package["dependencies"].items():
        assert version[0].isdigit(), f"{name} is not pinned: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    ignored = (ROOT / ".gitignore").read_text()
    assert "/bench/express/node_modules/" in ignored
