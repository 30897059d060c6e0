"""Write ``docs/benchmarks.md`` from a benchmark run's JSON results.

``make bench`` calls :func:`after_run` once the run has written its JSON, so
the page always shows the figures of the last full run on this machine; no
figure on it is typed by hand. To render again from a results file without
running the benchmarks::

    python -m benchmarks.render_docs benchmarks/results/bench-full-<stamp>.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.run import RESULTS_DIR, render

__all__ = ["after_run", "main", "render_page", "targets", "write_page"]

DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

_GROUPS = ("sync unary", "sync stream", "aio unary", "aio stream")

_INTRO = """\
# Benchmarks

<!-- Written by `make bench` (benchmarks/render_docs.py) from {source}. Do not edit by hand. -->

`make bench` runs `python -m benchmarks`, prints the tables below, writes the
JSON to `benchmarks/results/` and writes this page from it. It takes a few
minutes; `python -m benchmarks --smoke`, run by `make test`, only checks that
it still runs and never writes this page.

## How it measures

One server process per (style, interceptor) and one client process per
(style, client variant), all on 127.0.0.1; servers are pinned to CPU 0 and
clients to CPU 1 when the machine has two CPUs. A sample is the CPU time
(`time.process_time()`, all threads) one process spent on {unary} unary or
{stream} server-streaming (10 responses) RPCs. The variants are interleaved
in a rotating order, {reps} repetitions, and every ratio is the median of
per-repetition paired ratios (adjacent in time), with the interquartile range
in brackets. The failure path runs on processes of its own, because a process
that served failures costs more per RPC afterwards.

Variants: *none* (bare grpcio); *passthrough* (an interceptor returning the
handler unchanged); *noop* (wraps each handler in a try/except that does
nothing: the floor of any exception-mapping interceptor); *ours*
(`ServerInterceptor` / `AioServerInterceptor`; `intercept_channel` /
`aio_intercept_channel`); *grpc-interceptor* (its
`ExceptionToStatusInterceptor`); *ours-interceptors* (`aio_interceptors()`,
and for sync the interceptor chain `intercept_channel(retry=...)` builds on);
*proxy* (a minimal hand-written error-converting channel wrapper, for
reference).

## How to read it

Read the ratios, not the absolute microseconds: the absolute figures move
with the machine and its load, the paired ratios much less. A ratio whose
bracket spans zero is a difference the run could not tell from noise. The
targets below are what the project aims for; each says whether this run met
it.

## This run

{machine}

"""


def _median(summary: dict[str, Any]) -> float:
    return float(summary["median"])


def _pct(ratio: dict[str, Any]) -> str:
    return f"{(_median(ratio) - 1) * 100:+.1f}%"


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def _server_target(result: dict[str, Any], key: str, limit: float) -> tuple[bool, str]:
    ratios = [result["server_success"][g]["ours"].get(key) for g in _GROUPS]
    if any(r is None for r in ratios):
        return False, "not measured (the variant was left out of this run)"
    ok = all(_median(r) <= limit for r in ratios)
    return ok, ", ".join(_pct(r) for r in ratios) + " (" + ", ".join(_GROUPS) + ")"


def _client_target(result: dict[str, Any]) -> tuple[bool, str]:
    wrapper = result["client_wrapper"]
    shares = []
    for style in ("sync", "aio"):
        added = _median(wrapper[f"_{style}_added_us"])
        base = _median(result["client_success"][f"{style} unary"]["none"]["cpu_us_per_rpc"])
        shares.append((style, added, added / base * 100))
    end_to_end = ", ".join(_pct(result["client_success"][g]["ours"]["ratio_to_none"]) for g in _GROUPS)
    text = "; ".join(f"{style}: the wrapper adds {added:.2f} µs, {share:.2f}% of a unary call"
                     for style, added, share in shares)
    return all(share <= 2.0 for _, _, share in shares), f"{text}; end to end {end_to_end}"


def _failure_target(result: dict[str, Any]) -> tuple[bool, str]:
    ratios = {pair: variants["ours"]["server_ratio_to_hand_written"]
              for pair, variants in result["failure_e2e"].items()}
    ok = all(_median(r) <= 1.05 for r in ratios.values())
    return ok, "; ".join(f"{pair}: {_median(r):.3f} [{r['p25']:.3f}-{r['p75']:.3f}]"
                         for pair, r in ratios.items())


def _codec_target(result: dict[str, Any]) -> tuple[bool, str]:
    encode = _median(result["codec"]["encode typical"])
    decode = _median(result["codec"]["decode typical"])
    figures = f"encode {encode:.1f} µs, decode {decode:.1f} µs (a typical terminal error)"
    return max(encode, decode) <= 8.0, figures


#: Growth exponent over the largest sizes up to which the encode counts as linear
#: (a quadratic step would show 2).
LINEAR_EXPONENT = 1.2


def _worst_target(result: dict[str, Any]) -> tuple[bool, str]:
    worst = _median(result["codec"]["encode worst (1 MB detail + 10k violations)"])
    scaling = result.get("codec_scaling", {})
    exponents = {name: series["exponent_top"] for name, series in scaling.items()}
    linear = bool(exponents) and all(e <= LINEAR_EXPONENT for e in exponents.values())
    growth = ", ".join(f"{name} ^{e:.2f}" for name, e in exponents.items())
    return worst <= 1000.0 and linear, f"{worst / 1000:.2f} ms; growth over the largest sizes: {growth}"


def _retry_target(result: dict[str, Any]) -> tuple[bool, str]:
    ours = result["retry"]["grpc-terminal server + our retrier"]
    plain = result["retry"]["without grpc-terminal (UNKNOWN, code-only retrier)"]
    ok = set(ours["attempts"]) == {1}
    return ok, (f"{max(ours['attempts'])} attempt in {_median(ours):.3f} s, against "
                f"{max(plain['attempts'])} attempts and {_median(plain):.1f} s for a code-only retrier "
                "on plain grpcio")


_TARGETS: tuple[tuple[str, Callable[[dict[str, Any]], tuple[bool, str]]], ...] = (
    ("server success path within 2% of the no-op interceptor",
     lambda r: _server_target(r, "ratio_to_noop", 1.02)),
    ("server success path no slower than grpc-interceptor",
     lambda r: _server_target(r, "ratio_to_grpc_interceptor", 1.0)),
    ("client success path within 2% of no interceptor", _client_target),
    ("failing RPC: server CPU ours / hand-written grpcio-status status <= 1.05 (sync and aio)",
     _failure_target),
    ("exception -> trailers and trailers -> typed error <= 8 µs median", _codec_target),
    (f"worst case (1 MB detail + 10,000 violations) <= 1 ms, growth linear (exponent <= {LINEAR_EXPONENT})",
     _worst_target),
    ("terminal give-up after exactly one attempt", _retry_target),
)


def targets(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """Each target with whether ``result`` met it and the figures that say so.

    Args:
        result: the JSON object ``python -m benchmarks`` wrote.
    """
    return [(name, *check(result)) for name, check in _TARGETS]


def _targets_table(result: dict[str, Any]) -> str:
    rows = [f"| {name} | {_verdict(ok)}: {figures} |" for name, ok, figures in targets(result)]
    return "\n".join(["## Targets", "", "| target | result |", "|---|---|", *rows, ""])


def _bounds(result: dict[str, Any]) -> str:
    client = result["client_success"]
    aio_chain = _pct(client["aio unary"]["ours-interceptors"]["ratio_to_none"])
    aio_chain_stream = _pct(client["aio stream"]["ours-interceptors"]["ratio_to_none"])
    aio_noop = _pct(client["aio unary"]["noop"]["ratio_to_none"])
    sync_chain = _pct(client["sync unary"]["ours-interceptors"]["ratio_to_none"])
    sync_noop = _pct(client["sync unary"]["noop"]["ratio_to_none"])
    failures = []
    for pair, variants in result["failure_e2e"].items():
        ours = _median(variants["ours"]["server_cpu_us_per_rpc"])
        hand = _median(variants["hand-written"]["server_cpu_us_per_rpc"])
        failures.append(f"{pair}: ×{_median(variants['ours']['server_ratio_to_hand_written']):.2f}, "
                        f"{ours - hand:.0f} µs more than {hand:.0f} µs")
    codec = result["codec"]
    worst = _median(codec["encode worst (1 MB detail + 10k violations)"]) / 1000
    profile = result["failure_profile"]
    ours_parts = profile["ours"]["parts"]
    pieces = result["failure_in_process"]
    ours_python = (pieces["ours: the exception (UserNotProvisionable(...))"]
                   + pieces["ours: translate (decide + encode)"])
    python_delta = ours_python - pieces["hand-written: the status (hand_written_status())"]
    parts_seen = ", ".join(label.strip() for label in ours_parts)
    scaling = result["codec_scaling"]
    return f"""\
## What bounds the rest

* `aio_interceptors()` costs {aio_chain} on an aio unary call ({aio_chain_stream} streaming):
  that is grpc.aio's interceptor chain, not the conversion. A do-nothing aio
  interceptor (*noop*) already costs {aio_noop} in the same run. A cProfile of the
  client (a separate measurement, not part of `make bench`) shows where: grpc.aio
  runs an intercepted call as an extra task (two `create_task` per call instead
  of one) with its own done-callbacks, while our interceptor's code is not among
  the 25 most expensive entries. `aio_intercept_channel` exists for that reason;
  use the interceptors when you need `retry=` or other interceptors anyway. The
  same holds for the sync chain (*ours-interceptors* {sync_chain} against {sync_noop} for a
  no-op one), which `intercept_channel` builds only with `retry=`.
* A failing RPC costs the server more CPU than sending the same
  `google.rpc.Status` by hand with grpcio-status ({"; ".join(failures)}). Our
  own Python work in that RPC is small against it: in process (the
  unprofiled table above) {ours_python:.1f} µs for the exception and its
  translation, of which {pieces["ours: encode alone"]:.1f} µs the codec, against
  {pieces["hand-written: the status (hand_written_status())"]:.1f} µs to build the status by hand, a
  difference of {python_delta:.1f} µs. The rest of the server-side difference is
  around it: the interceptor's wrapping of each handler and the exception's
  way out through it, and grpc's `_abort` sending one more trailer
  (`grpc-retry-pushback-ms`). The cProfile of a sync server's handler thread
  shows which parts run ({parts_seen}); `python -m benchmarks.profile_server`
  prints the full listing.
* The worst case, a 1 MB detail with 10,000 field violations, encodes in
  {worst:.2f} ms. Each detail is serialized once and the status is framed from
  those bytes; violations that cannot fit are not measured one halving at a
  time. What is left: the log line's "needs at least N bytes" needs one
  serialization of all 10,000 violations, and the unknown-fields step copies,
  strips and re-measures every detail still present (another serialization).
  Encode time grows as size^{scaling["violations"]["exponent_top"]:.2f} with the number of
  violations and as size^{scaling["detail"]["exponent_top"]:.2f} with the detail's length over
  their largest sizes (1 is linear). Its trailers then decode in
  {_median(codec["decode worst (its budget-fitted trailers)"]):.1f} µs.
"""


def render_page(result: dict[str, Any], source: str) -> str:
    """The whole ``docs/benchmarks.md`` for ``result``.

    Args:
        result: the JSON object ``python -m benchmarks`` wrote.
        source: the results file's name, recorded in the page's header comment.
    """
    cfg = result["config"]
    m = result["machine"]
    machine = (f"{m['cpus']} CPUs ({m.get('cpu_model', '?')}), {m['platform']}, {m['implementation']} "
               f"{m['python']}, grpcio {m['grpcio']}, protobuf {m['protobuf']} ({m['protobuf_backend']}), "
               f"grpc-terminal {m['grpc_terminal']}; run of {result['created']}, "
               f"{result['duration_s']:.0f} s.")
    intro = _INTRO.format(source=source, unary=cfg["unary_rpcs"], stream=cfg["stream_rpcs"],
                          reps=cfg["reps"], machine=machine)
    return intro + render(result) + "\n\n" + _targets_table(result) + "\n" + _bounds(result)


def write_page(results_file: Path, page: Path = DOCS_PAGE) -> Path:
    """Render ``results_file`` into ``page``; returns ``page``.

    Args:
        results_file: a JSON file written by ``python -m benchmarks`` (a full run).
        page: where to write the Markdown (``docs/benchmarks.md`` by default).
    """
    result = json.loads(results_file.read_text(encoding="utf-8"))
    if result.get("mode") != "full":
        raise ValueError(f"{results_file} is a {result.get('mode')!r} run: only a full run goes on the page")
    page.write_text(render_page(result, results_file.name), encoding="utf-8")
    return page


def _newest_full_run() -> Path:
    runs = sorted(RESULTS_DIR.glob("bench-full-*.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"no full run in {RESULTS_DIR}: run `make bench` first")
    return runs[-1]


def after_run(argv: Sequence[str]) -> None:
    """Called by ``python -m benchmarks`` once a run succeeded: a full run updates the page.

    Args:
        argv: the benchmark's own command-line arguments; ``--smoke`` runs leave
            the page alone, ``--out FILE`` names the results to render.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    args, _ = parser.parse_known_args(argv)
    if args.smoke:
        return
    page = write_page(args.out or _newest_full_run())
    print(f"page: {page}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.render_docs [RESULTS.json]``: write the page again from a run's JSON.

    Args:
        argv: the command-line arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render_docs", description=__doc__)
    parser.add_argument("results", type=Path, nargs="?", help="a full run's JSON (default: the newest)")
    args = parser.parse_args(argv)
    print(f"page: {write_page(args.results or _newest_full_run())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
