"""Language detection that costs nothing: English never pays for a translation, any other script
always gets one, Latin-script languages by their commonest words."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from img2img.core.language import ENGLISH, detect
from img2img.core.translation import AS_IS, AUTO, Text, needing_translation, texts_of, with_texts

ENGLISH_WORDS = st.sampled_from(["a", "cat", "on", "the", "moon", "cinematic", "(chrome:1.2)", "4k", "with",
                                 "neon", "lights", "portrait", "of", "an", "astronaut", "oil", "painting", ","])


@pytest.mark.parametrize("text, language", [
    ("一艘宇宙飞船", "zh"), ("宇宙船の絵", "ja"), ("고양이 한 마리", "ko"), ("قطة في الفضاء", "ar"),
    ("кот в космосе", "ru"), ("un chat avec des lunettes", "fr"), ("der Hund mit einem Hut", "de"),
    ("un perro con un sombrero", "es"), ("a spaceship", ENGLISH), ("la dolce vita, cinematic", ENGLISH),
    ("café au lait on a table", ENGLISH), ("(cat:1.3), 4k, 8k", ENGLISH), ("", ENGLISH), ("a cat, 可爱", "zh"),
])
def test_examples(text, language):
    assert detect(text) == language


@given(st.lists(ENGLISH_WORDS, min_size=1, max_size=30).map(" ".join))
def test_english_prompts_are_never_sent_for_translation(prompt):
    assert detect(prompt) == ENGLISH
    assert needing_translation([Text("prompt", prompt)], AUTO) == []


@given(st.lists(ENGLISH_WORDS, max_size=10).map(" ".join),
       st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=8),
       st.lists(ENGLISH_WORDS, max_size=10).map(" ".join))
def test_any_chinese_characters_make_a_prompt_worth_translating(before, chinese, after):
    prompt = f"{before} {chinese} {after}"
    assert detect(prompt) == "zh"
    assert needing_translation([Text("prompt", prompt)], AUTO) == [(Text("prompt", prompt), "zh")]
    assert needing_translation([Text("prompt", prompt)], AS_IS) == []


def test_texts_of_every_request_shape_and_back_in_order():
    sdxl = {"text_prompts": [{"text": "一只猫", "weight": 1.0}, {"text": "模糊", "weight": -1.0}], "seed": 1}
    found = texts_of(sdxl)
    assert [t.path for t in found] == ["text_prompts[0].text", "text_prompts[1].text"]
    back = with_texts(sdxl, {"text_prompts[0].text": "a cat", "text_prompts[1].text": "blurry"})
    assert back == {"text_prompts": [{"text": "a cat", "weight": 1.0}, {"text": "blurry", "weight": -1.0}], "seed": 1}
    assert sdxl["text_prompts"][0]["text"] == "一只猫"  # a copy: the job's own request is untouched
    service = {"prompt": "红色", "search_prompt": "猫", "grow_mask": 5, "output_format": "png"}
    assert list(with_texts(service, {"search_prompt": "the cat"})) == list(service)  # field order kept


def test_an_explicit_language_translates_every_text_the_job_wrote():
    texts = [Text("prompt", "un chat"), Text("negative_prompt", "flou"), Text("search_prompt", " ")]
    assert needing_translation(texts, AUTO) == []  # too short to tell: auto leaves them
    assert needing_translation(texts, "fr") == [(texts[0], "fr"), (texts[1], "fr")]
