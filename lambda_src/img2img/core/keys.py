"""Which keys are images, sidecars and folder defaults, and how they find each other."""
from __future__ import annotations

import posixpath

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


def defaults_chain(image_key: str) -> list[str]:
    """`_defaults.json` keys from the bucket root down to the image's own folder (nearest last)."""
    folders = image_key.split("/")[:-1]
    return ["/".join(folders[:depth] + [DEFAULTS_NAME]) for depth in range(len(folders) + 1)]
