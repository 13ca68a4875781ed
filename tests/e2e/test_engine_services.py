"""The engine serves the thirteen Image Services as the operations table describes them: every model id,
Bedrock's 400s for what the table forbids, and treatments that do visibly what each service promises.

Parametrized over img2img.operations.SERVICES, so a service added to the table is covered here too."""
import math

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from img2img.operations import BY_NAME, GENERATED, MASK, SERVICES, Operation
from tests.e2e.engine_fixtures import (  # noqa: F401 (fixtures)
    b64,
    client,
    decode,
    fresh,
    invoke,
    mean_difference,
    sample,
    server,
)

pytestmark = pytest.mark.e2e

SIZE = (128, 96)  # inside every service's image rule
PHOTO = sample("coffee.png", SIZE)
PHOTO_B64 = b64(PHOTO)
STYLE_B64 = b64(sample("rocket.jpg", (96, 96)))
IDS = [op.name for op in SERVICES]


def body(op: Operation, **changes) -> dict:
    """A valid body built from the table: required fields, a positive direction, the images, a seed.
    A change of None drops the key."""
    fields = {f.name: ("a red cup" if f.kind == "text" else f.choices[0] if f.kind == "choice" else f.minimum)
              for f in op.fields if f.required}
    if op.one_of_positive:
        fields[op.one_of_positive[0]] = 16
    fields[op.image_field] = PHOTO_B64
    fields.update({c.body_field: STYLE_B64 for c in op.companions if c.required})
    if op.field("seed"):
        fields["seed"] = 7
    return {k: v for k, v in {**fields, **changes}.items() if v is not None}


def answer_image(client, op: Operation, **changes) -> Image.Image:
    answer = invoke(client, op.default_model_id, body(op, **changes))
    assert set(answer) == {"seeds", "finish_reasons", "images"} and answer["finish_reasons"] == [None]
    return decode(answer["images"][0])


def expected_size(op: Operation, fields: dict, size: tuple[int, int]) -> tuple[int, int]:
    """What a user of each service expects back for an input of `size`."""
    width, height = size
    if op.name == "upscale-fast":
        return width * 4, height * 4
    if op.name.startswith("upscale-"):
        side = min(4, math.sqrt(op.output_pixels / (width * height)))
        return math.floor(width * side), math.floor(height * side)
    if op.name == "outpaint":
        return (width + fields.get("left", 0) + fields.get("right", 0),
                height + fields.get("up", 0) + fields.get("down", 0))
    if op.name == "style-guide":
        assert fields.get("aspect_ratio", "1:1") == "1:1"
        return 1024, 1024  # one megapixel at the default aspect ratio, whatever the input's size
    return size


def rejection(client, op: Operation, fields: dict) -> str:
    with pytest.raises(client.exceptions.ValidationException) as caught:
        invoke(client, op.default_model_id, fields)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return caught.value.response["Error"]["Message"]


# --- model ids ---------------------------------------------------------------------------------------------
def model_ids(op: Operation) -> list[str]:
    return [op.model, op.default_model_id,
            f"arn:aws:bedrock:us-east-2::foundation-model/{op.model}",
            f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{op.default_model_id}"]


@pytest.mark.parametrize("op", SERVICES, ids=IDS)
def test_every_id_of_a_service_reaches_it(server, client, op):
    for model_id in model_ids(op):
        assert invoke(client, model_id, body(op))["finish_reasons"] == [None], model_id
    assert server.stats()["by_model"] == {op.model: {"success": 4}}


def test_services_are_not_offered_through_other_geographies(client):
    op = BY_NAME["inpaint"]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        invoke(client, f"eu.{op.model}", body(op))


# --- valid requests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", SERVICES, ids=IDS)
def test_a_valid_request_answers_an_image_of_the_expected_size_and_mode(client, op):
    image = answer_image(client, op)
    assert image.format == "PNG"
    assert image.size == expected_size(op, body(op), SIZE)
    assert image.mode == ("RGBA" if op.transparent else "RGB")


@pytest.mark.parametrize("op", SERVICES, ids=IDS)
@pytest.mark.parametrize("output_format, pil_format", [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_output_format_is_honoured(client, op, output_format, pil_format):
    assert answer_image(client, op, output_format=output_format).format == pil_format


@pytest.mark.parametrize("op", SERVICES, ids=IDS)
def test_same_seed_same_bytes(client, op):
    first, second = invoke(client, op.model, body(op)), invoke(client, op.model, body(op))
    assert first["images"] == second["images"]
    if op.field("seed"):  # services without a seed field get a random one back, as with seed 0
        assert first == second


@pytest.mark.parametrize("op", [op for op in SERVICES if op.source_type == GENERATED and op.name != "style-transfer"],
                         ids=lambda op: op.name)
def test_another_seed_makes_another_picture(client, op):
    assert mean_difference(answer_image(client, op, seed=1), answer_image(client, op, seed=2)) > 2


@pytest.mark.parametrize("op", [op for op in SERVICES if op.field("seed")], ids=lambda op: op.name)
def test_seed_zero_is_random_and_returned(client, op):
    answer = invoke(client, op.model, body(op, seed=0))
    assert 0 < answer["seeds"][0] <= op.field("seed").maximum


# --- validation ------------------------------------------------------------------------------------------
def required_keys(op: Operation) -> list[str]:
    return [f.name for f in op.fields if f.required] + [op.image_field] + \
        [c.body_field for c in op.companions if c.required]


REQUIRED = [(op, name) for op in SERVICES for name in required_keys(op)]


@pytest.mark.parametrize("op, name", REQUIRED, ids=[f"{op.name}-{name}" for op, name in REQUIRED])
def test_a_missing_required_field_is_refused(client, op, name):
    message = rejection(client, op, body(op, **{name: None}))
    assert f"required key [{name}]" in message


NUMERIC = [(op, f) for op in SERVICES for f in op.fields if f.kind in ("number", "integer")]


@pytest.mark.parametrize("op, spec", NUMERIC, ids=[f"{op.name}-{f.name}" for op, f in NUMERIC])
def test_out_of_range_values_are_refused(client, op, spec):
    step = 1 if spec.kind == "integer" else 0.05
    for value in (spec.minimum - step, spec.maximum + step):
        message = rejection(client, op, body(op, **{spec.name: value}))
        assert f"#/{spec.name}" in message and repr(value) in message


WRONG_TYPE = {"text": 5, "number": "0.5", "integer": 1.5, "choice": 3}
FIELDS = [(op, f) for op in SERVICES for f in op.fields]


@pytest.mark.parametrize("op, spec", FIELDS, ids=[f"{op.name}-{f.name}" for op, f in FIELDS])
def test_a_value_of_the_wrong_type_is_refused(client, op, spec):
    message = rejection(client, op, body(op, **{spec.name: WRONG_TYPE[spec.kind]}))
    assert f"#/{spec.name}" in message and "expected type" in message


TEXTS = [(op, f) for op in SERVICES for f in op.fields if f.kind == "text"]


@pytest.mark.parametrize("op, spec", TEXTS, ids=[f"{op.name}-{f.name}" for op, f in TEXTS])
def test_a_text_over_its_length_is_refused(client, op, spec):
    too_long = int(spec.maximum) + 1
    message = rejection(client, op, body(op, **{spec.name: "x" * too_long}))
    assert f"#/{spec.name}" in message and str(too_long) in message


CHOICES = [(op, f) for op in SERVICES for f in op.fields if f.kind == "choice"]


@pytest.mark.parametrize("op, spec", CHOICES, ids=[f"{op.name}-{f.name}" for op, f in CHOICES])
def test_a_choice_not_in_its_list_is_refused(client, op, spec):
    message = rejection(client, op, body(op, **{spec.name: "watercolour"}))
    assert f"#/{spec.name}" in message and "'watercolour'" in message


@pytest.mark.parametrize("op", SERVICES, ids=IDS)
def test_unknown_fields_are_refused(client, op):
    message = rejection(client, op, body(op, cfg_scale=7))
    assert "extraneous key [cfg_scale]" in message


def test_outpaint_needs_one_direction_above_zero(client):
    op = BY_NAME["outpaint"]
    message = rejection(client, op, body(op, **{name: 0 for name in op.one_of_positive}))
    assert all(name in message for name in op.one_of_positive)


def rule_images(op: Operation) -> list[tuple[str, Image.Image]]:
    """One image per constraint of the service's rule that can be broken alone."""
    rule, broken = op.rule, []
    short = rule.min_side - 1
    broken.append(("min side", Image.new("RGB", (short, max(2 * rule.min_side, -(-rule.min_pixels // short))))))
    if rule.max_side:
        broken.append(("max side", Image.new("RGB", (rule.max_side + 1, rule.max_side // 2))))
    side = math.isqrt(rule.max_pixels) + 1
    if not rule.max_side or side <= rule.max_side:
        broken.append(("max pixels", Image.new("RGB", (side, side))))
    narrow = rule.min_side
    if not rule.max_side or narrow * (rule.max_aspect + 1) <= rule.max_side:
        broken.append(("aspect", Image.new("RGB", (narrow, math.ceil(narrow * (rule.max_aspect + 0.5))))))
    side = math.isqrt(rule.min_pixels - 1)
    if side >= rule.min_side:
        broken.append(("min pixels", Image.new("RGB", (side, side))))
    return broken


RULED = [(op, key, what, image) for op in SERVICES
         for key in (op.image_field, *(c.body_field for c in op.companions if c is not MASK))
         for what, image in rule_images(op)]


@pytest.mark.parametrize("op, key, what, image", RULED, ids=[f"{o.name}-{k}-{w}" for o, k, w, _ in RULED])
def test_an_image_outside_the_rule_is_refused(client, op, key, what, image):
    message = rejection(client, op, body(op, **{key: b64(image)}))
    assert f"#/{key}" in message and f"{image.width}x{image.height}" in message, (what, message)


IMAGE_KEYS = [(op, key) for op in SERVICES for key in (op.image_field, *(c.body_field for c in op.companions))]


@pytest.mark.parametrize("op, key", IMAGE_KEYS, ids=[f"{op.name}-{key}" for op, key in IMAGE_KEYS])
@pytest.mark.parametrize("data, code", [("data:image/png;base64,AAAA", "invalid_mime_type"),
                                        (b64(Image.new("RGB", (128, 96)), "GIF"), "invalid_mime_type"),
                                        (PHOTO_B64[:2000], "invalid_image")], ids=["not-base64", "gif", "truncated"])
def test_images_must_be_base64_png_jpeg_or_webp(client, op, key, data, code):
    message = rejection(client, op, body(op, **{key: data}))
    assert f"#/{key}" in message and code in message


@pytest.mark.parametrize("op", SERVICES, ids=IDS)
def test_jpeg_and_webp_inputs_are_accepted(client, op):
    for fmt in ("JPEG", "WEBP"):
        assert answer_image(client, op, **{op.image_field: b64(PHOTO, fmt)}).size == expected_size(op, body(op), SIZE)


# --- masks ---------------------------------------------------------------------------------------------
MASKED = [op for op in SERVICES if MASK in op.companions]
LEFT, RIGHT = (0, 0, 40, 96), (88, 0, 128, 96)  # well clear of the split at x = 64


def split(left: int, right: int) -> Image.Image:
    mask = Image.new("L", SIZE, right)
    mask.paste(left, (0, 0, 64, 96))
    return mask


def changed(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    return mean_difference(image.crop(box), PHOTO.crop(box))


@pytest.mark.parametrize("op", MASKED, ids=lambda op: op.name)
def test_white_in_the_mask_edits_and_black_keeps(client, op):
    image = answer_image(client, op, mask=b64(split(255, 0)), grow_mask=0)
    assert changed(image, LEFT) > 8
    assert ImageChops.difference(image.crop(RIGHT), PHOTO.crop(RIGHT)).getbbox() is None


@pytest.mark.parametrize("op", MASKED, ids=lambda op: op.name)
def test_grey_in_the_mask_edits_partly(client, op):
    full = changed(answer_image(client, op, mask=b64(split(255, 0)), grow_mask=0), LEFT)
    partial = changed(answer_image(client, op, mask=b64(split(128, 0)), grow_mask=0), LEFT)
    assert 0.2 * full < partial < 0.8 * full


@pytest.mark.parametrize("op", MASKED, ids=lambda op: op.name)
def test_a_mask_of_another_size_is_resized_to_the_image(client, op):
    image = answer_image(client, op, mask=b64(split(255, 0).resize((64, 48))), grow_mask=0)
    assert changed(image, LEFT) > 8 and changed(image, RIGHT) < 0.5


@pytest.mark.parametrize("op", MASKED, ids=lambda op: op.name)
def test_grow_mask_widens_the_edit(client, op):
    near_split = (66, 0, 76, 96)  # just right of the mask's edge
    tight = answer_image(client, op, mask=b64(split(255, 0)), grow_mask=0)
    grown = answer_image(client, op, mask=b64(split(255, 0)), grow_mask=op.field("grow_mask").maximum)
    assert changed(tight, near_split) < 0.5 < changed(grown, near_split)


@pytest.mark.parametrize("op", MASKED, ids=lambda op: op.name)
def test_without_a_mask_the_transparent_pixels_are_edited(client, op):
    cut = PHOTO.copy()
    cut.putalpha(split(0, 255))  # left transparent = edit
    image = answer_image(client, op, **{op.image_field: b64(cut), "grow_mask": 0})
    assert image.mode == "RGB" and image.size == SIZE
    assert changed(image, LEFT) > 8
    assert ImageChops.difference(image.crop(RIGHT), PHOTO.crop(RIGHT)).getbbox() is None


def test_inpaint_fills_in_the_prompts_colour(client):
    op = BY_NAME["inpaint"]
    red = answer_image(client, op, prompt="a red apple", mask=b64(split(255, 0)), grow_mask=0).crop(LEFT)
    blue = answer_image(client, op, prompt="a blue apple", mask=b64(split(255, 0)), grow_mask=0).crop(LEFT)
    r_red, _, b_red = ImageStat.Stat(red).mean
    r_blue, _, b_blue = ImageStat.Stat(blue).mean
    assert r_red > b_red and b_blue > r_blue


def test_erase_fills_from_the_surroundings(client):
    """A dark square on a flat light ground, erased: the hole takes the ground's colour."""
    ground = Image.new("RGB", SIZE, (200, 180, 120))
    ground.paste((20, 20, 20), (44, 28, 84, 68))
    mask = Image.new("L", SIZE, 0)
    mask.paste(255, (40, 24, 88, 72))
    image = answer_image(client, BY_NAME["erase"], image=b64(ground), mask=b64(mask))
    assert mean_difference(image, Image.new("RGB", SIZE, (200, 180, 120))) < 3


# --- the other treatments --------------------------------------------------------------------------------
def on_plain_ground() -> Image.Image:
    ground = Image.new("RGB", (192, 144), (236, 238, 242))
    ground.paste(sample("rocket.jpg", (96, 72)), (48, 36))
    return ground


def test_remove_background_makes_the_ground_transparent_and_keeps_the_subject(client):
    image = answer_image(client, BY_NAME["remove-background"], image=b64(on_plain_ground()))
    alpha = image.getchannel("A")
    for corner in ((2, 2), (189, 2), (2, 141), (189, 141)):
        assert alpha.getpixel(corner) == 0, corner
    assert ImageStat.Stat(alpha.crop((60, 48, 132, 96))).mean[0] > 250
    assert ImageChops.difference(image.convert("RGB").crop((60, 48, 132, 96)),
                                 on_plain_ground().crop((60, 48, 132, 96))).getbbox() is None


def test_remove_background_as_jpeg_loses_the_alpha_to_white(client):
    image = answer_image(client, BY_NAME["remove-background"], image=b64(on_plain_ground()), output_format="jpeg")
    assert image.mode == "RGB" and min(image.getpixel((2, 2))) > 245


def test_fast_upscale_is_exactly_four_times(client):
    image = answer_image(client, BY_NAME["upscale-fast"], image=b64(sample("astronaut.png", (37, 41))))
    assert image.size == (148, 164)


@pytest.mark.parametrize("name", ["upscale-conservative", "upscale-creative"])
def test_upscales_keep_the_picture(client, name):
    image = answer_image(client, BY_NAME[name])
    assert mean_difference(image.resize(SIZE, Image.Resampling.BOX), PHOTO) < 12


def test_outpaint_keeps_the_original_pixels_in_the_middle(client):
    op = BY_NAME["outpaint"]
    image = answer_image(client, op, left=30, right=10, up=20, down=5)
    assert image.size == (SIZE[0] + 40, SIZE[1] + 25)
    assert ImageChops.difference(image.crop((30, 20, 30 + SIZE[0], 20 + SIZE[1])), PHOTO).getbbox() is None
    # The new border continues the edge next to it.
    edge = PHOTO.crop((0, 0, 1, SIZE[1]))
    assert mean_difference(image.crop((25, 20, 26, 20 + SIZE[1])), edge) < 25


@pytest.mark.parametrize("name, key", [("search-recolor", "select_prompt"), ("search-replace", "search_prompt")])
def test_search_changes_the_subject_and_keeps_the_ground(client, name, key):
    image = answer_image(client, BY_NAME[name], image=b64(on_plain_ground()), prompt="green", grow_mask=0,
                         **{key: "rocket"})
    ground = on_plain_ground()
    assert mean_difference(image.crop((60, 48, 132, 96)), ground.crop((60, 48, 132, 96))) > 15
    assert mean_difference(image.crop((0, 0, 30, 30)), ground.crop((0, 0, 30, 30))) < 1
    assert image.size == ground.size


@pytest.mark.parametrize("name", ["control-sketch", "control-structure"])
def test_control_strength_follows_the_input_more(client, name):
    """At strength 1 the output's edges line up with the input's; at 0 the input is ignored."""
    op = BY_NAME[name]
    strong = answer_image(client, op, control_strength=1.0)
    free = answer_image(client, op, control_strength=0.0)
    other = answer_image(client, op, control_strength=0.0, image=b64(sample("chelsea.png", SIZE)))
    assert free.tobytes() == other.tobytes()
    assert mean_difference(strong, free) > 10


def test_style_guide_answers_the_aspect_ratio_in_the_inputs_palette(client):
    op = BY_NAME["style-guide"]
    red = Image.new("RGB", SIZE, (200, 30, 30))
    red.paste((120, 10, 10), (0, 0, 64, 96))
    image = answer_image(client, op, image=b64(red), aspect_ratio="16:9", fidelity=1.0)
    assert image.width > image.height and abs(image.width / image.height - 16 / 9) < 0.1
    assert 0.85e6 < image.width * image.height < 1.25e6
    r, g, b = ImageStat.Stat(image).mean
    assert r > 2 * g and r > 2 * b


def test_style_transfer_moves_the_colours_towards_the_style_image(client):
    op = BY_NAME["style-transfer"]
    blue = Image.new("RGB", (96, 96), (30, 60, 200))
    ImageDraw.Draw(blue).ellipse((20, 20, 70, 70), fill=(10, 20, 120))
    image = answer_image(client, op, style_image=b64(blue))
    before = ImageStat.Stat(PHOTO).mean
    after = ImageStat.Stat(image).mean
    style = ImageStat.Stat(blue).mean
    assert math.dist(after, style) < 0.5 * math.dist(before, style)
    untouched = answer_image(client, op, style_image=b64(blue), style_strength=0)
    assert untouched.tobytes() == PHOTO.tobytes()


# --- fault knobs -----------------------------------------------------------------------------------------
PROMPTED = [op for op in SERVICES if op.field("prompt")]


@pytest.mark.parametrize("op", PROMPTED, ids=lambda op: op.name)
def test_filter_words_filter_a_service_answer(server, client, op):
    server.configure(filter_words=["grenade"])
    answer = invoke(client, op.model, body(op, prompt="a grenade"))
    assert answer["finish_reasons"] == ["Filter reason: output image"] and "images" not in answer
    assert server.stats()["by_model"][op.model] == {"filtered": 1}


def test_blocked_words_are_refused(server, client):
    server.configure(blocked_words=["grenade"])
    op = BY_NAME["inpaint"]
    assert "invalid_prompts" in rejection(client, op, body(op, prompt="a grenade"))


@pytest.mark.parametrize("op", SERVICES, ids=IDS)
def test_forced_faults_apply_to_services(client, op):
    with pytest.raises(client.exceptions.ModelErrorException) as caught:
        invoke(client, op.model, body(op), headers={"x-img2img-fault": "ModelErrorException"})
    assert caught.value.response["resourceName"].endswith(f"foundation-model/{op.model}")


def test_end_of_life_applies_to_services(server, client):
    op = BY_NAME["erase"]
    server.configure(eol_models=[op.model])
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        invoke(client, op.default_model_id, body(op))
