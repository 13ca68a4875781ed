"""Provenance: the time and bytes the XMP marking and a C2PA manifest add to each output, per format,
at ~1 MP and ~4 MP, and the one-off cost of importing c2pa in a job that signs.

Outputs are encoded once from samples/ (as the worker stores them: PNG, JPEG q90, WebP q90); the
marking (core/xmp.py) and the signing (core/c2pa_manifest.py, with the local throwaway identity of
img2img_local/signing.py, an in-process ES256 key: a KMS `Sign` adds its network round trip on top)
are timed in this process, median of several runs. Verification (the c2pa Reader) is timed too: it is
what `img2img verify` and the tests pay. The import cost comes from fresh interpreters.
"""
from __future__ import annotations

import io
import time

from bench.common import CACHE, SAMPLES, median, run_as_script, run_json, table, write_results

SIZES = {"1mp": (1024, 1024), "4mp": (2048, 2048)}
FORMATS = ("png", "jpeg", "webp")
MODEL_ID = "us.stability.sd3-5-large-v1:0"
JOB_ID = "3f2b9c4e-8a71-4d2e-9b0f-6c5a1e7d2b90"
IMPORT = """
import time, json
t0 = time.perf_counter()
import c2pa
t1 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1000}))
"""


def _encoded(size: tuple[int, int], fmt: str) -> bytes:
    from PIL import Image

    image = Image.open(SAMPLES / "rocket.jpg").convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt.upper(), **({} if fmt == "png" else {"quality": 90}))
    return buffer.getvalue()


def _timed(fn, reps: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return median(times), result


def main(quick: bool = False) -> dict:
    from img2img.core import c2pa_manifest as cm
    from img2img.core import xmp
    from img2img.operations import GENERATED
    from img2img_local import signing

    reps_xmp, reps_sign = (5, 3) if quick else (30, 10)
    identity = signing.load_or_create(CACHE / "c2pa-local-signer")
    key = cm.SigningKey(identity.callback(), identity.chain_pem)
    marking = xmp.Marking(GENERATED, MODEL_ID, JOB_ID)
    manifest = cm.build_manifest(source_type=GENERATED, model_id=MODEL_ID, job_id=JOB_ID,
                                 input_sha256=cm.sha256(b"input"), input_format="image/jpeg")
    cm.sign(_encoded((64, 64), "png"), "png", manifest, key)  # warm: c2pa loaded, first-call costs paid
    rows, cases = [], {}
    for size_name, size in SIZES.items():
        for fmt in FORMATS:
            data = _encoded(size, fmt)
            xmp_ms, marked = _timed(lambda d=data, f=fmt: xmp.mark(d, f, marking), reps_xmp)
            sign_ms, signed = _timed(lambda m=marked, f=fmt: cm.sign(m, f, manifest, key), reps_sign)
            verify_ms, check = _timed(lambda s=signed: cm.verify(s.data), reps_sign)
            assert check.valid and xmp.read_xmp(signed.data)["job_id"] == JOB_ID
            case = {"size": list(size), "format": fmt, "output_bytes": len(data),
                    "xmp_ms": round(xmp_ms, 3), "xmp_bytes": len(marked) - len(data),
                    "c2pa_sign_ms": round(sign_ms, 2), "c2pa_bytes": len(signed.data) - len(marked),
                    "c2pa_verify_ms": round(verify_ms, 2)}
            cases[f"{size_name}_{fmt}"] = case
            rows.append((f"{size[0]}x{size[1]}", fmt, len(data), case["xmp_ms"], case["xmp_bytes"],
                         case["c2pa_sign_ms"], case["c2pa_bytes"], case["c2pa_verify_ms"],
                         f"{100 * (len(signed.data) - len(data)) / len(data):.2f}%"))
    imports = [run_json(["-c", IMPORT])["import_ms"] for _ in range(3 if quick else 7)]
    print(table(["size", "format", "output bytes", "XMP ms", "XMP bytes", "C2PA sign ms", "C2PA bytes",
                 "verify ms", "added"], rows))
    print(f"\nimport c2pa in a fresh interpreter (jobs that sign, once per sandbox): {median(imports):.0f} ms "
          f"median of {len(imports)}; signing with the local in-process key (KMS adds its round trip)")
    payload = {"quick": quick, "repetitions": {"xmp": reps_xmp, "sign": reps_sign}, "cases": cases,
               "c2pa_import_ms": {"median": round(median(imports), 1), "runs": imports}, "targets": {}}
    write_results("provenance", payload)
    return payload


if __name__ == "__main__":
    run_as_script(main, __doc__)
