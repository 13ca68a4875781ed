"""What every benchmark shares: the results folder, tables, machine facts, the generated-input cache."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Quick runs (any entry point given --quick) keep their figures apart: the committed results/*.json and
# the docs' plots come from full runs only.
QUICK = "--quick" in sys.argv[1:]
RESULTS = BENCH_DIR / "results" / ("quick" if QUICK else "")
SAMPLES = REPO / "samples"
# Generated inputs (tens of MB) live outside the repository and are reused across runs.
CACHE = Path(os.environ.get("IMG2IMG_BENCH_CACHE", Path(tempfile.gettempdir()) / "img2img-bench-cache"))
PYTHON = sys.executable
SUBPROCESS_PATH = os.pathsep.join([str(REPO / "lambda_src"), str(REPO)])


def machine() -> dict[str, Any]:
    """The machine the numbers come from."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    try:
        from PIL import __version__ as pillow
    except ImportError:
        pillow = ""
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "python": platform.python_version(), "platform": platform.platform(), "pillow": pillow}


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    doc = {"benchmark": name, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), **payload}
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_json(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """Run a Python snippet/script in a fresh interpreter; its last stdout line is JSON."""
    full_env = {**os.environ, "PYTHONPATH": SUBPROCESS_PATH, **(env or {})}
    done = subprocess.run([PYTHON, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=REPO, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def verdict(ok: bool) -> str:
    return "holds" if ok else "MISSED"


def run_as_script(main, doc: str) -> None:
    """`python -m bench.<name> [--quick]`: the same entry for every benchmark."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(quick=parser.parse_args().quick)
