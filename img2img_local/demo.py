"""`img2img demo`: the whole product offline, on the sample photos, with a before/after contact sheet.

Starts the local stack, uploads the photos in samples/ with a realistic mix of operations (the Image
Services first: remove background by folder, inpaint with a mask that arrives after its image, erase with
a mask that came first, outpaint, fast upscale, search and recolor, style transfer with a style image) and
of parameter sources (metadata, sidecar before and after the image, a folder `_defaults.json`, SD3.5
and SDXL image-to-image, one invalid job on purpose), waits for every outcome record, downloads the
results into demo-out/ and checks each job reached the outcome it was meant to. Then a small bulk job
(docs/bulk.md): a manifest of the sample photos, submitted and watched as `img2img bulk submit --watch`
does it, on the stack's emulated S3 Batch Operations, with its completion report.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import sys
import textwrap
import time
from dataclasses import dataclass, field
from email.header import Header
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from img2img_local.glyphs import TextDrawer
from img2img_local.project import REPO_ROOT

SAMPLES = REPO_ROOT / "samples"
SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"
# The bulk job's photos sit under an excluded prefix: their uploads start no job, the bulk job's rows do.
BULK_CATALOGUE = "catalogue/"
BULK_PARAMS = {"operation": "remove-background"}  # a fast operation without a prompt
BULK_OUTPUT_PREFIX = "bulk/demo/"
DEMO_CONTEXT = ("sidecarGraceSeconds=30", "logLevel=WARNING", f'excludedPrefixes=["{BULK_CATALOGUE}"]')


@dataclass
class DemoJob:
    key: str
    sample: str
    source: str                       # how its parameters travel (for the table and the sheet)
    metadata: dict = field(default_factory=dict)
    sidecar: dict | None = None
    sidecar_when: str = ""            # "before" | "after"
    expect: str = "succeeded"
    expect_code: str | None = None
    # Companion images uploaded with it: (suffix, maker of its bytes, "before" | "after" the image).
    companions: tuple[tuple[str, str, str], ...] = ()


FOLDER_DEFAULTS = {"demo/pixel/_defaults.json": {"model_id": SDXL, "style_preset": "pixel-art",
                                                  "prompt": "a retro video game scene", "image_strength": 0.3},
                   "demo/remove-background/_defaults.json": {"operation": "remove-background"}}

JOBS = (
    DemoJob("demo/remove-background/chelsea.png", "chelsea.png", "folder _defaults.json: operation"),
    DemoJob("demo/coffee-inpaint.png", "coffee.png", "metadata + mask uploaded after the image",
            {"operation": "inpaint", "prompt": "a cup of bright green tea", "seed": "4"},
            companions=(("mask.png", "centre-mask", "after"),)),
    DemoJob("demo/rocket-erase.jpg", "rocket.jpg", "metadata + mask uploaded first",
            {"operation": "erase", "grow-mask": "8"}, companions=(("mask.png", "centre-mask", "before"),)),
    DemoJob("demo/astronaut-outpaint.png", "astronaut.png", "sidecar before image", sidecar={
        "operation": "outpaint", "left": 160, "right": 160, "prompt": "a space station", "seed": 2},
        sidecar_when="before"),
    DemoJob("demo/chelsea-upscale.png", "chelsea.png", "metadata", {"operation": "upscale-fast"}),
    DemoJob("demo/coffee-recolor.png", "coffee.png", "metadata",
            {"operation": "search-recolor", "select-prompt": "the cup", "prompt": "a bright red cup", "seed": "9"}),
    DemoJob("demo/chelsea-style.png", "chelsea.png", "metadata + style image first",
            {"operation": "style-transfer", "style-strength": "0.8"},
            companions=(("style.jpg", "rocket.jpg", "before"),)),
    DemoJob("demo/astronaut-comic.png", "astronaut.png", "metadata",
            {"prompt": "an astronaut drawn as a comic", "style-preset": "comic-book", "seed": "11",
             "model-id": SDXL}),
    DemoJob("demo/astronaut-film.png", "astronaut.png", "metadata params JSON",
            {"params": json.dumps({"prompt": "a portrait on expired film", "style_preset": "analog-film",
                                   "image_strength": 0.6, "model_id": SDXL, "seed": 7})}),
    DemoJob("demo/chelsea.png", "chelsea.png", "sidecar after image", sidecar={
        "prompt": "a cat made of origami paper", "strength": 0.6, "seed": 3}, sidecar_when="after"),
    DemoJob("demo/coffee.png", "coffee.png", "sidecar before image (AWS docs body)", sidecar={
        "text_prompts": [{"text": "a cup of coffee on the moon", "weight": 1.0},
                         {"text": "text, watermark", "weight": -1.0}],
        "cfg_scale": 8, "seed": 5, "style_preset": "photographic", "model_id": SDXL}, sidecar_when="before"),
    DemoJob("demo/pixel/rocket.jpg", "rocket.jpg", "folder _defaults.json"),
    DemoJob("demo/my folder/rocket ü+1.jpg", "rocket.jpg", "metadata, SD3.5 strong",
            {"prompt": "a rocket launch at night, neon", "strength": "0.85", "output-format": "webp"}),
    DemoJob("demo/chelsea-中文.png", "chelsea.png", "metadata RFC 2047 (Chinese)",
            {"prompt": Header("一只戴着宇航头盔的猫", "utf-8").encode(), "seed": "21"}),
    DemoJob("demo/rocket-bad.jpg", "rocket.jpg", "metadata, invalid on purpose",
            {"prompt": "a rocket", "cfg-scale": "50", "model-id": SDXL}, expect="failed",
            expect_code="invalid_parameters"),
)


def run_demo(stack, out_dir: Path, timeout: float = 90.0, progress=print, out=None) -> int:
    """Upload, wait, download, draw, then the bulk job; 0 when every job reached its expected outcome.
    The stack must exclude BULK_CATALOGUE (DEMO_CONTEXT)."""
    out = out or sys.stdout
    s3 = stack.client("s3")
    inb, outb = stack.resources.input_bucket, stack.resources.output_bucket
    started: dict[str, float] = {}
    for key, body in FOLDER_DEFAULTS.items():
        s3.put_object(Bucket=inb, Key=key, Body=json.dumps(body).encode(), ContentType="application/json")
    for job in JOBS:
        if job.sidecar_when == "before":
            _put_sidecar(s3, inb, job)
        _put_companions(s3, inb, job, "before")
        started[job.key] = time.monotonic()
        s3.put_object(Bucket=inb, Key=job.key, Body=(SAMPLES / job.sample).read_bytes(), Metadata=job.metadata)
    time.sleep(2)  # let the images without parameters (or without their mask) start waiting for them
    for job in JOBS:
        if job.sidecar_when == "after":
            _put_sidecar(s3, inb, job)
        _put_companions(s3, inb, job, "after")
    progress(f"uploaded {len(JOBS)} images to s3://{inb}/demo/; waiting for their outcome records")

    records, seconds = _wait_for_records(s3, outb, started, timeout, progress)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    rows, tiles, wrong = [], [], 0
    for job in JOBS:
        record = records.get(job.key)
        status = record["status"] if record else "missing"
        code = (record or {}).get("error", {}) or {}
        ok = status == job.expect and (job.expect_code is None or code.get("code") == job.expect_code)
        wrong += not ok
        output = _download(s3, record, out_dir) if record else None
        rows.append((job.key, job.source, (record or {}).get("operation") or "-",
                     (record or {}).get("model_id") or "-",
                     str(((record or {}).get("seeds") or ["-"])[0]),
                     status + (f" ({code.get('code')})" if code.get("code") else "")
                     + ("" if ok else "  <-- UNEXPECTED"),
                     f"{seconds.get(job.key, float('nan')):.1f}"))
        tiles.append((job, record, output))
    sheet = out_dir / "contact-sheet.png"
    contact_sheet(tiles).save(sheet)
    _save_pairs(tiles, out_dir / "pairs")
    print(_table(("input", "parameter source", "operation", "model", "seed", "outcome", "seconds"), rows), file=out)
    print(f"\noutputs and records: {out_dir}/   contact sheet: {sheet}", file=out)
    if wrong:
        print(f"{wrong} job(s) did not reach their expected outcome", file=out)
    bulk_ok = run_bulk(stack, out_dir, timeout, out)
    return 1 if wrong or not bulk_ok else 0


def run_bulk(stack, out_dir: Path, timeout: float, out) -> bool:
    """A bulk job over the sample photos through the CLI's own functions (img2img_local/bulk.py): submit,
    the emulated S3 Batch Operations job, the live progress bar, the completion report; True when every
    row succeeded and the report and the progress item agree."""
    from img2img.core import bulk as core_bulk
    from img2img.core.bulk import encode_manifest
    from img2img_local import bulk
    from img2img_local.batch_operations import read_report

    if not any(BULK_CATALOGUE.startswith(p) for p in stack.effective_config.worker_excluded_prefixes):
        raise ValueError(f"the demo's stack must exclude {BULK_CATALOGUE} (DEMO_CONTEXT): its photos would "
                         "start jobs by themselves")
    s3 = stack.client("s3")
    inb, outb = stack.resources.input_bucket, stack.resources.output_bucket
    photos = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    keys = [BULK_CATALOGUE + p.name for p in photos]
    for photo, key in zip(photos, keys, strict=True):
        s3.put_object(Bucket=inb, Key=key, Body=photo.read_bytes())
    print(f"\nbulk job: {BULK_PARAMS['operation']} over the {len(keys)} photos in s3://{inb}/{BULK_CATALOGUE} "
          "(as `img2img bulk submit manifest.csv --watch`)", file=out)
    target = bulk.stack_target(stack)
    manifest = encode_manifest((inb, key, None) for key in keys)
    bulk_id, job_id = bulk.submit(target, manifest, dict(BULK_PARAMS), BULK_OUTPUT_PREFIX, out=out)
    deadline = time.monotonic() + timeout
    job = stack.batch_operations.wait(job_id, timeout)
    progress = bulk.watch(target, bulk_id, out=out, interval=0.5, timeout=max(1.0, deadline - time.monotonic()))
    report_key, *_ = stack.batch_operations.report_keys(job_id) or [""]
    report = read_report(s3, outb, report_key) if report_key else []
    tasks: dict[str, int] = {}
    for row in report:
        tasks[row["TaskStatus"]] = tasks.get(row["TaskStatus"], 0) + 1
    (out_dir / "bulk").mkdir(parents=True, exist_ok=True)
    _write_report(out_dir / "bulk" / "batch-operations-report.csv", report)
    for key in keys:
        try:
            record = json.loads(s3.get_object(Bucket=outb, Key=f"{BULK_OUTPUT_PREFIX}{key}.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            continue
        _download(s3, record, out_dir)
    counts = ", ".join(f"{status} {n}" for status, n in sorted(tasks.items())) or "none"
    print(f"S3 Batch Operations' completion report: s3://{outb}/{report_key} (job {job['Status']}): "
          f"{len(report)} tasks, {counts}; copied to {out_dir}/bulk/batch-operations-report.csv", file=out)
    rows = _bulk_report(target, s3, outb, bulk_id, max(1.0, deadline - time.monotonic()))
    (out_dir / "bulk" / "report.csv").write_bytes(rows)
    statuses = [row["status"] for row in csv.DictReader(io.StringIO(rows.decode("utf-8")))]
    print(f"the bulk job's report (BulkJobCompleted published): s3://{outb}/"
          f"{core_bulk.report_key(progress.definition.get('output_prefix') or '', bulk_id)}: {len(statuses)} rows, "
          f"{', '.join(f'{s} {statuses.count(s)}' for s in sorted(set(statuses))) or 'none'}; "
          f"copied to {out_dir}/bulk/report.csv", file=out)
    print(f"bulk outputs and records: {out_dir}/{BULK_OUTPUT_PREFIX}{BULK_CATALOGUE}", file=out)
    ok = (progress.finished and progress.counts == {"succeeded": len(keys)} and tasks == {"succeeded": len(keys)}
          and statuses == ["succeeded"] * len(keys))
    if not ok:
        print(f"the bulk job did not end as expected: progress {progress.counts} of {progress.total} rows, "
              f"report {tasks or 'missing'}", file=out)
    return ok


def _bulk_report(target, s3, bucket: str, bulk_id: str, timeout: float) -> bytes:
    """Our own report (bucket, key, version, status, error code, output key, record key), written by the
    worker that took the last row's report request: b"" if it did not come within `timeout`."""
    from img2img.core import bulk as core_bulk

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = target.progress.get(bulk_id)
        if progress is not None and progress.completed_at:
            key = core_bulk.report_key(str(progress.definition.get("output_prefix") or ""), bulk_id)
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        time.sleep(0.2)
    return b""


def _write_report(path: Path, rows: list[dict[str, str]]) -> None:
    from img2img_local.batch_operations import REPORT_SCHEMA

    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, [name.strip() for name in REPORT_SCHEMA.split(",")], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _put_companions(s3, bucket: str, job: DemoJob, when: str) -> None:
    for suffix, maker, moment in job.companions:
        if moment == when:
            s3.put_object(Bucket=bucket, Key=f"{job.key}.{suffix}", Body=companion_bytes(maker, job.sample))


def companion_bytes(maker: str, sample: str) -> bytes:
    """A sample photo (a style image), or a mask drawn for the sample: white (edit) over its centre third."""
    if maker != "centre-mask":
        return (SAMPLES / maker).read_bytes()
    width, height = Image.open(SAMPLES / sample).size
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).ellipse((width // 3, height // 3, 2 * width // 3, 2 * height // 3), fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def _put_sidecar(s3, bucket: str, job: DemoJob) -> None:
    s3.put_object(Bucket=bucket, Key=job.key + ".json", Body=json.dumps(job.sidecar).encode(),
                  ContentType="application/json")


def _wait_for_records(s3, bucket: str, started: dict, timeout: float, progress):
    deadline = time.monotonic() + timeout
    records: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    while len(records) < len(started) and time.monotonic() < deadline:
        for key in started:
            if key in records:
                continue
            try:
                body = s3.get_object(Bucket=bucket, Key=f"{key}.json")["Body"].read()
            except s3.exceptions.NoSuchKey:
                continue
            records[key] = json.loads(body)
            seconds[key] = time.monotonic() - started[key]
            progress(f"  [{len(records)}/{len(started)}] {key}: {records[key]['status']}")
        time.sleep(0.5)
    return records, seconds


def _download(s3, record: dict, out_dir: Path) -> Image.Image | None:
    record_path = out_dir / record["record"]["key"]
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2, ensure_ascii=False))
    for output in record.get("outputs", []):
        data = s3.get_object(Bucket=output["bucket"], Key=output["key"])["Body"].read()
        path = out_dir / output["key"]
        path.write_bytes(data)
        return Image.open(io.BytesIO(data))
    return None


def _label(job: DemoJob, record: dict | None) -> list[str]:
    if not record:
        return [job.key, "no outcome record"]
    sent = record.get("model_request") or record.get("params", {})  # what the model got, defaults included
    operation = record.get("operation") or "image-to-image"
    if operation == "image-to-image":
        name = "image_strength" if "image_strength" in sent else "strength"
        model = "SDXL" if "xl" in (record.get("model_id") or "") else "SD3.5"
        lines = [job.key, job.source,
                 f"{model}  preset={sent.get('style_preset', '-')}  {name}={sent.get(name, '-')}"]
    else:
        shown = {k: v for k, v in sent.items() if k not in ("output_format", "seed")}
        lines = [job.key, job.source, f"{operation}  " + "  ".join(f"{k}={v}" for k, v in shown.items())[:70]]
        for name, ref in (record.get("companions") or {}).items():
            lines.append(f"{name}: {ref.get('key', 'alpha channel').rsplit('/', 1)[-1]}"
                         + (f"  covers {ref['coverage']:.0%}" if "coverage" in ref else ""))
    prompt = _prompt_of(record)
    if prompt:
        lines += textwrap.wrap(f"prompt: {prompt}", 62)[:2]
    translated = record.get("translation") or {}
    if translated.get("translated"):
        english = ", ".join(translated["english"].values())
        lines += textwrap.wrap(f"in English ({translated['model_id']}): {english}", 62)[:2]
    if record["status"] == "succeeded":
        lines.append(f"seed {record['seeds'][0]}  {record['outputs'][0]['width']}x{record['outputs'][0]['height']}")
    else:
        lines += textwrap.wrap(f"FAILED {record['error']['code']}: {record['error']['message']}", 62)[:3]
    return lines


def _prompt_of(record: dict) -> str:
    """The positive prompt the job had, from its effective parameters (either vocabulary)."""
    params = record.get("params") or {}
    if isinstance(params.get("prompt"), str):
        return params["prompt"]
    parts = [p.get("text", "") for p in params.get("text_prompts") or [] if float(p.get("weight", 1)) > 0]
    return ", ".join(str(t) for t in parts)


def contact_sheet(tiles, thumb: int = 256) -> Image.Image:
    """Before | after, one row per job, each labelled with how it was made."""
    font = ImageFont.load_default(size=13)
    text = TextDrawer(13)  # CJK prompts and keys as characters, not boxes (img2img_local/glyphs.py)
    label_w, pad, line_h = 430, 10, 17
    sheet = Image.new("RGB", (2 * thumb + label_w + 4 * pad, len(tiles) * (thumb + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (job, record, output) in enumerate(tiles):
        y = pad + row * (thumb + pad)
        before = ImageOps.contain(Image.open(SAMPLES / job.sample).convert("RGB"), (thumb, thumb))
        sheet.paste(before, (pad, y))
        if output is not None:
            sheet.paste(_on_checkerboard(ImageOps.contain(output, (thumb, thumb))), (2 * pad + thumb, y))
        else:
            draw.rectangle((2 * pad + thumb, y, 2 * pad + 2 * thumb, y + thumb), fill=(250, 225, 225),
                           outline=(200, 0, 0))
            draw.text((2 * pad + thumb + 12, y + thumb // 2 - 8), "no image (failed)", fill=(160, 0, 0), font=font)
        for i, line in enumerate(_label(job, record)):
            text.draw(draw, (3 * pad + 2 * thumb, y + 6 + i * line_h), line, fill=(0, 0, 0) if i else (0, 60, 160))
    return sheet


def _save_pairs(tiles, folder: Path, height: int = 200) -> None:
    """One before | (companion |) after picture per successful job, as small JPEGs: docs/operations.md
    shows those of the operations (the mask between shows its polarity: white = edit)."""
    folder.mkdir(parents=True, exist_ok=True)
    for job, record, output in tiles:
        if output is None or record is None:
            continue
        panels = [Image.open(SAMPLES / job.sample).convert("RGB")]
        panels += [Image.open(io.BytesIO(companion_bytes(maker, job.sample))).convert("RGB")
                   for _, maker, _ in job.companions]
        panels.append(_on_checkerboard(output))
        panels = [p.resize((max(1, round(p.width * height / p.height)), height)) for p in panels]
        pair = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), height), "white")
        x = 0
        for panel in panels:
            pair.paste(panel, (x, 0))
            x += panel.width + 8
        name = Path(job.key).stem if record.get("operation") == "image-to-image" else record["operation"]
        pair.save(folder / f"{name}.jpg", quality=82, optimize=True)


def _on_checkerboard(image: Image.Image, cell: int = 8) -> Image.Image:
    """Transparency made visible, the way image editors show it."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return image.convert("RGB")
    board = Image.new("RGB", image.size, (255, 255, 255))
    draw = ImageDraw.Draw(board)
    for y in range(0, image.height, cell):
        for x in range((y // cell) % 2 * cell, image.width, 2 * cell):
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(204, 204, 204))
    rgba = image.convert("RGBA")
    board.paste(rgba, mask=rgba.getchannel("A"))
    return board


def _table(header, rows) -> str:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


# ---- the `demo` subcommand -------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="where results land (default demo-out/)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for all outcomes")


def run(args) -> int:
    from img2img_local.project import load_pipeline_config
    from img2img_local.stack import LocalStack

    class QuietStack(LocalStack):
        """The demo's stack: workers keep their metrics (EMF lines) to themselves."""

        def worker_environment(self):
            return {**super().worker_environment(), "POWERTOOLS_METRICS_DISABLED": "true"}

    started = time.monotonic()
    print("starting the local stack (moto S3/SQS/DynamoDB/EventBridge, offline Bedrock engine, worker)")
    # Quiet workers (warnings and errors still show): the table and the contact sheet tell the story.
    logging.getLogger("img2img_local.event_source").setLevel(logging.WARNING)
    with QuietStack(load_pipeline_config(list(DEMO_CONTEXT))) as stack:
        code = run_demo(stack, args.out, args.timeout)
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    return code
