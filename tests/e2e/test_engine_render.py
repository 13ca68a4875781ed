"""The engine's images: deterministic, visibly transformed, sized and encoded the way Bedrock's are."""
import itertools

import pytest
from PIL import Image, ImageFilter, ImageStat

from img2img_local.engine import EngineConfig, EngineServer
from img2img_local.engine.validation import SDXL_SIZES, STYLE_PRESETS
from tests.e2e.engine_fixtures import (
    SD35,
    SDXL,
    b64,
    bedrock_client,
    decode,
    invoke,
    mean_difference,
    sample,
    sd35_body,
    sdxl_body,
)

pytestmark = pytest.mark.e2e

CAT = sample("chelsea.png", (1216, 832))
CAT_B64 = b64(CAT)
ROCKET = sample("rocket.jpg", (640, 427))
ROCKET_B64 = b64(ROCKET, "JPEG")


@pytest.fixture(scope="module")
def client():
    with EngineServer(EngineConfig(), port=0) as server:
        yield bedrock_client(server.url)


def sdxl_image(client, **fields) -> tuple[Image.Image, dict]:
    artifact = invoke(client, SDXL, sdxl_body(CAT_B64, **fields))["artifacts"][0]
    assert artifact["finishReason"] == "SUCCESS"
    return decode(artifact["base64"]), artifact


def sd35_answer(client, **fields) -> dict:
    answer = invoke(client, SD35, sd35_body(ROCKET_B64, **fields))
    assert answer["finish_reasons"] == [None]
    return answer


def test_same_request_and_seed_give_the_same_bytes(client):
    first = invoke(client, SDXL, sdxl_body(CAT_B64, seed=1234, style_preset="anime"))
    second = invoke(client, SDXL, sdxl_body(CAT_B64, seed=1234, style_preset="anime"))
    assert first == second
    assert sd35_answer(client, seed=99) == sd35_answer(client, seed=99)


def test_seed_and_prompt_change_the_image(client):
    base, _ = sdxl_image(client, seed=1)
    other_seed, _ = sdxl_image(client, seed=2)
    other_prompt, _ = sdxl_image(client, seed=1, text_prompts=[{"text": "a cat in a blue ocean at night"}])
    assert base.tobytes() != other_seed.tobytes()
    assert mean_difference(base, other_prompt) > 3


@pytest.mark.parametrize("seed_field", [{"seed": 0}, {}], ids=["seed0", "no-seed"])
def test_random_seed_is_returned_and_reproduces_the_image(client, seed_field):
    body = {k: v for k, v in sdxl_body(CAT_B64, style_preset="pixel-art").items() if k != "seed"}
    first = invoke(client, SDXL, {**body, **seed_field})["artifacts"][0]
    second = invoke(client, SDXL, {**body, **seed_field})["artifacts"][0]
    assert first["seed"] > 0 and second["seed"] > 0 and first["seed"] != second["seed"]
    replay = invoke(client, SDXL, {**body, "seed": first["seed"]})["artifacts"][0]
    assert replay["base64"] == first["base64"]


def test_sd35_random_seed_is_returned(client):
    answer = sd35_answer(client, seed=0)
    assert 0 < answer["seeds"][0] <= 4294967294


def test_every_preset_is_visibly_different_from_the_input_and_from_each_other(client):
    outputs = {preset: sdxl_image(client, style_preset=preset)[0] for preset in STYLE_PRESETS}
    for preset, image in outputs.items():
        assert mean_difference(image, CAT) > 6, preset
    for (a, image_a), (b, image_b) in itertools.combinations(outputs.items(), 2):
        assert mean_difference(image_a, image_b) > 4, (a, b)


def test_presets_have_their_character(client):
    """A few treatments whose look is easy to measure: paper-white line art, dark neon, chunky pixels."""
    def mean_of(image):
        return ImageStat.Stat(image.convert("L")).mean[0]

    mean = mean_of(CAT)

    line_art, _ = sdxl_image(client, style_preset="line-art", image_strength=0.4)
    neon, _ = sdxl_image(client, style_preset="neon-punk", image_strength=0.4)
    assert mean_of(line_art) > mean + 40
    assert mean_of(neon) < mean - 20
    pixel, _ = sdxl_image(client, style_preset="pixel-art", image_strength=0.4)
    smooth, _ = sdxl_image(client, style_preset="photographic", image_strength=0.4)
    # Nearest-neighbour blocks: shifting by one pixel changes far less than on a smooth photo treatment.
    def self_shift(image):
        return mean_difference(image, image.transform(image.size, Image.Transform.AFFINE, (1, 0, 1, 0, 1, 0)))
    assert self_shift(pixel) < self_shift(smooth)


def test_no_preset_gives_a_prompt_driven_colour_grade(client):
    red, _ = sdxl_image(client, text_prompts=[{"text": "a red fire"}])
    blue, _ = sdxl_image(client, text_prompts=[{"text": "a blue ice"}])
    r_red, _, b_red = ImageStat.Stat(red).mean
    r_blue, _, b_blue = ImageStat.Stat(blue).mean
    assert r_red / b_red > r_blue / b_blue


def test_image_strength_controls_how_much_of_the_input_survives(client):
    distances = [mean_difference(sdxl_image(client, image_strength=s, style_preset="comic-book")[0], CAT)
                 for s in (1.0, 0.75, 0.5, 0.25, 0.0)]
    assert distances[0] > 0.5, "image_strength 1 must still be a rendering, not a copy"
    assert distances == sorted(distances) and len(set(distances)) == len(distances), distances


def test_sd35_strength_runs_the_opposite_way(client):
    images = [decode(sd35_answer(client, strength=s)["images"][0]) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    reference = ROCKET.resize(images[0].size)
    distances = [mean_difference(image, reference) for image in images]
    assert distances[0] > 0.5
    assert distances == sorted(distances) and len(set(distances)) == len(distances), distances


@pytest.mark.parametrize("size", [SDXL_SIZES[0], SDXL_SIZES[4], SDXL_SIZES[5]])
def test_sdxl_output_is_a_png_of_the_init_image_size(client, size):
    artifact = invoke(client, SDXL, sdxl_body(b64(sample("coffee.png", size))))["artifacts"][0]
    image = decode(artifact["base64"])
    assert image.format == "PNG" and image.size == size


@pytest.mark.parametrize("source, size", [("rocket.jpg", (640, 427)), ("astronaut.png", (96, 64)),
                                          ("chelsea.png", (600, 1400))])
def test_sd35_output_keeps_aspect_ratio_at_about_one_megapixel(client, source, size):
    answer = invoke(client, SD35, sd35_body(b64(sample(source, size))))
    image = decode(answer["images"][0])
    assert image.width % 64 == 0 and image.height % 64 == 0
    assert 0.85e6 < image.width * image.height < 1.25e6
    assert abs(image.width / image.height - size[0] / size[1]) < 0.06 * size[0] / size[1]


@pytest.mark.parametrize("output_format, pil_format", [(None, "PNG"), ("png", "PNG"), ("jpeg", "JPEG"),
                                                       ("webp", "WEBP")])
def test_sd35_output_format(client, output_format, pil_format):
    fields = {"output_format": output_format} if output_format else {}
    assert decode(sd35_answer(client, **fields)["images"][0]).format == pil_format


def test_sd35_accepts_webp_input(client):
    answer = invoke(client, SD35, sd35_body(b64(sample("coffee.png", (300, 200)), "WEBP")))
    assert decode(answer["images"][0]).size == (1280, 832)


def test_output_is_derived_from_the_input_not_noise(client):
    """A transformed photo still correlates with its source: it is closer to it than to another photo."""
    image, _ = sdxl_image(client, style_preset="cinematic")
    other = sample("astronaut.png", CAT.size)
    assert mean_difference(image, CAT) < mean_difference(image, other)
    detail = mean_difference(image, image.filter(ImageFilter.GaussianBlur(1)))
    assert detail < 20, "per-pixel noise would make the image differ wildly from its own blur"
