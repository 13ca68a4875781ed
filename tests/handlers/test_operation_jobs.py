"""Every Image Services operation through the real SQS handler: uploads, companions, sizes (moto + Stubber).

Each test pins the exact InvokeModel call (the `us.` profile id, the body bytes: image first, then its
companions, then the fields in the table's order) and checks the one record a user reads.
"""
from __future__ import annotations

import base64
import io
import json

import pytest
from aws_world import INPUT, OUTPUT, SDXL, bedrock_body, png_bytes, s3_body, sdxl_ok
from PIL import Image, ImageDraw

from img2img.core import fitting, images, masks
from img2img.operations import BY_NAME, SERVICES

# Per operation: the job's metadata (strings, as S3 stores them) and the request fields it must send,
# in the table's order.
JOBS = {
    "upscale-creative": ({"prompt": "a sharp castle", "creativity": "0.2", "seed": "3"},
                         {"prompt": "a sharp castle", "creativity": 0.2, "seed": 3, "output_format": "png"}),
    "upscale-conservative": ({"prompt": "a sharp castle", "creativity": "0.4"},
                             {"prompt": "a sharp castle", "creativity": 0.4, "output_format": "png"}),
    "upscale-fast": ({}, {"output_format": "png"}),
    "inpaint": ({"prompt": "a green velvet sofa", "grow-mask": "3"},
                {"prompt": "a green velvet sofa", "grow_mask": 3, "output_format": "png"}),
    "outpaint": ({"left": "64", "down": "32", "creativity": "0.6"},
                 {"left": 64, "down": 32, "creativity": 0.6, "output_format": "png"}),
    "erase": ({"seed": "9"}, {"seed": 9, "output_format": "png"}),
    "remove-background": ({"output-format": "webp"}, {"output_format": "webp"}),
    "search-replace": ({"prompt": "a cat", "search-prompt": "the dog"},
                       {"prompt": "a cat", "search_prompt": "the dog", "output_format": "png"}),
    "search-recolor": ({"prompt": "bright red", "select-prompt": "the car"},
                       {"prompt": "bright red", "select_prompt": "the car", "output_format": "png"}),
    "control-sketch": ({"prompt": "a house", "control-strength": "0.6"},
                       {"prompt": "a house", "control_strength": 0.6, "output_format": "png"}),
    "control-structure": ({"prompt": "a house", "control-strength": "0.6"},
                          {"prompt": "a house", "control_strength": 0.6, "output_format": "png"}),
    "style-guide": ({"prompt": "a house", "fidelity": "0.4", "aspect-ratio": "16:9"},
                    {"prompt": "a house", "fidelity": 0.4, "aspect_ratio": "16:9", "output_format": "png"}),
    "style-transfer": ({"composition-fidelity": "0.8"}, {"output_format": "png", "composition_fidelity": 0.8}),
}


def test_every_operation_has_a_job_here():
    assert set(JOBS) == {op.name for op in SERVICES}


def photo(size=(256, 192)) -> bytes:
    image = Image.new("RGB", size, (90, 120, 160))
    ImageDraw.Draw(image).ellipse((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(220, 200, 40))
    return images.png_bytes(image)


def mask_file(size=(256, 192), box=(64, 48, 160, 144)) -> bytes:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return images.png_bytes(mask)


def with_hole(size=(256, 192)) -> bytes:
    """An RGBA picture whose left quarter is transparent (the part to edit)."""
    image = Image.open(io.BytesIO(photo(size))).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 4, size[1]))
    return images.png_bytes(image)


def prepare(world, data: bytes, operation: str, fit: str = "keep", **kw) -> images.PreparedImage:
    rule = BY_NAME[operation].rule
    return images.prepare(data, lambda w, h: fitting.fit_size(w, h, rule, fit), fit,
                          world.pipeline.settings.max_input_pixels, **kw)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def invoke(model_id: str, body: dict) -> dict:
    return {"modelId": model_id, "body": json.dumps(body), "contentType": "application/json",
            "accept": "application/json"}


def service_ok(seed: int = 7, image: bytes | None = None) -> dict:
    return bedrock_body({"seeds": [seed], "finish_reasons": [None], "images": [b64(image or png_bytes())]})


def expect(world, operation: str, body: dict, image: bytes | None = None) -> None:
    world.stub.add_response("invoke_model", service_ok(image=image), invoke(BY_NAME[operation].default_model_id, body))


def calls(world) -> list:
    """Bedrock calls made from now on, wherever they come from."""
    made: list = []
    world.pipeline.model._runtime.meta.events.register(
        "before-parameter-build.bedrock-runtime.InvokeModel", lambda **kw: made.append(kw.get("params")))
    return made


class RecordingScheduler:
    def __init__(self):
        self.deferred: list[tuple[dict, int]] = []

    def defer(self, message, delay_seconds):
        self.deferred.append((message, delay_seconds))


def records_of(world) -> list[str]:
    return [k for k in world.output_keys() if k.endswith(".json") and "_staging/" not in k]


def version(put: dict) -> str:
    return put["VersionId"]


# ---- every operation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("op", SERVICES, ids=[op.name for op in SERVICES])
def test_each_operation_sends_its_exact_body_and_records_one_success(world, op):
    metadata, request = JOBS[op.name]
    key = f"ops/{op.name}/room.png"
    picture = photo()
    companions, refs = {}, {}
    prepared = prepare(world, picture, op.name, alpha=any(c.alpha_fallback for c in op.companions))
    for companion in op.companions:  # the companion first: the image then runs at once
        if companion.is_mask:
            companion_key, data = f"{key}.mask.png", mask_file()
            companions[companion.body_field] = b64(masks.prepare_mask(data, prepared))
        else:
            companion_key, data = f"ops/{op.name}/room.style.png", photo((128, 128))
            companions[companion.body_field] = b64(prepare(world, data, op.name).png)
        refs[companion.name] = (companion_key, version(world.put(companion_key, data)))
    world.put(key, picture, {"operation": op.name, **metadata})
    answer = images.png_bytes(Image.new("RGBA", (256, 192), (10, 200, 10, 0 if op.transparent else 255)))
    expect(world, op.name, {op.image_field: prepared.base64, **companions, **request}, image=answer)

    assert world.run(s3_body(key)) == {"batchItemFailures": []}

    world.stub.assert_no_pending_responses()
    output = key + "." + request["output_format"]
    assert world.output_keys() == sorted([key + ".json", output])
    record = world.record(key)
    assert record["status"] == "succeeded", record.get("error")
    assert record["operation"] == op.name and record["model_id"] == op.default_model_id
    assert record["model_request"] == request
    if refs:
        assert {name: (ref["key"], ref["version_id"]) for name, ref in record["companions"].items()} == refs
        assert all(ref["bucket"] == INPUT and ref["etag"] for ref in record["companions"].values())
        if "mask" in refs:
            assert record["companions"]["mask"]["coverage"] == masks.coverage(
                base64.b64decode(companions["mask"]))
    else:
        assert "companions" not in record
    stored = Image.open(io.BytesIO(world.s3.get_object(Bucket=OUTPUT, Key=output)["Body"].read()))
    if op.transparent:  # remove-background keeps what it made: the transparency
        assert stored.mode == "RGBA" and stored.getextrema()[3][0] == 0


# ---- companions: both arrival orders ------------------------------------------------------------------

INPAINT = {"operation": "inpaint", "prompt": "a green velvet sofa"}
INPAINT_REQUEST = {"prompt": "a green velvet sofa", "output_format": "png"}


def inpaint_body(world, picture: bytes, mask: bytes) -> dict:
    prepared = prepare(world, picture, "inpaint")
    return {"image": prepared.base64, "mask": b64(masks.prepare_mask(mask, prepared)), **INPAINT_REQUEST}


def test_image_first_waits_for_its_mask_whose_upload_runs_it_once(world):
    scheduler = world.pipeline.scheduler = RecordingScheduler()
    made = calls(world)
    picture, mask = photo(), mask_file()
    world.put("rooms/a.png", picture, INPAINT)

    world.run(s3_body("rooms/a.png"))
    assert world.output_keys() == [] and made == []  # waiting for the mask, not failed
    [(check, delay)] = scheduler.deferred
    assert check["key"] == "rooms/a.png" and 55 <= delay <= 60

    mask_version = version(world.put("rooms/a.png.mask.png", mask))
    world.stub.add_response("invoke_model", service_ok(), invoke(BY_NAME["inpaint"].default_model_id,
                                                                 inpaint_body(world, picture, mask)))
    world.run(s3_body("rooms/a.png.mask.png"))
    first = world.record("rooms/a.png")
    assert first["status"] == "succeeded" and first["trigger"] == "mask-upload"
    assert first["companions"]["mask"]["version_id"] == mask_version

    world.run(json.dumps(check))  # the grace period ends: the same versions, so no second call
    assert len(made) == 1 and world.record("rooms/a.png")["job_id"] == first["job_id"]
    assert records_of(world) == ["rooms/a.png.json"]


def test_mask_first_runs_at_once_when_the_image_arrives_and_its_late_event_replays(world):
    world.pipeline.scheduler = RecordingScheduler()
    made = calls(world)
    picture, mask = photo(), mask_file()
    world.put("rooms/b.mask.png", mask)  # the stem form: rooms/b.png's mask
    world.run(s3_body("rooms/b.mask.png"))  # no image yet: nothing to do, and no job of its own
    assert world.output_keys() == [] and world.pipeline.scheduler.deferred == []

    world.put("rooms/b.png", picture, INPAINT)
    world.stub.add_response("invoke_model", service_ok(), invoke(BY_NAME["inpaint"].default_model_id,
                                                                 inpaint_body(world, picture, mask)))
    world.run(s3_body("rooms/b.png"))
    first = world.record("rooms/b.png")
    assert first["status"] == "succeeded" and first["trigger"] == "upload"
    assert first["companions"]["mask"]["key"] == "rooms/b.mask.png"
    assert world.pipeline.scheduler.deferred == []

    world.run(s3_body("rooms/b.mask.png"))  # the mask's event delivered late: the same job
    assert len(made) == 1 and world.record("rooms/b.png")["job_id"] == first["job_id"]


def test_a_mask_replaced_later_runs_the_job_again(world):
    made = calls(world)
    picture, old, new = photo(), mask_file(), mask_file(box=(0, 0, 100, 100))
    world.put("rooms/c.png.mask.png", old)
    world.put("rooms/c.png", picture, INPAINT)
    world.stub.add_response("invoke_model", service_ok(), invoke(BY_NAME["inpaint"].default_model_id,
                                                                 inpaint_body(world, picture, old)))
    world.run(s3_body("rooms/c.png"))
    first = world.record("rooms/c.png")

    new_version = version(world.put("rooms/c.png.mask.png", new))
    world.stub.add_response("invoke_model", service_ok(), invoke(BY_NAME["inpaint"].default_model_id,
                                                                 inpaint_body(world, picture, new)))
    world.run(s3_body("rooms/c.png.mask.png"))

    world.stub.assert_no_pending_responses()
    second = world.record("rooms/c.png")
    assert len(made) == 2 and second["job_id"] != first["job_id"]
    assert second["companions"]["mask"]["version_id"] == new_version
    assert second["companions"]["mask"]["coverage"] != first["companions"]["mask"]["coverage"]


def test_a_companion_upload_never_starts_a_job_of_its_own(world):
    world.pipeline.scheduler = RecordingScheduler()
    made = calls(world)
    world.put("solo/room.png.mask.png", mask_file(), INPAINT)  # a prompt on it changes nothing
    world.put("solo/room.style.png", photo(), {"operation": "style-transfer"})
    world.run(s3_body("solo/room.png.mask.png"), s3_body("solo/room.style.png"))
    assert world.output_keys() == [] and made == [] and world.pipeline.scheduler.deferred == []


# ---- the alpha fallback -------------------------------------------------------------------------------

def test_with_no_mask_after_the_grace_period_the_alpha_channel_is_the_mask(world):
    scheduler = world.pipeline.scheduler = RecordingScheduler()
    picture = with_hole()
    world.put("rooms/hole.png", picture, INPAINT)
    world.run(s3_body("rooms/hole.png"))
    [(check, _)] = scheduler.deferred
    assert world.output_keys() == []

    prepared = prepare(world, picture, "inpaint", alpha=True)
    alpha_mask = masks.mask_from_alpha(prepared)
    world.stub.add_response("invoke_model", service_ok(), invoke(BY_NAME["inpaint"].default_model_id, {
        "image": prepared.base64, "mask": b64(alpha_mask), **INPAINT_REQUEST}))
    world.run(json.dumps(check))

    world.stub.assert_no_pending_responses()
    record = world.record("rooms/hole.png")
    assert record["status"] == "succeeded" and record["trigger"] == "sidecar-wait"
    assert record["companions"] == {"mask": {"from": "alpha", "coverage": pytest.approx(0.25, abs=0.01)}}


def test_mask_alpha_uses_the_alpha_channel_at_once(world):
    world.pipeline.scheduler = RecordingScheduler()
    made = calls(world)
    picture = with_hole()
    world.put("rooms/now.png", picture, {**INPAINT, "mask": "alpha"})
    prepared = prepare(world, picture, "inpaint", alpha=True)
    world.stub.add_response("invoke_model", service_ok(), invoke(BY_NAME["inpaint"].default_model_id, {
        "image": prepared.base64, "mask": b64(masks.mask_from_alpha(prepared)), **INPAINT_REQUEST}))
    world.run(s3_body("rooms/now.png"))
    record = world.record("rooms/now.png")
    assert record["status"] == "succeeded", record.get("error")  # it once failed after paying the call
    assert world.pipeline.scheduler.deferred == [] and len(made) == 1
    assert record["companions"]["mask"]["from"] == "alpha"


def test_no_mask_and_no_alpha_after_the_grace_period_fails_saying_how_to_give_one(world):
    scheduler = world.pipeline.scheduler = RecordingScheduler()
    made = calls(world)
    world.put("rooms/flat.jpg", photo(), {"operation": "erase"})
    world.run(s3_body("rooms/flat.jpg"))
    [(check, _)] = scheduler.deferred
    world.run(json.dumps(check))
    record = world.record("rooms/flat.jpg")
    assert record["status"] == "failed" and record["operation"] == "erase" and made == []
    assert record["error"]["code"] == "invalid_image" and ".mask.png" in record["error"]["message"]


def test_a_missing_style_image_fails_after_the_grace_period(world):
    scheduler = world.pipeline.scheduler = RecordingScheduler()
    world.put("art/p.png", photo(), {"operation": "style-transfer"})
    world.run(s3_body("art/p.png"))
    [(check, _)] = scheduler.deferred
    world.run(json.dumps(check))
    error = world.record("art/p.png")["error"]
    assert error["code"] == "missing_parameters" and "art/p.png.style." in error["message"]
    assert error["errors"][0]["field"] == "style_image"


# ---- explicit mask keys -------------------------------------------------------------------------------

@pytest.mark.parametrize("named,stored_at", [("masks/m.png", "rooms/masks/m.png"), ("/shared/m.png", "shared/m.png"),
                                              ("../shared/m.png", "shared/m.png")])
def test_an_explicit_mask_key_is_relative_to_the_folder_or_absolute(world, named, stored_at):
    picture, mask = photo(), mask_file()
    world.put(stored_at, mask)
    world.put("rooms/d.png", picture, {**INPAINT, "mask": named})
    world.stub.add_response("invoke_model", service_ok(), invoke(BY_NAME["inpaint"].default_model_id,
                                                                 inpaint_body(world, picture, mask)))
    world.run(s3_body("rooms/d.png"))
    record = world.record("rooms/d.png")
    assert record["status"] == "succeeded", record.get("error")
    assert record["companions"]["mask"]["key"] == stored_at


@pytest.mark.parametrize("named", ["s3://other-bucket/m.png", "../../m.png", "https://example.com/m.png"])
def test_a_mask_outside_the_input_bucket_is_refused(world, named):
    made = calls(world)
    world.put("rooms/e.png", photo(), {**INPAINT, "mask": named})
    world.run(s3_body("rooms/e.png"))
    record = world.record("rooms/e.png")
    assert record["status"] == "failed" and made == []
    assert record["error"]["code"] == "invalid_parameters"
    [problem] = record["error"]["errors"]
    assert problem["field"] == "mask" and problem["value"] == named
    assert problem["source"] == "metadata x-amz-meta-mask"


def test_an_explicit_mask_that_never_arrives_fails_naming_it(world):
    scheduler = world.pipeline.scheduler = RecordingScheduler()
    world.put("rooms/f.png", with_hole(), {**INPAINT, "mask": "gone.png"})
    world.run(s3_body("rooms/f.png"))
    [(check, _)] = scheduler.deferred  # named, so no alpha fallback: it waits for that key
    world.run(json.dumps(check))
    error = world.record("rooms/f.png")["error"]
    assert error["code"] == "missing_parameters" and f"s3://{INPUT}/rooms/gone.png" in error["message"]


# ---- SDXL masking -------------------------------------------------------------------------------------

SDXL_MASKING = {"model-id": SDXL, "prompt": "a red door", "cfg-scale": "8", "seed": "4"}


def sdxl_prepare(world, data: bytes, **kw) -> images.PreparedImage:
    from img2img.models.sdxl import SDXLAdapter

    return images.prepare(data, SDXLAdapter().target_size, "crop", world.pipeline.settings.max_input_pixels, **kw)


def test_sdxl_mask_image_white_sends_the_mask_at_the_init_images_size(world):
    picture, mask = photo(), mask_file()
    world.put("doors/a.png.mask.png", mask)
    world.put("doors/a.png", picture, {**SDXL_MASKING, "mask-source": "MASK_IMAGE_WHITE"})
    prepared = sdxl_prepare(world, picture)
    mask_png = masks.prepare_mask(mask, prepared)
    assert Image.open(io.BytesIO(mask_png)).size == (prepared.width, prepared.height)
    body = {"text_prompts": [{"text": "a red door", "weight": 1.0}], "init_image": prepared.base64,
            "mask_source": "MASK_IMAGE_WHITE", "mask_image": b64(mask_png), "cfg_scale": 8.0, "seed": 4}
    world.stub.add_response("invoke_model", sdxl_ok(seed=4), invoke(SDXL, body))
    world.run(s3_body("doors/a.png"))
    world.stub.assert_no_pending_responses()
    record = world.record("doors/a.png")
    assert record["status"] == "succeeded" and record["operation"] == "image-to-image"
    assert record["companions"]["mask"]["key"] == "doors/a.png.mask.png"


def test_sdxl_mask_image_black_keeps_the_users_polarity_and_pads_with_keep(world):
    """MASK_IMAGE_BLACK: black pixels are replaced. The mask goes to SDXL in that polarity: letterbox
    borders (pad) come out white (kept), and an all-black mask (replace everything) is accepted."""
    from PIL import ImageChops

    picture = photo((300, 100))  # 3:1, letterboxed onto SDXL's 1536x640
    world.put("doors/c.png.mask.png", images.png_bytes(Image.new("L", (300, 100), 0)))  # black = replace all
    world.put("doors/c.png", picture, {**SDXL_MASKING, "mask-source": "MASK_IMAGE_BLACK", "fit": "pad"})
    world.stub.add_response("invoke_model", sdxl_ok(seed=4))
    world.run(s3_body("doors/c.png"))
    world.stub.assert_no_pending_responses()
    record = world.record("doors/c.png")
    assert record["status"] == "succeeded", record.get("error")
    sent = masks.prepare_mask(images.png_bytes(Image.new("L", (300, 100), 0)),
                              sdxl_prepare_pad(world, picture), edit_is_white=False)
    mask = Image.open(io.BytesIO(sent))
    x0, y0, x1, y1 = sdxl_prepare_pad(world, picture).content_box
    assert mask.getpixel((0, 0)) == 255 and mask.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == 0
    assert ImageChops.difference(mask.crop((x0, y0, x1, y1)), Image.new("L", (x1 - x0, y1 - y0), 0)).getbbox() is None
    assert 0.1 < record["companions"]["mask"]["coverage"] < 0.9  # the picture, not the borders, is edited


def sdxl_prepare_pad(world, data: bytes) -> images.PreparedImage:
    from img2img.models.sdxl import SDXLAdapter

    return images.prepare(data, SDXLAdapter().target_size, "pad", world.pipeline.settings.max_input_pixels)


def test_sdxl_init_image_alpha_keeps_the_alpha_and_sends_no_mask_image(world):
    picture = with_hole()
    world.put("doors/b.png", picture, {**SDXL_MASKING, "mask-source": "INIT_IMAGE_ALPHA"})
    prepared = sdxl_prepare(world, picture, keep_alpha=True)
    assert Image.open(io.BytesIO(prepared.png)).mode == "RGBA"
    body = {"text_prompts": [{"text": "a red door", "weight": 1.0}], "init_image": prepared.base64,
            "mask_source": "INIT_IMAGE_ALPHA", "cfg_scale": 8.0, "seed": 4}
    world.stub.add_response("invoke_model", sdxl_ok(seed=4), invoke(SDXL, body))
    world.run(s3_body("doors/b.png"))
    world.stub.assert_no_pending_responses()
    record = world.record("doors/b.png")
    assert record["status"] == "succeeded", record.get("error")
    assert "companions" not in record


# ---- size rules ---------------------------------------------------------------------------------------

def test_keep_refuses_a_3_to_1_image_naming_the_rule(world):
    made = calls(world)
    world.put("wide/a.png", photo((600, 200)), {"operation": "remove-background"})
    world.run(s3_body("wide/a.png"))
    record = world.record("wide/a.png")
    assert record["status"] == "failed" and made == []
    error = record["error"]
    assert error["code"] == "invalid_image" and BY_NAME["remove-background"].rule.text in error["message"]
    assert "600x200" in error["message"] and "fit to pad" in error["message"]


def test_fit_pad_accepts_the_3_to_1_image_letterboxed(world):
    picture = photo((600, 200))
    world.put("wide/b.png", picture, {"operation": "remove-background", "fit": "pad"})
    prepared = prepare(world, picture, "remove-background", fit="pad")
    assert prepared.width / prepared.height == pytest.approx(2.5, abs=0.02)
    expect(world, "remove-background", {"image": prepared.base64, "output_format": "png"})
    world.run(s3_body("wide/b.png"))
    world.stub.assert_no_pending_responses()
    record = world.record("wide/b.png")
    assert record["status"] == "succeeded"
    assert record["prepared"] == {"width": prepared.width, "height": prepared.height, "fit": "pad",
                                  "restore_aspect": False}


def test_an_image_with_too_many_pixels_is_downscaled_never_cropped(world):
    picture = images.png_bytes(Image.new("RGB", (4000, 3000), (30, 60, 90)))
    world.put("big/a.png", picture, {"operation": "remove-background"})
    world.stub.add_response("invoke_model", service_ok())
    world.run(s3_body("big/a.png"))
    record = world.record("big/a.png")
    assert record["status"] == "succeeded", record.get("error")
    width, height, fit = (record["prepared"][k] for k in ("width", "height", "fit"))
    assert fit == "keep" and width * height <= BY_NAME["remove-background"].rule.max_pixels
    assert width < 4000 and abs(width * 3 - height * 4) <= 4  # the whole picture, at 4:3


def test_a_request_over_bedrocks_body_limit_is_refused_before_the_call(world, monkeypatch):
    from img2img.core import pipeline as module

    monkeypatch.setattr(module, "MAX_REQUEST_BYTES", 500)
    made = calls(world)
    world.put("big/b.png", photo(), {"operation": "remove-background"})
    world.run(s3_body("big/b.png"))
    record = world.record("big/b.png")
    assert record["status"] == "failed" and made == []
    assert record["error"]["code"] == "invalid_image" and "at most 500" in record["error"]["message"]
