"""Run every benchmark (`make bench`; `make bench BENCH_ARGS=--quick` for the under-a-minute-each variant).

Order matters: billing reuses the throughput run and image_prep's peaks; plots read all results.
"""
from __future__ import annotations

import argparse
import sys
import time

from bench import billing, bulk, cold_start, image_prep, overhead, plots, provenance, quota, throughput


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads: each benchmark under a minute")
    args = parser.parse_args(argv)
    failed = []
    started = time.monotonic()
    for module in (image_prep, cold_start, throughput, billing, provenance, overhead, quota, bulk):
        name = module.__name__.split(".")[-1]
        print(f"\n=== {name} {'(quick)' if args.quick else ''}", flush=True)
        t0 = time.monotonic()
        payload = module.main(quick=args.quick)
        missed = [k for k, t in payload.get("targets", {}).items() if not t["holds"]]
        failed += [f"{name}.{k}" for k in missed]
        print(f"--- {name}: {time.monotonic() - t0:.0f} s", flush=True)
    if args.quick:
        print(f"\nall benchmarks (quick): {time.monotonic() - started:.0f} s; results in bench/results/quick/ "
              "(not plotted: docs/img/ shows full runs)")
    else:
        plots.main()
        print(f"\nall benchmarks: {time.monotonic() - started:.0f} s; results in bench/results/, plots in docs/img/")
    print("targets missed: " + (", ".join(failed) if failed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
