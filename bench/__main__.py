"""``python -m bench`` (``./dev bench``): every benchmark of the service, floor included, one run.

Sections (``--sections``, default all):

* ``expr``: the expression engines (`bench.expr_bench`), pinned to core 1;
* ``grpc``: the gRPC scenarios (`bench.runner`): each against an empty grpc.aio handler (the
  floor), an empty sync grpcio handler and the API's skeleton (`bench.skeletons`), all started
  and driven the same way, server on core 0, load generator on core 1;
* ``workers``: throughput of ``--workers 1`` vs ``--workers 2`` (`bench.scaling`), unpinned;
* ``memory``: RSS and reload time with 1,000 rules, and no failed request during a reload; then,
  in 10 files, the load after editing one rule against the load after editing every rule.

``--quick`` shrinks every block (a CI smoke test, under a minute); ``--scenarios a,b`` picks
gRPC scenarios; ``--reps N`` sets the repetitions; ``--profile`` adds one py-spy-sampled leg per
mixer scenario and prints where the time went; ``--compare-root DIR`` also runs a mixer from
another source tree (a patched copy) in every gRPC repetition, for A/B measurements of a change;
``--compare-flavour sync`` runs that second mixer on another server flavour (``--flavour`` sets
the first one's), for an A/B of the flavours.
Results go to ``bench/results/<time>.json`` (and ``latest.json``). The exit status is 1 if a
leg failed requests; missed goals are reported, not failed on (the figures are ratios measured
on a noisy machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import profile, scaling
from bench.expr_bench import format_table as format_expr
from bench.proc import can_pin, pinned
from bench.runner import (
    CLIENT_CPU,
    FULL,
    QUICK,
    SCENARIOS,
    Bench,
    format_table,
    run_scenarios,
    scenario_list,
    summary_env,
    work_dir,
)

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("expr", "grpc", "workers", "memory")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_expr(quick: bool, reps: int, work: Path) -> dict[str, Any]:
    out = work / "expr.json"
    argv = [
        sys.executable,
        "-m",
        "bench.expr_bench",
        "--repeats",
        str(max(reps, 3)),
        "--json",
        str(out),
    ]
    if quick:
        argv.append("--quick")
    subprocess.run(pinned(CLIENT_CPU, argv), check=True, timeout=600, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run_profiles(bench: Bench, work: Path) -> dict[str, Any]:
    """One py-spy-sampled leg per mixer scenario (not counted in the table)."""
    out: dict[str, Any] = {}
    if profile.py_spy() is None:
        log("py-spy not installed: no profiles (./dev setup installs it)")
        return out
    for scenario in bench.scenarios:
        stacks = RESULTS / f"profile-{scenario.name}.txt"
        bench.leg(scenario.config, scenario, bench.frames(scenario, 99), profile=stacks)
        if stacks.exists():
            out[scenario.name] = profile.summarise(stacks)
            print(profile.format_summary(scenario.name, out[scenario.name]))
    return out


def main() -> int:
    """Parse the options, run the sections in a scratch directory, remove it unless a run fails."""
    args = _options()
    work = work_dir()
    try:
        code = run(args, work)
    except BaseException:
        log(f"failed: server logs and request files are kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)
    return code


def _options() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small blocks, 1 repetition (CI smoke)")
    p.add_argument("--scenarios", default="", help=f"gRPC scenarios: {','.join(SCENARIOS)}")
    p.add_argument("--sections", default=",".join(SECTIONS), help=",".join(SECTIONS))
    p.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    p.add_argument("--profile", action="store_true", help="py-spy one extra leg per scenario")
    p.add_argument(
        "--compare-root",
        type=Path,
        help="also run mixer from this source tree (e.g. a patched copy) in the gRPC legs",
    )
    p.add_argument(
        "--flavour", choices=("aio", "sync"), help="the mixer's server flavour (default: its own)"
    )
    p.add_argument(
        "--compare-flavour",
        choices=("aio", "sync"),
        help="also run mixer on this flavour in the gRPC legs (from --compare-root if given)",
    )
    p.add_argument("--out", type=Path, help="JSON results (default bench/results/<time>.json)")
    return p.parse_args()


def run(args: argparse.Namespace, work: Path) -> int:
    """Every selected section; returns the exit status."""
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for s in sections:
        if s not in SECTIONS:
            raise SystemExit(f"unknown section {s!r}; known: {', '.join(SECTIONS)}")
    reps = args.reps or (1 if args.quick else 3)
    budget = QUICK if args.quick else FULL
    scenarios = scenario_list(args.scenarios)
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": dict(summary_env()),
        "pinned": can_pin(),
        "reps": reps,
        "budget": budget.__dict__,
    }
    if not can_pin():
        log("fewer than 2 CPUs or no taskset: server and client are not pinned")
    failed = False
    text: list[str] = []

    if "expr" in sections:
        log("expression engines")
        expr = run_expr(args.quick, reps, work)
        results["expr"] = expr
        text.append(format_expr(expr))
        print(text[-1], flush=True)

    if "grpc" in sections:
        bench = Bench(
            work,
            budget,
            scenarios,
            args.compare_root,
            flavour=args.flavour,
            compare_flavour=args.compare_flavour,
        )
        try:
            log(f"starting servers for {', '.join(s.name for s in scenarios)}")
            bench.start()
            grpc_results = run_scenarios(bench, reps, log)
            results["scenarios"] = {r.scenario.name: r.as_dict() for r in grpc_results}
            text.append(format_table(grpc_results))
            print(text[-1], flush=True)
            failed = failed or any(r.errors() for r in grpc_results)
            if args.profile:
                results["profiles"] = run_profiles(bench, work)
        finally:
            bench.stop()

    if "workers" in sections:
        log("--workers 1 vs 2")
        seconds = 1.5 if args.quick else 5.0
        w = scaling.workers_scaling(work, reps, seconds, log)
        results["workers"] = w
        text.append(
            f"--workers 2 / --workers 1 throughput: {w['ratio']:.2f}x "
            f"({w['throughput_2']:.0f}/s vs {w['throughput_1']:.0f}/s, client {w['client']}, "
            f"{w['cpus']} CPUs; goal >= 1.7x: {'yes' if w['met'] else 'NO'}; "
            f"errors {w['errors']}); cores kept busy by 1 worker {w['cores_busy_1']:.2f}, "
            f"by 2 workers {w['cores_busy_2']:.2f}; server CPU per call "
            f"{w['cpu_us_per_call_2']:.1f} vs {w['cpu_us_per_call_1']:.1f} µs: "
            f"{w['cpu_ratio']:.2f}x (goal <= 1.1x: {'yes' if w['cpu_met'] else 'NO'})"
        )
        print(text[-1], flush=True)
        failed = failed or bool(w["errors"])

    if "memory" in sections:
        log("1,000 rules: memory and reload")
        m = scaling.memory_and_reload(work, 2.5 if args.quick else 6.0, log)
        results["memory"] = m
        text.append(
            f"1,000 rules: RSS {m['rss_start_mb']:.0f} MB after start, {m['rss_end_mb']:.0f} MB "
            f"after load and 2 reloads (peak {m['rss_peak_mb']:.0f} MB); reload "
            f"{m['reload_under_load_s']:.2f} s under load, {m['reload_idle_s']:.2f} s idle; "
            f"{m['checks_ok']} checks ok ({m['throughput']:.0f}/s), {m['checks_failed']} failed "
            "during the reload "
            f"(goal RSS < 300 MB, reload < 2 s, 0 failed: {'yes' if m['met'] else 'NO'})"
        )
        print(text[-1], flush=True)
        failed = failed or bool(m["checks_failed"])
        log("1,000 rules in 10 files: reload after editing one rule")
        e = scaling.edit_one_rule(work, 1 if args.quick else 3, log)
        results["memory_edit_one_rule"] = e
        text.append(
            f"1,000 rules in {e['files']} files, same server: load after editing one rule "
            f"{e['warm_median_s']:.3f} s (median of {e['reps']}; max {max(e['warm_s']):.3f} s), "
            f"after editing every rule {e['cold_median_s']:.3f} s: {e['ratio']:.2f}x; "
            f"{e['checks_ok']} checks ok, {e['checks_failed']} failed during the reloads "
            f"(goal one-rule reload < 0.2 s, 0 failed: {'yes' if e['met'] else 'NO'})"
        )
        print(text[-1], flush=True)
        failed = failed or bool(e["checks_failed"])

    results["seconds"] = time.monotonic() - started
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["text"] = "\n\n".join(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    log(f"done in {results['seconds']:.0f} s; results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
