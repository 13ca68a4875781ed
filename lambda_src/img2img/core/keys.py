"""Which keys are images, sidecars and folder defaults, and how they find each other."""
from __future__ import annotations

import posixpath

from ..operations import COMPANIONS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif")
SIDECAR_SUFFIX = ".json"
DEFAULTS_NAME = "_defaults.json"


def is_image(key: str) -> bool:
    return key.lower().endswith(IMAGE_SUFFIXES)


def is_json(key: str) -> bool:
    return key.lower().endswith(SIDECAR_SUFFIX)


def is_folder_defaults(key: str) -> bool:
    return posixpath.basename(key) == DEFAULTS_NAME


def sidecar_candidates(image_key: str) -> list[str]:
    """`cat.jpg.json` first (exact), then `cat.json`."""
    stem, ext = posixpath.splitext(image_key)
    candidates = [image_key + SIDECAR_SUFFIX]
    if ext and posixpath.basename(stem):
        candidates.append(stem + SIDECAR_SUFFIX)
    return candidates


def image_for_exact_sidecar(sidecar_key: str) -> str | None:
    """`cat.jpg.json` names exactly one image, `cat.jpg`; `cat.json` does not."""
    image_key = sidecar_key[: -len(SIDECAR_SUFFIX)]
    return image_key if is_image(image_key) else None


def stem_of_sidecar(sidecar_key: str) -> str:
    return sidecar_key[: -len(SIDECAR_SUFFIX)]


def companion_suffixes() -> tuple[str, ...]:
    """`.mask.`, `.style.`: the infixes that make an image key a companion of another image."""
    return tuple(f".{c.suffix}." for c in COMPANIONS)


def companion_prefixes(image_key: str, suffix: str) -> list[str]:
    """Where a companion of `image_key` is looked for, in order: `room.jpg.mask.` then `room.mask.`
    (any image extension follows)."""
    stem, ext = posixpath.splitext(image_key)
    prefixes = [f"{image_key}.{suffix}."]
    if ext and posixpath.basename(stem):
        prefixes.append(f"{stem}.{suffix}.")
    return prefixes


def is_companion(key: str) -> bool:
    """`room.jpg.mask.png` or `room.mask.png`: a mask or style image, which never starts a job itself."""
    if not is_image(key):
        return False
    name = posixpath.basename(key)
    stem = name[: name.rfind(".")]
    return any(stem.lower().endswith(infix[:-1]) and len(stem) > len(infix) - 1 for infix in companion_suffixes())


def owner_prefix(companion_key: str) -> tuple[str, str]:
    """(`room.jpg` or `room`, companion suffix) of a companion key: what it belongs to."""
    stem = companion_key[: companion_key.rfind(".")]
    for infix in companion_suffixes():
        if stem.lower().endswith(infix[:-1]):
            return stem[: len(stem) - len(infix) + 1], infix.strip(".")
    raise ValueError(f"{companion_key!r} is not a companion key")


def companion_key(image_key: str, named: str) -> str:
    """The input-bucket key a job's `mask` / `style_image` names: relative to the image's folder, or
    `/absolute` from the bucket root. ValueError (saying why) for another bucket or a path outside it."""
    text = named.strip()
    if "://" in text:
        raise ValueError("must be a key in the input bucket (relative to the image's folder, or /absolute), "
                         "not a URL: companions are never read from another bucket")
    path = text[1:] if text.startswith("/") else posixpath.join(posixpath.dirname(image_key), text)
    key = posixpath.normpath(path) if path else ""
    if not key or key == "." or key.startswith("../") or key == "..":
        raise ValueError("points outside the input bucket")
    if not is_image(key):
        raise ValueError(f"must name an image ({', '.join(IMAGE_SUFFIXES)})")
    return key


def defaults_chain(image_key: str) -> list[str]:
    """`_defaults.json` keys from the bucket root down to the image's own folder (nearest last)."""
    folders = image_key.split("/")[:-1]
    return ["/".join(folders[:depth] + [DEFAULTS_NAME]) for depth in range(len(folders) + 1)]


# ---- bulk jobs ----------------------------------------------------------------------------------------
# A bulk job may name objects of several buckets (docs/bulk.md). Its rows from the deployment's input
# bucket keep the key scheme every job has (`<prefix><key>`); a row from another source bucket goes under
# `<prefix>_buckets/<bucket>/<key>`, so that the same key in two buckets gives two outputs and two records.
BULK_BUCKETS_DIR = "_buckets/"


def bulk_source_dir(bucket: str, input_bucket: str) -> str:
    """The folder, under a bulk job's output prefix, of its rows from `bucket` ("" for the input bucket)."""
    return "" if bucket == input_bucket else f"{BULK_BUCKETS_DIR}{bucket}/"
