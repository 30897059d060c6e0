"""Run every benchmark, print the tables and write the JSON results.

``python -m benchmarks`` (full, a few minutes) or ``python -m benchmarks
--smoke`` (tiny counts, seconds: checks the benchmark still runs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

import grpc_terminal as gt
from benchmarks import _service as svc
from benchmarks._stats import summarize
from benchmarks._workers import ClientProc, ServerProc, measure
from benchmarks.codec import run_codec, run_scaling
from benchmarks.profile_server import in_process as profile_in_process
from benchmarks.profile_server import summary as profile_summary
from benchmarks.retry import run_retry
from benchmarks.wrapper import run_wrapper

__all__ = ["Config", "main", "run"]

STYLES = ("sync", "aio")
#: The failing-RPC variants: (server interceptor, handler mode, client variant).
#: *hand-written* sends the same google.rpc.Status as *ours*, built by hand with
#: grpcio-status, and its client reads it back with ``rpc_status.from_call``.
FAILURE_VARIANTS: dict[str, tuple[str, str, str]] = {
    "context.abort": ("none", "abort", "none"),
    "hand-written": ("none", "status", "grpcio-status"),
    "ours": ("ours", "raise", "ours"),
}
#: Concurrent callers under load: aio tasks on one client, sync threads on one client.
LOAD_CONCURRENCY = {"aio": 64, "sync": 16}
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA = "grpc-terminal-bench/1"


@dataclass(frozen=True)
class Config:
    """Counts for one run."""

    reps: int
    unary_rpcs: int
    stream_rpcs: int
    failing_rpcs: int
    warmup_rpcs: int
    concurrency: int
    codec_samples: int
    codec_target_s: float
    retry_reps: int
    load_rpcs: int
    load_reps: int
    profile_rpcs: int
    initial_backoff: float
    max_backoff: float
    multiplier: float


FULL = Config(
    reps=8, unary_rpcs=1000, stream_rpcs=800, failing_rpcs=600, warmup_rpcs=200, concurrency=1,
    codec_samples=21, codec_target_s=0.05, retry_reps=3, load_rpcs=4000, load_reps=5, profile_rpcs=3000,
    initial_backoff=0.1, max_backoff=1.0, multiplier=2.0,
)
SMOKE = Config(
    reps=2, unary_rpcs=25, stream_rpcs=10, failing_rpcs=20, warmup_rpcs=10, concurrency=2,
    codec_samples=3, codec_target_s=0.002, retry_reps=1, load_rpcs=128, load_reps=1, profile_rpcs=50,
    initial_backoff=0.005, max_backoff=0.02, multiplier=2.0,
)


def _rpcs(cfg: Config, kind: str) -> int:
    return cfg.unary_rpcs if kind == "unary" else cfg.stream_rpcs


def _rotated(items: Sequence[str], rep: int) -> list[str]:
    """``items`` in a different order each repetition (rotation, then a seeded shuffle of the rest)."""
    shift = rep % len(items)
    order = list(items[shift:]) + list(items[:shift])
    rest = order[1:]
    random.Random(rep).shuffle(rest)
    return [order[0], *rest]


def _ratios(samples: dict[str, list[float]], base: str) -> dict[str, dict[str, Any]]:
    """Per-repetition ratio of each variant to ``base`` (paired: same repetition, adjacent in time)."""
    out = {}
    for variant, values in samples.items():
        pairs = zip(values, samples[base], strict=True)
        out[variant] = summarize([v / b for v, b in pairs if b > 0])
    return out


def _group(rows: dict[str, list[dict[str, Any]]], field: str) -> dict[str, list[float]]:
    return {variant: [s[field] for s in samples] for variant, samples in rows.items()}


def _success_benchmarks(cfg: Config, log: Any) -> dict[str, Any]:
    variants = svc.server_variants()
    if "grpc-interceptor" not in variants:
        log("grpc-interceptor is not installed: its variant is left out")
    servers = {(style, v): ServerProc(style, v) for style in STYLES for v in variants}
    clients = {(style, v): ClientProc(style, v) for style in STYLES for v in svc.CLIENT_VARIANTS}
    # The failure path has processes of its own: a process that served or
    # received failures costs more per RPC afterwards, which would bias the
    # success rows of whichever variants took part.
    failing = {(style, v): (ServerProc(style, server), ClientProc(style, client))
               for style in STYLES for v, (server, _, client) in FAILURE_VARIANTS.items()}
    try:
        for proc in [*clients.values(), *(c for _, c in failing.values())]:
            proc.wait_ready()
        driver = clients[("aio", "none")]
        client_server = servers[("aio", "none")]
        conc = {"sync": 1, "aio": cfg.concurrency}
        log("warming up")
        for server in servers.values():
            for kind in svc.KINDS:
                driver.run(server.port, kind, "ok", cfg.warmup_rpcs, cfg.concurrency)
        for (style, _variant), client in clients.items():
            for kind in svc.KINDS:
                client.run(client_server.port, kind, "ok", cfg.warmup_rpcs, conc[style])
        for (style, variant), (server, client) in failing.items():
            client.run(server.port, "unary", FAILURE_VARIANTS[variant][1], cfg.warmup_rpcs, conc[style])

        server_rows: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {
            (style, kind): {v: [] for v in variants} for style in STYLES for kind in svc.KINDS
        }
        client_rows: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {
            (style, kind): {v: [] for v in svc.CLIENT_VARIANTS} for style in STYLES for kind in svc.KINDS
        }
        failure_rows: dict[str, dict[str, list[dict[str, Any]]]] = {
            style: {v: [] for v in FAILURE_VARIANTS} for style in STYLES
        }
        for rep in range(cfg.reps):
            log(f"repetition {rep + 1}/{cfg.reps}")
            for style in _rotated(STYLES, rep):
                for kind in _rotated(svc.KINDS, rep):
                    for variant in _rotated(variants, rep):
                        server_rows[(style, kind)][variant].append(
                            measure(servers[(style, variant)], driver, kind, "ok", _rpcs(cfg, kind),
                                    cfg.concurrency)
                        )
                    for variant in _rotated(svc.CLIENT_VARIANTS, rep):
                        client_rows[(style, kind)][variant].append(
                            measure(client_server, clients[(style, variant)], kind, "ok", _rpcs(cfg, kind),
                                    conc[style])
                        )
                # End to end, one failing unary RPC: plain abort, the same status
                # built by hand, ours raising a TerminalError.
                for variant in _rotated(tuple(FAILURE_VARIANTS), rep):
                    server, client = failing[(style, variant)]
                    failure_rows[style][variant].append(
                        measure(server, client, "unary", FAILURE_VARIANTS[variant][1], cfg.failing_rpcs,
                                conc[style])
                    )
    finally:
        for proc in [*clients.values(), *servers.values(), *(p for pair in failing.values() for p in pair)]:
            proc.close()

    def section(rows: dict[str, list[dict[str, Any]]], field: str) -> dict[str, Any]:
        values = _group(rows, field)
        base = "none" if "none" in values else "context.abort"
        ratios = _ratios(values, base)
        out: dict[str, Any] = {}
        for variant, samples in rows.items():
            out[variant] = {
                "cpu_us_per_rpc": summarize(values[variant]),
                f"ratio_to_{base.replace('.', '_')}": ratios[variant],
                "outcomes": sorted({o for s in samples for o in s["outcomes"]}),
            }
            if field == "server_us" and "noop" in values:
                out[variant]["ratio_to_noop"] = _ratios(values, "noop")[variant]
            if field == "server_us" and "grpc-interceptor" in values:
                out[variant]["ratio_to_grpc_interceptor"] = _ratios(values, "grpc-interceptor")[variant]
        return out

    def e2e(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        totals = {v: [s["server_us"] + s["client_us"] for s in samples] for v, samples in rows.items()}
        servers = _group(rows, "server_us")
        ratios = _ratios(totals, "context.abort")
        server_to_abort = _ratios(servers, "context.abort")
        server_to_hand = _ratios(servers, "hand-written")
        total_to_hand = _ratios(totals, "hand-written")
        return {
            variant: {
                "server_cpu_us_per_rpc": summarize(servers[variant]),
                "client_cpu_us_per_rpc": summarize([s["client_us"] for s in samples]),
                "total_cpu_us_per_rpc": summarize(totals[variant]),
                "ratio_to_context_abort": ratios[variant],
                "server_ratio_to_context_abort": server_to_abort[variant],
                "server_ratio_to_hand_written": server_to_hand[variant],
                "total_ratio_to_hand_written": total_to_hand[variant],
                "outcomes": sorted({o for s in samples for o in s["outcomes"]}),
            }
            for variant, samples in rows.items()
        }

    return {
        "server_success": {
            f"{style} {kind}": section(rows, "server_us") for (style, kind), rows in server_rows.items()
        },
        "client_success": {
            f"{style} {kind}": section(rows, "client_us") for (style, kind), rows in client_rows.items()
        },
        "failure_e2e": {f"{style} server, {style} client, unary": e2e(rows)
                        for style, rows in failure_rows.items()},
    }


def _load_benchmarks(cfg: Config, log: Any) -> dict[str, Any]:
    """Failing RPCs per second under load: ours against the hand-written status, interleaved."""
    variants = ("hand-written", "ours")
    procs = {
        (style, v): (ServerProc(style, FAILURE_VARIANTS[v][0], workers=LOAD_CONCURRENCY["sync"]),
                     ClientProc(style, FAILURE_VARIANTS[v][2]))
        for style in STYLES for v in variants
    }
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {style: {v: [] for v in variants} for style in STYLES}
    try:
        for (style, v), (server, client) in procs.items():
            client.run(server.port, "unary", FAILURE_VARIANTS[v][1], cfg.warmup_rpcs, LOAD_CONCURRENCY[style])
        for rep in range(cfg.load_reps):
            log(f"under load: repetition {rep + 1}/{cfg.load_reps}")
            for style in _rotated(STYLES, rep):
                for v in _rotated(variants, rep):
                    server, client = procs[(style, v)]
                    rows[style][v].append(measure(server, client, "unary", FAILURE_VARIANTS[v][1],
                                                  cfg.load_rpcs, LOAD_CONCURRENCY[style]))
    finally:
        for pair in procs.values():
            for proc in pair:
                proc.close()
    out: dict[str, Any] = {}
    for style, by_variant in rows.items():
        rates = {v: [1e6 / s["wall_us"] for s in samples] for v, samples in by_variant.items()}
        servers = _group(by_variant, "server_us")
        rate_ratio = _ratios(rates, "hand-written")
        cpu_ratio = _ratios(servers, "hand-written")
        callers = f"{LOAD_CONCURRENCY[style]} {'tasks' if style == 'aio' else 'threads'}"
        out[f"{style} server, {style} client, {callers}"] = {
            v: {
                "failing_rpcs_per_s": summarize(rates[v]),
                "server_cpu_us_per_rpc": summarize(servers[v]),
                "rate_ratio_to_hand_written": rate_ratio[v],
                "server_ratio_to_hand_written": cpu_ratio[v],
                "outcomes": sorted({o for s in samples for o in s["outcomes"]}),
            }
            for v, samples in by_variant.items()
        }
    return out


def _machine() -> dict[str, Any]:
    from importlib import metadata

    from google.protobuf.internal import api_implementation

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "absent"

    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        models = (line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        model = next(models, "")
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "servers_and_clients_pinned": len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity")
        else False,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "grpcio": grpc.__version__,
        "protobuf": version("protobuf"),
        "protobuf_backend": api_implementation.Type(),
        "grpc_interceptor": version("grpc-interceptor"),
        "grpc_terminal": gt.__version__,
    }


def run(cfg: Config, log: Any = print) -> dict[str, Any]:
    """Every benchmark with ``cfg``; the JSON-ready result."""
    started = time.perf_counter()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "config": asdict(cfg),
    }
    result.update(_success_benchmarks(cfg, log))
    log("failure path under load")
    result["failure_load"] = _load_benchmarks(cfg, log)
    log("client success path: the wrapper alone, in process")
    result["client_wrapper"] = run_wrapper(cfg.codec_samples, cfg.codec_target_s)
    log("failure path: encode / decode")
    result["codec"] = run_codec(cfg.codec_samples, cfg.codec_target_s)
    log("failure path: a cProfile of a sync server's handler thread")
    result["failure_profile"] = profile_summary(cfg.profile_rpcs)
    result["failure_in_process"] = profile_in_process(200 if cfg.profile_rpcs < 1000 else 2000)
    log("failure path: encode time against the input size")
    result["codec_scaling"] = run_scaling(max(3, cfg.codec_samples // 3), cfg.codec_target_s)
    log("retry: giving up on a terminal failure")
    grpc_server_log = logging.getLogger("grpc._server")
    level = grpc_server_log.level
    grpc_server_log.setLevel(logging.CRITICAL)  # "Exception calling application" is the point here
    try:
        result["retry"] = run_retry(cfg.retry_reps, cfg.initial_backoff, cfg.max_backoff, cfg.multiplier)
    finally:
        grpc_server_log.setLevel(level)
    result["duration_s"] = time.perf_counter() - started
    return result


# -- the table ---------------------------------------------------------------------------


def _spread(s: dict[str, Any], fmt: str) -> str:
    return f"{format(s['median'], fmt)} [{format(s['p25'], fmt)}-{format(s['p75'], fmt)}]"


def _pct(s: dict[str, Any]) -> str:
    return f"{(s['median'] - 1) * 100:+.1f}% [{(s['p25'] - 1) * 100:+.1f}..{(s['p75'] - 1) * 100:+.1f}]"


def _table(title: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([f"**{title}**", "", line, sep, *body, ""])


def linearity(series: dict[str, Any]) -> str:
    """One sentence: how encode time grows with size over the largest sizes, and per step."""
    unit = "violations" if series["unit"] == "violations" else "KB"
    per_step = ", ".join(f"{s['exponent']:.2f}" for s in series["steps"])
    return (f"time grows as size^{series['exponent_top']:.2f} from {series['top_from']:,} to "
            f"{series['points'][-1][series['unit']]:,} {unit} (1 is linear); per step {per_step}")


def _scaling_tables(scaling: dict[str, Any]) -> str:
    out = []
    for name, title in (("violations", "field violations (message 13 B)"),
                        ("detail", "detail length (KB, no violations)")):
        series = scaling[name]
        unit = series["unit"]
        rows = [[f"{p[unit]:,}", f"{p['us']:.1f}", f"{p['us'] / p[unit]:.3g}", str(p["trailer_bytes"])]
                for p in series["points"]]
        per = "violation" if unit == "violations" else "KB"
        out.append(_table(f"Encode time against the {title}: {linearity(series)}",
                          [unit, "µs per encode", f"µs per {per}", "trailer bytes"], rows))
    return "\n".join(out)


def _profile_table(profile: dict[str, Any]) -> str:
    variants = list(profile)
    labels: list[str] = []
    for v in variants:
        labels += [label for label in profile[v]["parts"] if label not in labels]
    rows = [["handler thread, all of it", *(f"{profile[v]['us_per_rpc']:.0f}" for v in variants)]]
    for label in labels:
        rows.append([label, *(f"{profile[v]['parts'][label]:.0f}" if label in profile[v]["parts"] else ""
                              for v in variants)])
    n = profile[variants[0]]["rpcs"]
    return _table(
        f"Failure path, sync server, cProfile of the handler thread: CPU µs per failing RPC ({n} RPCs; "
        "the profiler reads the thread's clock twice per Python call, which inflates call-heavy code "
        "many times over: read which parts exist and their order, and the table below for their cost)",
        ["part", *variants], rows)


def render(result: dict[str, Any]) -> str:
    """Markdown tables of ``result`` (medians, with the interquartile range in brackets)."""
    out = []
    rows = []
    for group, variants in result["server_success"].items():
        for variant, r in variants.items():
            versus = r.get("ratio_to_grpc_interceptor")
            rows.append([group, variant, _spread(r["cpu_us_per_rpc"], ".1f"), _pct(r["ratio_to_none"]),
                         _pct(r["ratio_to_noop"]), _pct(versus) if versus else "n/a"])
    out.append(_table(
        "Server, success path: server process CPU µs per RPC",
        ["server", "interceptor", "CPU µs/RPC", "vs none", "vs no-op", "vs grpc-interceptor"], rows))
    rows = []
    for group, variants in result["client_success"].items():
        for variant, r in variants.items():
            rows.append([group, variant, _spread(r["cpu_us_per_rpc"], ".1f"), _pct(r["ratio_to_none"])])
    out.append(_table("Client, success path: client process CPU µs per RPC",
                      ["client", "interceptor", "CPU µs/RPC", "vs none"], rows))
    rows = []
    wrapper = result["client_wrapper"]
    for name, r in wrapper.items():
        if not name.startswith("_"):
            rows.append([name, _spread(r, ".2f"), ""])
    for style in ("sync", "aio"):
        added = wrapper[f"_{style}_added_us"]
        base = result["client_success"][f"{style} unary"]["none"]["cpu_us_per_rpc"]["median"]
        rows.append([f"{style}: added by the wrapper", _spread(added, ".2f"),
                     f"{added['median'] / base * 100:+.2f}% of a {base:.0f} µs unary call"])
    out.append(_table(
        "Client, success path, in process: µs per call through the wrapper (fakes answer at once)",
        ["case", "µs", "share of an RPC"], rows))
    rows = []
    for group, variants in result["failure_e2e"].items():
        ours = variants["ours"]
        rows.append([group, f"{ours['server_ratio_to_hand_written']['median']:.3f}",
                     _pct(ours["server_ratio_to_hand_written"]), _pct(ours["total_ratio_to_hand_written"]),
                     _pct(variants["hand-written"]["server_ratio_to_context_abort"]),
                     _pct(ours["server_ratio_to_context_abort"])])
    out.append(_table(
        "Failure path, headline: ours against the same google.rpc.Status written by hand with grpcio-status "
        "(paired per-repetition ratios)",
        ["pair", "server CPU ours / hand-written", "server", "server + client",
         "hand-written server vs abort", "ours server vs abort"], rows))
    rows = []
    for group, variants in result["failure_e2e"].items():
        for variant, r in variants.items():
            rows.append([group, variant, _spread(r["server_cpu_us_per_rpc"], ".1f"),
                         _spread(r["client_cpu_us_per_rpc"], ".1f"),
                         _spread(r["total_cpu_us_per_rpc"], ".1f"), _pct(r["ratio_to_context_abort"]),
                         _pct(r["server_ratio_to_hand_written"])])
    out.append(_table("Failure path, end to end: CPU µs per failing RPC",
                      ["pair", "failure", "server µs", "client µs", "total µs", "total vs abort",
                       "server vs hand-written"], rows))
    rows = []
    for group, variants in result["failure_load"].items():
        for variant, r in variants.items():
            rows.append([group, variant, _spread(r["failing_rpcs_per_s"], ".0f"),
                         _pct(r["rate_ratio_to_hand_written"]), _spread(r["server_cpu_us_per_rpc"], ".1f"),
                         _pct(r["server_ratio_to_hand_written"])])
    out.append(_table(
        f"Failure path under load: failing RPCs per second ({result['config']['load_rpcs']} per sample)",
        ["pair, callers", "failure", "RPCs/s", "RPCs/s vs hand-written", "server CPU µs/RPC",
         "server CPU vs hand-written"], rows))
    rows = []
    for name, r in result["codec"].items():
        if not name.startswith("_"):
            rows.append([name, _spread(r, ".1f")])
    for style in ("sync", "aio"):
        rows.append([f"{style}: added by the wrapper to a failing call",
                     _spread(result["codec"][f"_{style}_failure_added_us"], ".1f")])
    sizes = result["codec"]["_sizes"]
    out.append(_table(
        f"Failure path, in process: µs per call (trailers: typical {sizes['typical_trailer_bytes']} B, "
        f"worst {sizes['worst_trailer_bytes']} B of a {sizes['budget']} B budget)",
        ["operation", "µs"], rows))
    out.append(_scaling_tables(result["codec_scaling"]))
    out.append(_profile_table(result["failure_profile"]))
    out.append(_table("Failure path, the handler thread's pieces in process, unprofiled: CPU µs per call",
                      ["piece", "µs"], [[k, f"{v:.1f}"] for k, v in result["failure_in_process"].items()]))
    rows = []
    cfg = result["retry"]["_config"]
    for name, r in result["retry"].items():
        if not name.startswith("_"):
            rows.append([name, _spread(r, ".3f"), ",".join(map(str, sorted(set(r["attempts"])))), r["error"]])
    out.append(_table(
        f"Retry: wall seconds to give up on a terminal failure (max_attempts={cfg['max_attempts']}, "
        f"backoff {cfg['initial_backoff']}s x{cfg['multiplier']} up to {cfg['max_backoff']}s, "
        f"ours: {cfg['retry_policy']})",
        ["scenario", "seconds", "attempts", "caller got"], rows))
    m = result["machine"]
    out.append(
        f"Python {m['python']}, grpcio {m['grpcio']}, protobuf {m['protobuf']} ({m['protobuf_backend']}), "
        f"grpc-interceptor {m['grpc_interceptor']}, {m['cpus']} CPUs ({m.get('cpu_model', '?')}"
        f"{', servers on CPU 0 and clients on CPU 1' if m.get('servers_and_clients_pinned') else ''}); "
        f"run took {result['duration_s']:.0f} s."
    )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts: check that it runs (seconds)")
    parser.add_argument("--reps", type=int, help="repetitions of the process benchmarks")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: benchmarks/results/)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    cfg = SMOKE if args.smoke else FULL
    if args.reps:
        cfg = Config(**{**asdict(cfg), "reps": args.reps})

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[bench] {message}", file=sys.stderr, flush=True)

    result = run(cfg, log)
    result["mode"] = "smoke" if args.smoke else "full"
    out = args.out
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"bench-{result['mode']}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"\nJSON: {out}")
    return 0
