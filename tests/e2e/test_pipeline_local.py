"""The real worker through the local stack: real photos dropped with metadata and with sidecars,
outcomes read back as a client would, the demo, and `img2img generate --offline`."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from img2img.core import c2pa_manifest, xmp
from img2img_local.demo import BULK_CATALOGUE, BULK_OUTPUT_PREFIX, run_demo
from img2img_local.project import load_pipeline_config
from img2img_local.stack import LocalStack
from tests.e2e.stack_fixtures import wait_for_record

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
IMG2IMG = Path(sys.executable).parent / "img2img"
SDXL = "stability.stable-diffusion-xl-v1"
GRACE = 4


@pytest.fixture(scope="module")
def stack():
    # As the demo's own stack: its bulk job's photos under an excluded prefix start no job by themselves.
    config = load_pipeline_config([f"sidecarGraceSeconds={GRACE}", "logLevel=WARNING",
                                   f'excludedPrefixes=["{BULK_CATALOGUE}"]'])
    with LocalStack(config, visibility_timeout_seconds=10) as running:
        yield running


def engine_calls(stack) -> int:
    return stack.engine.stats()["total"]


def test_a_photo_with_metadata_comes_out_transformed_with_its_record(stack):
    s3, r = stack.client("s3"), stack.resources
    photo = (SAMPLES / "rocket.jpg").read_bytes()
    s3.put_object(Bucket=r.input_bucket, Key="e2e/my rocket+1 ü.jpg", Body=photo,
                  Metadata={"prompt": "a rocket drawn as a comic", "style-preset": "comic-book", "seed": "11",
                            "model-id": SDXL})
    record = wait_for_record(stack, "e2e/my rocket+1 ü.jpg")
    assert record["status"] == "succeeded", record["error"]
    assert record["source"]["key"] == "e2e/my rocket+1 ü.jpg" and record["seeds"] == [11]
    output = record["outputs"][0]
    head = s3.head_object(Bucket=r.output_bucket, Key=output["key"])
    assert head["Metadata"]["seed"] == "11" and head["ContentType"] == "image/png"
    generated = Image.open(io.BytesIO(s3.get_object(Bucket=r.output_bucket, Key=output["key"])["Body"].read()))
    assert generated.size == (1216, 832)  # SDXL's nearest size to the 3:2 photo
    original = Image.open(io.BytesIO(photo)).convert("RGB").resize(generated.size)
    difference = ImageStat.Stat(ImageChops.difference(original, generated.convert("RGB"))).mean
    assert sum(difference) / 3 > 5  # really transformed, not a copy


def test_a_sidecar_after_the_image_runs_it_once(stack):
    s3, r = stack.client("s3"), stack.resources
    before = engine_calls(stack)
    s3.put_object(Bucket=r.input_bucket, Key="e2e/cat.png", Body=(SAMPLES / "chelsea.png").read_bytes())
    time.sleep(1)
    s3.put_object(Bucket=r.input_bucket, Key="e2e/cat.png.json",
                  Body=json.dumps({"prompt": "a cat made of origami paper", "strength": 0.6}).encode())
    record = wait_for_record(stack, "e2e/cat.png")
    assert record["status"] == "succeeded" and record["sidecar"]["key"] == "e2e/cat.png.json"
    assert record["model_request"]["strength"] == 0.6
    time.sleep(GRACE + 4)  # the image's own deferred check comes back and replays, not regenerates
    assert engine_calls(stack) - before == 1
    assert wait_for_record(stack, "e2e/cat.png")["job_id"] == record["job_id"]


def test_an_image_whose_sidecar_never_comes_fails_after_the_grace_period(stack):
    s3, r = stack.client("s3"), stack.resources
    s3.put_object(Bucket=r.input_bucket, Key="e2e/lonely.png", Body=(SAMPLES / "coffee.png").read_bytes())
    record = wait_for_record(stack, "e2e/lonely.png", timeout=GRACE + 40)
    assert record["status"] == "failed" and record["error"]["code"] == "missing_parameters"
    assert f"waited {GRACE} s" in record["error"]["message"]


def test_the_demo_reaches_every_expected_outcome(stack, tmp_path):
    printed = io.StringIO()
    assert run_demo(stack, tmp_path / "demo-out", timeout=60, progress=lambda *_: None, out=printed) == 0, \
        printed.getvalue()
    sheet = Image.open(tmp_path / "demo-out" / "contact-sheet.png")
    assert sheet.width > 900 and sheet.height > 8 * 256
    dlq = stack.client("sqs").get_queue_attributes(QueueUrl=stack.resources.dlq_url,
                                                   AttributeNames=["ApproximateNumberOfMessages"])
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "0"
    # Every demo output says what it is: the IPTC marking, and a manifest signed through (moto's) KMS.
    outputs = [p for p in (tmp_path / "demo-out" / "demo").rglob("*") if p.suffix in (".png", ".jpg", ".webp")
               and not p.name.endswith(".json")]
    assert len(outputs) >= 14
    for path in outputs:
        data = path.read_bytes()
        assert xmp.read_xmp(data)["digital_source_type"].startswith("http://cv.iptc.org/newscodes/digitalsourcetype/")
        assert c2pa_manifest.verify(data).valid, path
    verified = subprocess.run([str(IMG2IMG), "verify", str(outputs[0])], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and "Valid" in verified.stdout
    tampered = tmp_path / f"tampered{outputs[0].suffix}"
    data = bytearray(outputs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    refused = subprocess.run([str(IMG2IMG), "verify", str(tampered)], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0, refused.stdout

    # The bulk job over the sample photos: its progress bar, its completion report, one output per photo.
    photos = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    lines = printed.getvalue().splitlines()
    assert f"{len(photos)} rows, operation remove-background" in printed.getvalue()
    bars = [line for line in lines if line.startswith("[") and f"/{len(photos)}" in line]
    assert bars and bars[-1].startswith(f"[{'#' * 30}] {len(photos)}/{len(photos)}  succeeded {len(photos)}")
    report_line = next(line for line in lines if line.startswith("S3 Batch Operations' completion report: s3://"))
    assert "/report/job-" in report_line and f"{len(photos)} tasks, succeeded {len(photos)}" in report_line
    tasks = (tmp_path / "demo-out" / "bulk" / "batch-operations-report.csv").read_text().splitlines()
    assert tasks[0].startswith("Bucket,Key,VersionId,TaskStatus") and len(tasks) == 1 + len(photos)
    ours = next(line for line in lines if line.startswith("the bulk job's report (BulkJobCompleted published)"))
    assert "/_bulk/" in ours and f"{len(photos)} rows, succeeded {len(photos)}" in ours
    report = list(csv.DictReader((tmp_path / "demo-out" / "bulk" / "report.csv").open()))
    assert sorted(row["key"] for row in report) == [BULK_CATALOGUE + name for name in photos]
    assert {(row["status"], row["error_code"]) for row in report} == {("succeeded", "")}
    for name in photos:
        folder = tmp_path / "demo-out" / BULK_OUTPUT_PREFIX / BULK_CATALOGUE
        record = json.loads((folder / f"{name}.json").read_text())
        assert record["status"] == "succeeded" and record["operation"] == "remove-background"
        assert Image.open(folder / f"{name}.png").mode == "RGBA"  # the background is transparent
    # The catalogue's uploads started nothing: the bulk job's rows are its only records.
    listed = stack.client("s3").list_objects_v2(Bucket=stack.resources.output_bucket, Prefix=BULK_CATALOGUE)
    assert listed.get("KeyCount", 0) == 0


def test_generate_offline_writes_the_image_and_its_record(tmp_path):
    out = tmp_path / "out.png"
    done = subprocess.run([str(IMG2IMG), "generate", str(SAMPLES / "coffee.png"), "--offline", "--prompt",
                           "coffee on the moon", "--param", "seed=5", "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (1280, 832)  # SD3.5: about 1 MP at the photo's aspect
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["status"] == "succeeded" and record["seeds"] == [5]


def test_generate_reports_a_bad_parameter_in_one_line(tmp_path):
    done = subprocess.run([str(IMG2IMG), "generate", str(SAMPLES / "coffee.png"), "--offline", "--prompt", "x",
                           "--param", "style_preset=anime", "-o", str(tmp_path / "o.png")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "invalid_parameters" in done.stderr and "style_preset" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("env, says", [
    ({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}, "no AWS region"),  # bedrockRegion= empties it
    ({}, "no AWS credentials"),
])
def test_generate_without_region_or_credentials_says_what_to_set_in_one_line(tmp_path, env, says):
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true", **env)
    extra = ["-c", "bedrockRegion="] if "region" in says else []
    done = subprocess.run([str(IMG2IMG), "generate", str(SAMPLES / "coffee.png"), "--prompt", "x", *extra,
                           "-o", str(tmp_path / "o.png")], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=clean)
    assert done.returncode != 0 and says in done.stderr and "--offline" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_generate_offline_remove_background_makes_the_background_transparent(tmp_path):
    out = tmp_path / "cat.png"
    done = subprocess.run([str(IMG2IMG), "generate", "--offline", "--operation", "remove-background",
                           str(SAMPLES / "chelsea.png"), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    image = Image.open(out)
    assert image.mode == "RGBA" and image.getextrema()[3] == (0, 255)  # some pixels fully transparent
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["status"] == "succeeded" and record["operation"] == "remove-background"
    assert "remove-background" in record["model_id"]


def test_generate_offline_inpaint_with_a_mask_file(tmp_path):
    image = tmp_path / "photos" / "coffee.png"
    image.parent.mkdir()
    image.write_bytes((SAMPLES / "coffee.png").read_bytes())
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))  # the middle quarter: white = edit
    mask.save(tmp_path / "m.png")
    out = tmp_path / "sofa.png"
    done = subprocess.run([str(IMG2IMG), "generate", "--offline", "--operation", "inpaint", "--mask", "m.png",
                           "--prompt", "a green velvet sofa", str(image), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["operation"] == "inpaint" and record["companions"]["mask"]["key"] == "m.png"
    assert record["companions"]["mask"]["coverage"] == pytest.approx(0.25, abs=0.02)
    before, after = Image.open(image).convert("RGB"), Image.open(out).convert("RGB")
    w, h = before.size
    corner = (0, 0, w // 5, h // 5)
    assert ImageChops.difference(before.crop(corner), after.crop(corner)).getbbox() is None  # black = kept
    middle = (2 * w // 5, 2 * h // 5, 3 * w // 5, 3 * h // 5)
    assert ImageChops.difference(before.crop(middle), after.crop(middle)).getbbox() is not None
    assert sorted(p.name for p in image.parent.iterdir()) == ["coffee.png"]  # nothing written beside it


def test_generate_refuses_a_mask_for_an_operation_that_takes_none(tmp_path):
    Image.new("L", (64, 64), 255).save(tmp_path / "m.png")
    done = subprocess.run([str(IMG2IMG), "generate", "--offline", "--operation", "remove-background",
                           "--mask", "m.png", str(SAMPLES / "coffee.png"), "-o", str(tmp_path / "o.png")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "takes no mask" in done.stderr and "Traceback" not in done.stderr
