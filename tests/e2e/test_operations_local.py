"""Every Image Services operation through the local stack, as a client sees it: an upload (with its
companions, in both orders) or an ImageGenerationRequested event in, one record and an image that is
visibly the operation's result out."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageStat

from img2img.operations import SERVICES
from tests.e2e.stack_fixtures import local_stack, wait_for_record

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
GRACE = 3
# What each operation needs besides its image, as metadata (the table decides what is required).
METADATA = {
    "upscale-creative": {"prompt": "a sharp photo of a cat"},
    "upscale-conservative": {"prompt": "a photo of a cat"},
    "upscale-fast": {},
    "inpaint": {"prompt": "a green velvet sofa"},
    "outpaint": {"left": "64", "down": "32"},
    "erase": {},
    "remove-background": {"output-format": "webp"},
    "search-replace": {"prompt": "a red ball", "search-prompt": "the cat"},
    "search-recolor": {"prompt": "bright blue", "select-prompt": "the cat"},
    "control-sketch": {"prompt": "a watercolor cat"},
    "control-structure": {"prompt": "a bronze statue of a cat"},
    "style-guide": {"prompt": "a lighthouse", "aspect-ratio": "16:9"},
    "style-transfer": {"style-strength": "0.9"},
}


@pytest.fixture(scope="module")
def stack():
    with local_stack(GRACE) as running:
        yield running


def output_of(stack, record: dict) -> Image.Image:
    out = record["outputs"][0]
    return Image.open(io.BytesIO(stack.client("s3").get_object(Bucket=out["bucket"], Key=out["key"])["Body"].read()))


def mask_png(size: tuple[int, int]) -> bytes:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((size[0] // 3, size[1] // 3, 2 * size[0] // 3, 2 * size[1] // 3), fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def plain_background_photo() -> bytes:
    """A subject on a plain background: what remove-background is for."""
    image = Image.new("RGB", (400, 300), (240, 240, 240))
    ImageDraw.Draw(image).ellipse((130, 80, 270, 220), fill=(180, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("operation", SERVICES, ids=lambda op: op.name)
def test_every_operation_from_an_upload(stack, operation):
    s3, r = stack.client("s3"), stack.resources
    photo = plain_background_photo() if operation.transparent else (SAMPLES / "chelsea.png").read_bytes()
    key = f"ops/{operation.name}/photo.png"
    if any(c.name == "mask" for c in operation.companions):
        s3.put_object(Bucket=r.input_bucket, Key=f"{key}.mask.png", Body=mask_png(Image.open(io.BytesIO(photo)).size))
    if any(c.name == "style_image" for c in operation.companions):
        s3.put_object(Bucket=r.input_bucket, Key=f"ops/{operation.name}/photo.style.jpg",
                      Body=(SAMPLES / "rocket.jpg").read_bytes())
    s3.put_object(Bucket=r.input_bucket, Key=key, Body=photo,
                  Metadata={"operation": operation.name, **METADATA[operation.name]})
    record = wait_for_record(stack, key)
    assert record["status"] == "succeeded", record.get("error")
    assert record["operation"] == operation.name and record["model_id"] == operation.default_model_id
    assert set(record.get("companions", {})) == {c.name for c in operation.companions}
    output, source = output_of(stack, record), Image.open(io.BytesIO(photo))
    assert (output.width, output.height) == (record["outputs"][0]["width"], record["outputs"][0]["height"])
    if operation.name == "upscale-fast":
        assert output.size == (4 * source.width, 4 * source.height)
    if operation.name == "outpaint":
        assert output.size == (source.width + 64, source.height + 32)
    if operation.transparent:
        assert output.mode == "RGBA" and output.format == "WEBP"
        assert output.getpixel((2, 2))[3] < 32 and output.getpixel((200, 150))[3] > 224  # background gone


def test_a_mask_after_its_image_runs_the_job_once_and_a_mask_first_runs_at_once(stack):
    s3, r = stack.client("s3"), stack.resources
    photo = (SAMPLES / "coffee.png").read_bytes()
    size = Image.open(io.BytesIO(photo)).size
    calls = stack.engine.stats()["total"]
    s3.put_object(Bucket=r.input_bucket, Key="orders/late/cup.png", Body=photo,
                  Metadata={"operation": "inpaint", "prompt": "a cup of green tea"})
    time.sleep(2)  # the image's job has found no mask and waits (tests/handlers pin the exact orders)
    s3.put_object(Bucket=r.input_bucket, Key="orders/late/cup.mask.png", Body=mask_png(size))
    late = wait_for_record(stack, "orders/late/cup.png")
    assert late["status"] == "succeeded" and late["companions"]["mask"]["key"] == "orders/late/cup.mask.png"
    assert late["trigger"] in ("mask-upload", "sidecar-wait")  # run by the mask's upload, or the image's check
    s3.put_object(Bucket=r.input_bucket, Key="orders/first/cup.png.mask.png", Body=mask_png(size))
    s3.put_object(Bucket=r.input_bucket, Key="orders/first/cup.png", Body=photo,
                  Metadata={"operation": "inpaint", "prompt": "a cup of green tea"})
    first = wait_for_record(stack, "orders/first/cup.png")
    assert first["status"] == "succeeded" and first["trigger"] in ("upload", "mask-upload")
    time.sleep(GRACE + 2)  # the image's delayed check (if any) and the mask's own event have all landed
    assert stack.engine.stats()["total"] - calls == 2  # one model call per job, whatever the order
    masks = stack.client("s3").list_objects_v2(Bucket=r.output_bucket, Prefix="orders/").get("Contents", [])
    assert not [o["Key"] for o in masks if ".mask." in o["Key"]]  # a companion never makes an output


def test_without_a_mask_the_alpha_channel_is_the_mask_after_the_grace_period(stack):
    s3, r = stack.client("s3"), stack.resources
    image = Image.open(SAMPLES / "chelsea.png").convert("RGBA")
    ImageDraw.Draw(image).rectangle((100, 100, 200, 200), fill=(0, 0, 0, 0))  # transparent = edit
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    s3.put_object(Bucket=r.input_bucket, Key="alpha/cat.png", Body=buffer.getvalue(), Metadata={"operation": "erase"})
    record = wait_for_record(stack, "alpha/cat.png", timeout=GRACE + 60)
    assert record["status"] == "succeeded" and record["companions"]["mask"]["from"] == "alpha"
    assert 0 < record["companions"]["mask"]["coverage"] < 0.2
    erased = output_of(stack, record).convert("RGB")
    inside = ImageStat.Stat(erased.crop((120, 120, 180, 180))).stddev
    assert sum(inside) / 3 < 40  # filled from its surroundings, not a hole


def test_an_image_too_long_and_thin_is_refused_by_its_rule_unless_the_job_pads_it(stack):
    s3, r = stack.client("s3"), stack.resources
    strip = Image.new("RGB", (900, 200), (30, 120, 200))
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    s3.put_object(Bucket=r.input_bucket, Key="rules/strip.png", Body=buffer.getvalue(),
                  Metadata={"operation": "control-sketch", "prompt": "a river"})
    refused = wait_for_record(stack, "rules/strip.png")
    assert refused["status"] == "failed" and refused["error"]["code"] == "invalid_image"
    assert "aspect ratio" in refused["error"]["message"] and "fit" in refused["error"]["message"]
    s3.put_object(Bucket=r.input_bucket, Key="rules/strip-pad.png", Body=buffer.getvalue(),
                  Metadata={"operation": "control-sketch", "prompt": "a river", "fit": "pad"})
    padded = wait_for_record(stack, "rules/strip-pad.png")
    assert padded["status"] == "succeeded" and padded["prepared"]["fit"] == "pad"
    assert padded["prepared"]["width"] <= 2.5 * padded["prepared"]["height"]


def test_an_operation_requested_by_event_reads_its_named_mask(stack):
    s3, r = stack.client("s3"), stack.resources
    photo = (SAMPLES / "coffee.png").read_bytes()
    s3.put_object(Bucket=r.input_bucket, Key="by-event/masks/cup-mask.png",
                  Body=mask_png(Image.open(io.BytesIO(photo)).size))
    s3.put_object(Bucket=r.input_bucket, Key="by-event/cup.png", Body=photo,
                  Metadata={"operation": "erase", "mask": "masks/cup-mask.png"})
    wait_for_record(stack, "by-event/cup.png")  # the upload's own job
    stack.client("events").put_events(Entries=[{
        "EventBusName": r.event_bus_name, "Source": "e2e.test", "DetailType": "ImageGenerationRequested",
        "Detail": json.dumps({"source": f"s3://{r.input_bucket}/by-event/cup.png",
                              "params": {"operation": "inpaint", "prompt": "a teapot",
                                         "mask": "/by-event/masks/cup-mask.png"}})}])
    record = wait_for_record(stack, "events/by-event/cup.png")
    assert record["status"] == "succeeded" and record["operation"] == "inpaint"
    assert record["companions"]["mask"]["key"] == "by-event/masks/cup-mask.png"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("job", [{"prompt": "a watercolor cat"}, {"operation": "upscale-fast"}],
                         ids=["generation", "edit"])
def test_every_output_format_is_marked_and_signed_on_the_local_stack(stack, fmt, job):
    from img2img.core import c2pa_manifest, xmp

    s3, r = stack.client("s3"), stack.resources
    key = f"provenance/{fmt}/{'edit' if 'operation' in job else 'generation'}.png"
    s3.put_object(Bucket=r.input_bucket, Key=key, Body=(SAMPLES / "chelsea.png").read_bytes(),
                  Metadata={**job, "output-format": fmt})
    record = wait_for_record(stack, key)
    assert record["status"] == "succeeded", record.get("error")
    out = record["outputs"][0]
    data = s3.get_object(Bucket=out["bucket"], Key=out["key"])["Body"].read()
    source_type = "compositeWithTrainedAlgorithmicMedia" if "operation" in job else "trainedAlgorithmicMedia"
    assert xmp.read_xmp(data)["digital_source_type"].endswith("/" + source_type)
    check = c2pa_manifest.verify(data, f"image/{fmt}")
    assert check.valid, (check.failures, check.error)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0xFF
    assert not c2pa_manifest.verify(bytes(tampered), f"image/{fmt}").valid
