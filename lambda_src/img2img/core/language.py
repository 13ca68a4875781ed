"""Is a prompt English? Decided for free (no model call): the scripts its letters are written in, and, for
Latin-script text, a tiny count of other languages' commonest words.

The Stability models are trained on English text; a prompt in another script reaches them intact and
is ignored. Any letters in a non-Latin script make a prompt not English (the translation keeps the
English around them); Latin-script text is English
unless its words are clearly French, German, Spanish, Italian or Portuguese. Digits, punctuation,
emoji and the weight syntax `(word:1.2)` count for nothing either way.
"""
from __future__ import annotations

import re
import unicodedata

ENGLISH = "en"
# Unicode script (by the first word of the character's name) -> the language code reported for it.
SCRIPTS = {
    "CJK": "zh", "HIRAGANA": "ja", "KATAKANA": "ja", "HANGUL": "ko", "ARABIC": "ar", "HEBREW": "he",
    "CYRILLIC": "ru", "GREEK": "el", "THAI": "th", "DEVANAGARI": "hi", "BENGALI": "bn", "TAMIL": "ta",
    "ARMENIAN": "hy", "GEORGIAN": "ka", "ETHIOPIC": "am", "KHMER": "km", "LAO": "lo", "MYANMAR": "my",
    "GUJARATI": "gu", "GURMUKHI": "pa", "TELUGU": "te", "KANNADA": "kn", "MALAYALAM": "ml", "SINHALA": "si",
    "TIBETAN": "bo", "MONGOLIAN": "mn",
}
# Words common in these languages' prompts and (almost) never in English ones.
STOPWORDS = {
    "fr": {"le", "la", "les", "une", "des", "du", "avec", "dans", "sur", "et", "est", "pour", "sous"},
    "de": {"der", "die", "das", "ein", "eine", "mit", "und", "im", "auf", "einem", "einer", "ist", "unter"},
    "es": {"el", "los", "las", "una", "con", "en", "y", "del", "un", "sobre", "bajo", "es", "muy"},
    "it": {"il", "lo", "gli", "uno", "una", "con", "nel", "sul", "della", "di", "e", "sotto", "molto"},
    "pt": {"o", "os", "um", "uma", "com", "em", "no", "na", "do", "da", "e", "sobre", "muito"},
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
# A Latin-script prompt is taken for another language only with this many of its words, and more of them
# than of any other's: "la dolce vita, cinematic" stays English; "un chat avec des lunettes" does not.
MIN_STOPWORDS = 2


def _script(char: str) -> str | None:
    name = unicodedata.name(char, "")
    if not name:
        return None
    first = name.split(" ", 1)[0]
    if first in ("CJK", "IDEOGRAPHIC") or "CJK" in name:
        return "CJK"
    return first if first in SCRIPTS or first == "LATIN" else None


def detect(text: str) -> str:
    """The language of a prompt: `en`, a code from SCRIPTS or STOPWORDS, or `en` for text with no letters."""
    counts: dict[str, int] = {}
    for char in text:
        if char.isalpha():
            script = _script(char)
            if script is not None:
                counts[script] = counts.get(script, 0) + 1
    others = {script: n for script, n in counts.items() if script != "LATIN"}
    if others:  # even one word in another script would be lost on the model: translate (English stays)
        if "HIRAGANA" in others or "KATAKANA" in others:
            return "ja"  # Japanese writes kanji (CJK) beside its kana
        return SCRIPTS[max(others, key=lambda s: others[s])]
    words = [w.lower() for w in _WORD.findall(text)]
    hits = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(hits, key=lambda lang: hits[lang])
    english = sum(w in {"the", "a", "an", "of", "with", "and", "in", "on", "under", "is"} for w in words)
    return best if hits[best] >= MIN_STOPWORDS and hits[best] > english else ENGLISH
