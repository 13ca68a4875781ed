"""The two facts a job's S3 savings rest on: one listing beside the image answers "is this sidecar or
companion there?" exactly (or says it cannot tell), and the folder-defaults cache serves one snapshot
per folder for at most its TTL, caching nothing when a read fails."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from img2img.core import keys
from img2img.core.params import FolderDefaultsCache
from img2img.core.pipeline import Listing, _siblings_prefix

NAMES = st.text(alphabet="ab.é/-_0", min_size=1, max_size=8)


def s3_order(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


@given(bucket=st.sets(NAMES, max_size=30), prefix=st.text(alphabet="ab.é", max_size=3),
       probe=NAMES, limit=st.integers(1, 8))
def test_a_listing_cut_off_at_its_limit_never_answers_wrongly(bucket, prefix, probe, limit):
    listed = sorted((k for k in bucket if k.startswith(prefix)), key=s3_order)[:limit]  # what S3 returns
    listing = Listing(prefix, tuple(listed), limit)
    answer = listing.has(prefix + probe)
    if answer is not None:
        assert answer == ((prefix + probe) in bucket)
    under = listing.under(prefix + probe[:1])
    if under is not None:
        assert set(under) == {k for k in bucket if k.startswith(prefix + probe[:1])}


@pytest.mark.parametrize("image_key", ["cat.png", "a/b/cat.jpg", "a/.png", "x/cat.tar.webp"])
def test_every_sidecar_and_companion_key_is_under_the_sibling_prefix(image_key):
    prefix = _siblings_prefix(image_key)
    for name in keys.sidecar_candidates(image_key):
        assert name.startswith(prefix)
    for suffix in ("mask", "style"):
        for p in keys.companion_prefixes(image_key, suffix):
            assert p.startswith(prefix)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_cache_serves_one_snapshot_for_its_ttl_and_forgets_a_changed_file():
    clock, reads = Clock(), []
    store = {("b", "_defaults.json"): (b"{}", "v1")}

    def read(bucket, key):
        reads.append(key)
        return store.get((bucket, key))

    cache = FolderDefaultsCache(30, clock)
    chain = ["_defaults.json", "f/_defaults.json"]
    assert cache.chain("b", chain, read) == (("_defaults.json", b"{}", "v1"),)
    assert len(reads) == 2
    store[("b", "f/_defaults.json")] = (b'{"seed": 1}', "v2")
    clock.now += 29.9
    assert len(cache.chain("b", chain, read)) == 1 and len(reads) == 2  # within the TTL: as read
    clock.now += 0.2
    assert len(cache.chain("b", chain, read)) == 2 and len(reads) == 4  # after it: both levels again
    store[("b", "f/_defaults.json")] = (b'{"seed": 2}', "v3")
    cache.forget("b", "f/_defaults.json")
    assert cache.chain("b", chain, read)[-1][2] == "v3"
    cache.forget("b", "other/_defaults.json")  # not in this chain: kept
    assert len(reads) == 6 and cache.chain("b", chain, read)[-1][2] == "v3" and len(reads) == 6


def test_a_read_that_fails_caches_nothing_and_the_cache_is_bounded():
    clock = Clock()
    cache = FolderDefaultsCache(30, clock)

    def failing(bucket, key):
        raise RuntimeError("transient")

    with pytest.raises(RuntimeError):
        cache.chain("b", ["_defaults.json"], failing)
    assert cache.chain("b", ["_defaults.json"], lambda b, k: (b"{}", "v")) == (("_defaults.json", b"{}", "v"),)
    for i in range(FolderDefaultsCache.MAX_FOLDERS + 5):
        cache.chain("b", [f"{i}/_defaults.json"], lambda b, k: None)
    assert len(cache._chains) == FolderDefaultsCache.MAX_FOLDERS
