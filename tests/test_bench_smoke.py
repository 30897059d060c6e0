"""The benchmark still runs and writes well-formed JSON (smoke mode: never a speed check)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _summary(s: Any) -> None:
    assert set(s) >= {"median", "p25", "p75", "min", "max", "n", "samples"}
    assert s["n"] == len(s["samples"]) >= 1
    for key in ("median", "p25", "p75", "min", "max"):
        assert isinstance(s[key], float | int) and math.isfinite(s[key]) and s[key] >= 0
    assert s["min"] <= s["p25"] <= s["median"] <= s["p75"] <= s["max"]


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--quiet", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Server, success path" in proc.stdout
    data = json.loads(out.read_text())
    assert data["schema"] == "grpc-terminal-bench/1"
    assert data["mode"] == "smoke"
    assert {"python", "grpcio", "protobuf"} <= set(data["machine"])
    reps = data["config"]["reps"]

    assert set(data["server_success"]) == {"sync unary", "sync stream", "aio unary", "aio stream"}
    for variants in data["server_success"].values():
        assert {"none", "passthrough", "noop", "ours"} <= set(variants)
        for r in variants.values():
            _summary(r["cpu_us_per_rpc"])
            assert r["cpu_us_per_rpc"]["n"] == reps
            _summary(r["ratio_to_none"])
            _summary(r["ratio_to_noop"])
            assert r["outcomes"] == ["ok"]

    assert set(data["client_success"]) == {"sync unary", "sync stream", "aio unary", "aio stream"}
    for variants in data["client_success"].values():
        assert set(variants) == {"none", "noop", "ours", "ours-interceptors", "proxy"}
        for r in variants.values():
            _summary(r["cpu_us_per_rpc"])
            assert r["outcomes"] == ["ok"]

    assert "Failure path, headline" in proc.stdout
    assert len(data["failure_e2e"]) == 2
    for variants in data["failure_e2e"].values():
        assert set(variants) == {"context.abort", "hand-written", "ours"}
        for r in variants.values():
            for key in ("total_cpu_us_per_rpc", "server_cpu_us_per_rpc", "server_ratio_to_hand_written",
                        "total_ratio_to_hand_written", "server_ratio_to_context_abort"):
                _summary(r[key])
        # The typed error really came back on the grpc-terminal side, a raw one on the others.
        assert variants["ours"]["outcomes"] == ["UserNotProvisionable"]
        assert variants["context.abort"]["outcomes"] != ["UserNotProvisionable"]
        assert variants["hand-written"]["outcomes"] != ["UserNotProvisionable"]

    assert len(data["failure_load"]) == 2
    for variants in data["failure_load"].values():
        assert set(variants) == {"hand-written", "ours"}
        for r in variants.values():
            for key in ("failing_rpcs_per_s", "server_cpu_us_per_rpc", "rate_ratio_to_hand_written",
                        "server_ratio_to_hand_written"):
                _summary(r[key])
        assert variants["ours"]["outcomes"] == ["UserNotProvisionable"]

    wrapper = data["client_wrapper"]
    for name in ("sync direct", "sync intercept_channel", "aio direct", "aio aio_intercept_channel",
                 "_sync_added_us", "_aio_added_us"):
        _summary(wrapper[name])

    codec = data["codec"]
    cases = [name for name in codec if not name.startswith("_")]
    assert len(cases) == 10
    for name in cases:
        _summary(codec[name])
    _summary(codec["_sync_failure_added_us"])
    _summary(codec["_aio_failure_added_us"])
    assert codec["_sizes"]["worst_trailer_bytes"] <= codec["_sizes"]["budget"]

    profile = data["failure_profile"]
    assert set(profile) == {"context.abort", "hand-written", "ours"}
    for r in profile.values():
        assert r["us_per_rpc"] > 0 and all(v >= 0 for v in r["parts"].values())
    assert "  of which encode (the codec)" in profile["ours"]["parts"]
    assert "Failure path, sync server, cProfile" in proc.stdout
    pieces = data["failure_in_process"]
    assert len(pieces) == 4 and all(v > 0 for v in pieces.values())

    scaling = data["codec_scaling"]
    assert set(scaling) == {"violations", "detail"}
    for series in scaling.values():
        unit = series["unit"]
        sizes = [p[unit] for p in series["points"]]
        assert sizes == sorted(sizes) and len(sizes) == 5
        assert all(p["trailer_bytes"] <= codec["_sizes"]["budget"] for p in series["points"])
        assert len(series["steps"]) == 4 and math.isfinite(series["exponent_top"])

    retry = data["retry"]
    scenarios = {name: r for name, r in retry.items() if not name.startswith("_")}
    assert len(scenarios) == 5
    for r in scenarios.values():
        _summary(r)
    assert set(scenarios["grpc-terminal server + our retrier"]["attempts"]) == {1}
    assert set(scenarios["without grpc-terminal (UNKNOWN, code-only retrier)"]["attempts"]) == {5}
    assert set(scenarios["gRPC service-config retry, grpc-terminal server"]["attempts"]) == {1}
