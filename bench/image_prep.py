"""Image preparation: time and peak memory to turn real-world uploads into a model-ready request
(prepare + base64 + JSON body) and to turn the model's answer into the stored image, against the naive way.

Each (case, method, stage) runs in a fresh interpreter: first one warm-up on a small image (plugins,
codecs), then the peak-RSS counter is reset (/proc/self/clear_refs) and one measured run gives the peak
memory above the process's resting RSS (Pillow allocates pixels outside Python's allocator, so this is
the number Lambda's "Max Memory Used" sees). tracemalloc's peak (Python allocations only: the PNG, base64
and JSON strings) comes from a second run, and the median of several timed runs gives the time.

Inputs are generated from samples/ into a cache folder outside the repository (see bench.common.CACHE).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import time

from bench.common import CACHE, SAMPLES, run_json, table, verdict, write_results

MODEL_ID = "stability.sd3-5-large-v1:0"
CASES = {  # name: (file, description)
    "phone_12mp_exif6": ("phone_12mp_exif6.jpg", "12 MP phone JPEG (4032x3024 stored, EXIF orientation 6)"),
    "phone_24mp_exif6": ("phone_24mp_exif6.jpg", "24 MP JPEG (6000x4000 stored, EXIF orientation 6)"),
    "png_alpha_6mp": ("png_alpha_6mp.png", "6 MP PNG with alpha (3000x2000 RGBA)"),
    "heic_12mp": ("heic_12mp.heic", "12 MP HEIC (4032x3024)"),
    "small_jpeg": ("small.jpg", "small JPEG (640x427, samples/rocket.jpg)"),
}
QUICK_CASES = ("phone_12mp_exif6", "png_alpha_6mp", "heic_12mp", "small_jpeg")
TARGET_CASE = "phone_12mp_exif6"


# ---- inputs -------------------------------------------------------------------------------------
def ensure_inputs(names) -> None:
    from PIL import Image, ImageDraw

    CACHE.mkdir(parents=True, exist_ok=True)

    def upscaled(size):
        src = Image.open(SAMPLES / "rocket.jpg").convert("RGB")
        w, h = src.size
        aspect = size[0] / size[1]
        cw = min(w, round(h * aspect))
        ch = round(cw / aspect)
        box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
        return src.resize(size, Image.Resampling.BICUBIC, box=box)

    for name in names:
        path = CACHE / CASES[name][0]
        if path.exists():
            continue
        tmp = path.with_name(path.name + ".tmp")
        if name.startswith("phone_"):
            size = (4032, 3024) if "12mp" in name else (6000, 4000)
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90 CW to display: the sensor's landscape pixels of a portrait photo
            exif[0x010F], exif[0x0110] = "BenchPhone", "Model 12"
            upscaled(size).save(tmp, format="JPEG", quality=92, exif=exif.tobytes())
        elif name == "png_alpha_6mp":
            src = Image.open(SAMPLES / "coffee.png").convert("RGB").resize((3000, 2000), Image.Resampling.BICUBIC)
            alpha = Image.new("L", src.size, 0)
            ImageDraw.Draw(alpha).ellipse((150, 100, 2850, 1900), fill=255)
            src.putalpha(alpha)
            src.save(tmp, format="PNG")
        elif name == "heic_12mp":
            from pillow_heif import register_heif_opener

            register_heif_opener()
            upscaled((4032, 3024)).save(tmp, format="HEIF", quality=85)
        elif name == "small_jpeg":
            tmp.write_bytes((SAMPLES / "rocket.jpg").read_bytes())
        tmp.replace(path)


# ---- the two ways -------------------------------------------------------------------------------
def _job_params():
    from img2img.core import params as P
    from img2img.models.registry import adapter_for

    merged = P.merge([P.deployment_layer(MODEL_ID, "png", "", {}),
                      P.request_layer({"prompt": "a watercolor painting", "seed": 7})])
    adapter = adapter_for(MODEL_ID)
    return adapter, adapter.validate(MODEL_ID, merged)


def ours_request(data: bytes, adapter, params):
    """What the pipeline does (core/pipeline.py _generate + aws/bedrock.py invoke): prepare, body, JSON."""
    from img2img.core import images

    prepared = images.prepare(data, adapter.target_size, params.fit, 40_000_000)
    body = json.dumps(adapter.build_body(params, prepared.base64))
    return prepared, body


def naive_request(data: bytes, adapter, params):
    """The textbook way: open, convert, resize to the model's size, save PNG, base64, JSON."""
    from PIL import Image

    _ensure_heif_naive(data)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize(adapter.target_size(*image.size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    b64 = base64.b64encode(buffer.getvalue()).decode("ascii")
    body = json.dumps({**params.request, "image": b64})
    return None, body


def _ensure_heif_naive(data: bytes) -> None:
    if data[4:8] == b"ftyp":
        from pillow_heif import register_heif_opener

        register_heif_opener()


def ours_output(response: bytes, prepared, adapter, params):
    """Model answer to stored bytes: parse, decode base64, finish_output (untouched when it fits)."""
    from img2img.core import images

    result = adapter.parse_response(json.loads(response))
    return images.finish_output(result.images[0], prepared, params.output_format, params.restore_aspect).data


def naive_output(response: bytes, prepared, adapter, params):
    from PIL import Image

    payload = json.loads(response)
    image = Image.open(io.BytesIO(base64.b64decode(payload["images"][0])))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---- one measurement, in a fresh interpreter ----------------------------------------------------
def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return 0


def _trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def worker(case: str, method: str, stage: str, reps: int) -> dict:
    import gc
    import tracemalloc

    adapter, params = _job_params()
    data = (CACHE / CASES[case][0]).read_bytes()
    tiny = _tiny_like(data)
    request = ours_request if method == "ours" else naive_request
    output = ours_output if method == "ours" else naive_output
    # The model's answer for the output stage: a ~1 MP PNG as the engine (and Bedrock) sends it.
    prepared, _ = ours_request(data, adapter, params)
    response = _fake_response(prepared)

    def run():
        if stage == "request":
            return request(data, adapter, params)
        return output(response, prepared, adapter, params)

    # warm-up on a tiny image of the same format: plugins and codecs loaded, lazy objects built, but the
    # allocator's free lists stay small (a warm-up on the case itself would hide its peak from VmHWM)
    request(tiny, adapter, params)
    gc.collect()
    _trim()  # hand freed heap back to the OS, so the peak below is what this run needs, not what it reuses
    baseline_kib = _status("VmRSS")
    exact = _reset_peak()
    run()
    peak_kib = _status("VmHWM") - baseline_kib
    gc.collect()
    tracemalloc.start()
    run()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    times = []
    for _ in range(reps):
        gc.collect()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000, "runs": len(times),
            "peak_rss_mib": peak_kib / 1024, "tracemalloc_peak_mib": traced_peak / 2**20,
            "peak_rss_exact": exact}


def _tiny_like(data: bytes) -> bytes:
    from PIL import Image

    _ensure_heif_naive(data)
    source = Image.open(io.BytesIO(data))
    tiny = Image.new(source.mode, (96, 64))
    buffer = io.BytesIO()
    tiny.save(buffer, format=source.format)
    return buffer.getvalue()


def _fake_response(prepared) -> bytes:
    from PIL import Image, ImageFilter

    image = Image.open(io.BytesIO(prepared.png)).filter(ImageFilter.SMOOTH)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return json.dumps({"seeds": [7], "finish_reasons": [None],
                       "images": [base64.b64encode(buffer.getvalue()).decode()]}).encode()


# ---- driver ---------------------------------------------------------------------------------------
def main(quick: bool = False) -> dict:
    names = QUICK_CASES if quick else tuple(CASES)
    ensure_inputs(names)
    rows, results = [], []
    for case in names:
        large = case != "small_jpeg"
        reps = (3 if large else 10) if quick else (7 if large else 30)
        for stage in ("request", "output"):
            measured = {}
            for method in ("ours", "naive"):
                measured[method] = run_json(["-m", "bench.image_prep", "--worker", case, method, stage, str(reps)],
                                            timeout=300)
                results.append({"case": case, "description": CASES[case][1], "stage": stage, "method": method,
                                "input_bytes": (CACHE / CASES[case][0]).stat().st_size, **measured[method]})
            o, n = measured["ours"], measured["naive"]
            rows.append((case, stage, f"{o['median_ms']:.0f}", f"{n['median_ms']:.0f}",
                         f"{n['median_ms'] / o['median_ms']:.1f}x", f"{o['peak_rss_mib']:.1f}",
                         f"{n['peak_rss_mib']:.1f}", f"{o['tracemalloc_peak_mib']:.1f}",
                         f"{n['tracemalloc_peak_mib']:.1f}"))
    print(table(["case", "stage", "ours ms", "naive ms", "speed-up", "ours peak RSS MiB", "naive peak RSS MiB",
                 "ours py-heap MiB", "naive py-heap MiB"], rows))
    ours = next(r for r in results if r["case"] == TARGET_CASE and r["stage"] == "request" and r["method"] == "ours")
    naive = next(r for r in results if r["case"] == TARGET_CASE and r["stage"] == "request" and r["method"] == "naive")
    speedup = naive["median_ms"] / ours["median_ms"]
    memory_ratio = ours["peak_rss_mib"] / naive["peak_rss_mib"]
    targets = {
        "speedup_large_jpeg": {"value": round(speedup, 2), "target": ">= 3", "holds": speedup >= 3},
        "peak_memory_ratio_large_jpeg": {"value": round(memory_ratio, 3), "target": "<= 0.5",
                                         "holds": memory_ratio <= 0.5},
    }
    print(f"\nlarge JPEG request: {speedup:.1f}x faster (target >= 3x: {verdict(speedup >= 3)}), "
          f"peak RSS {memory_ratio:.2f} of naive (target <= 0.5: {verdict(memory_ratio <= 0.5)})")
    payload = {"quick": quick, "model_id": MODEL_ID, "results": results, "targets": targets}
    write_results("image_prep", payload)
    return payload


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=4, metavar=("CASE", "METHOD", "STAGE", "REPS"))
    args = parser.parse_args()
    if args.worker:
        case, method, stage, reps = args.worker
        print(json.dumps(worker(case, method, stage, int(reps))))
    else:
        main(quick=args.quick)
        sys.exit(0)
