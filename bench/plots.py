"""Plots for docs/performance.md from bench/results/*.json (matplotlib, PNG under docs/img/)."""
from __future__ import annotations

import json
import sys

from bench.common import REPO, RESULTS

IMG = REPO / "docs" / "img"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def throughput_plot(tp: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = tp["completion_times_s"]
    quota = tp["quota_rpm"]
    fig, ax = plt.subplots(figsize=(8, 4))
    if times:
        window = 60.0
        end = int(times[-1]) + 1
        xs = list(range(0, end + 1, 2))
        rate = [sum(1 for t in times if x - window < t <= x) * 60.0 / min(window, max(x, 1)) for x in xs]
        ax.plot(xs, rate, label="completions/min (trailing 60 s window)")
        ax.step(sorted(times), [i + 1 for i in range(len(times))], where="post", alpha=0)  # keeps the x range
    ax.axhline(quota, color="red", linestyle="--", label=f"Bedrock quota ({quota} requests/min)")
    ax.axhline(0.9 * quota, color="orange", linestyle=":", label="90 % of quota (target)")
    ax.set_xlabel("seconds since the burst started")
    ax.set_ylabel("images per minute")
    w = tp["workload"]
    ax.set_title(f"{tp['uploads']} uploads at once; engine {w['latency_ms'] / 1000:.0f} s + U(0, "
                 f"{w['jitter_ms'] / 1000:.0f}) s; {' '.join(w['context'])}")
    ax.set_ylim(0, quota * 1.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def billing_plot(bill: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["sequential\n(batch concurrency 1)", "concurrent\n(batch concurrency = batch size)"]
    values = [bill["sequential"]["gb_seconds_per_image"], bill["concurrent"]["gb_seconds_per_image"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar(names, values, color=["#999999", "#2b7bba"])
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.2f}", ha="center", va="bottom")
    ax.set_ylabel(f"billed GB-s per image ({bill['memory_size_mb']} MB)")
    ax.set_title(f"Lambda GB-s per image at equal throughput: {bill['gb_seconds_ratio']:.1f}x fewer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def quota_plot(quota: dict, path) -> None:
    """Per-model completions per minute (trailing 60 s) against each model's quota, one panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(label, quota[label]) for label in ("one-model", "three-models", "quota-drop") if label in quota]
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 3.2 * len(runs)), squeeze=False)
    for ax, (label, res) in zip(axes[:, 0], runs, strict=True):
        for i, (kind, p) in enumerate(res["per_model"].items()):
            times, color = p.get("completion_times_s") or [], f"C{i}"  # older results have none
            if not times:
                continue
            xs = [x / 2 for x in range(0, int(times[-1] * 2) + 2)]
            rate = [sum(1 for t in times if x - 60 < t <= x) * 60.0 / min(60.0, max(x, 1)) for x in xs]
            name = kind.split(".")[-1]
            ax.plot(xs, rate, color=color, label=f"{name}: completions/min (trailing 60 s)")
            if "quota_rpm_after_drop" in p:
                drop = p["dropped_at_s"]
                ax.step([0, drop, xs[-1]], [p["quota_rpm"], p["quota_rpm_after_drop"], p["quota_rpm_after_drop"]],
                        where="post", color=color, linestyle="--", label=f"{name}: engine quota (halved)")
                ax.axvline(drop + 60, color="grey", linestyle=":", label="a minute after the drop")
            else:
                ax.axhline(p["quota_rpm"], color=color, linestyle="--", label=f"{name}: quota {p['quota_rpm']}/min")
        ax.set_title(f"{label}: {res['jobs']} jobs in one burst")
        ax.set_xlabel("seconds since the burst started")
        ax.set_ylabel("images per minute")
        ax.set_ylim(0, max(p["quota_rpm"] for p in res["per_model"].values()) * 1.3)
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    tp, bill, quota = _load("throughput"), _load("billing"), _load("quota")
    if quota:
        quota_plot(quota, IMG / "quota-per-model.png")
    if tp:
        throughput_plot(tp, IMG / "throughput-vs-quota.png")
    if bill:
        billing_plot(bill, IMG / "gb-seconds-per-image.png")
    print(f"plots written to {IMG}")


if __name__ == "__main__":
    main()
    sys.exit(0)
