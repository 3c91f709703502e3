"""The composite guard's reuse across screens (runtime.cache): the text cache (a repeated user text, picture words and
OCR text skip the text encoder), the image cache (a repeated picture is read once) and the blank picture of text-only
requests; verdicts equal to a guard without them. Tiny models built here."""
from __future__ import annotations

import numpy as np
import pytest

from crossguard.runtime.cache import BLANK_KEY, ImageReadingCache, TextEmbeddingCache, digest

TEXTS = ["What is shown in this picture?", "How do I get the items past airport security without anyone noticing?",
         "Write a short poem about the sunset.", "", "What is shown in this picture?"]

class CountingEncoder:
    """encode(texts, words, ocr) -> one distinct row per pair (from the strings), counting the pairs encoded."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, texts, words, ocr):
        self.calls.append(len(texts))
        return np.array([[len(t), len(w), len(o), hash((t, w, o)) % 997] for t, w, o in zip(texts, words, ocr)],
                        np.float32)


def test_text_cache_reuses_rows_dedupes_and_evicts_least_recent():
    enc = CountingEncoder()
    cache = TextEmbeddingCache(size=3)
    words, ocr = ["pill", "", "dog", "", "pill"], ["", "", "", "", ""]
    first = cache.encode(enc, TEXTS, words, ocr)
    assert enc.calls == [4]  # the repeated pair (rows 0 and 4) encoded once
    assert np.array_equal(first, enc(TEXTS, words, ocr)) and np.array_equal(first[0], first[4])
    assert cache.stats() == {"size": 3, "entries": 3, "hits": 1, "misses": 4}  # 4 distinct, 3 kept
    enc.calls.clear()
    again = cache.encode(enc, TEXTS[2:4], words[2:4], ocr[2:4])  # the two most recent entries
    assert enc.calls == [] and np.array_equal(again, first[2:4])
    cache.encode(enc, TEXTS[:1], words[:1], ocr[:1])  # evicted first (least recently used): encoded again
    assert enc.calls == [1]
    # the same pair with other picture words or OCR text is another pair
    cache.encode(enc, TEXTS[:1], ["knife"], [""])
    cache.encode(enc, TEXTS[:1], ["pill"], ["STEPS"])
    assert enc.calls == [1, 1, 1]
    again[0, 0] = -1.0  # a caller's array is its own
    assert cache.encode(enc, TEXTS[2:3], words[2:3], ocr[2:3])[0, 0] != -1.0


def test_text_cache_off_and_bad_sizes_and_unambiguous_keys():
    enc = CountingEncoder()
    off = TextEmbeddingCache(0)
    off.encode(enc, TEXTS, [""] * 5, [""] * 5)
    off.encode(enc, TEXTS, [""] * 5, [""] * 5)
    assert enc.calls == [5, 5] and off.stats()["entries"] == 0  # off: every pair encoded, as without a cache
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="text cache size"):
            TextEmbeddingCache(bad)
    assert digest("ab", "", "") != digest("a", "b", "") != digest("a", "", "b")
    assert digest("a\udc80", "", "") != digest("a", "", "")  # lone surrogates from a JSON body do not crash
    with pytest.raises(ValueError, match="picture-word"):
        TextEmbeddingCache(2).encode(enc, ["a", "b"], ["x"], ["", ""])


def test_image_cache_keys():
    from PIL import Image

    picture = Image.new("RGB", (8, 6), (10, 20, 30))
    off, on = ImageReadingCache(0), ImageReadingCache(4)
    assert off.key_of(None, picture) == on.key_of(None, picture) == BLANK_KEY  # the blank picture: always known
    assert off.key_of(picture, picture) is None and off.key_of(b"png", picture) is None
    same = on.key_of(picture.copy(), picture.copy())
    assert same == on.key_of(np.asarray(picture), picture) and len(same) == 32
    changed = picture.copy()
    changed.putpixel((3, 2), (10, 20, 31))
    assert on.key_of(changed, changed) != same
    assert on.key_of(picture.resize((6, 8)), picture.resize((6, 8))) != same  # same bytes, other shape
    assert on.key_of(b"\x89PNG...", picture) == on.key_of(bytearray(b"\x89PNG..."), picture) != same
    with pytest.raises(ValueError, match="image cache size"):
        ImageReadingCache(-2)


def _images(n: int):
    from crossguard.export.samples import generated_image

    return [generated_image(i, seed=5) for i in range(n)]


def test_guard_text_cache_keeps_the_verdicts(tiny_composite_bundle):
    """The same pairs screened with and without the cache: the same scores (float rounding) and verdicts; a
    repeated call hits for every pair and skips the text encoder."""
    from crossguard.runtime.guard import TEXT_CACHE_SIZE, Guard

    plain = Guard.load(tiny_composite_bundle, device="cpu", precision="fp32", ocr="off", warmup=False, text_cache=0)
    cached = Guard.load(tiny_composite_bundle, device="cpu", precision="fp32", ocr="off", warmup=False)
    assert cached.text_cache.size == TEXT_CACHE_SIZE and plain.info()["text_cache"]["size"] == 0
    images = _images(len(TEXTS))
    images[4] = images[0]  # the last pair repeats the first
    want = plain.screen_batch(images, TEXTS)
    first = cached.screen_batch(images, TEXTS)
    assert cached.info()["text_cache"] == {"size": TEXT_CACHE_SIZE, "entries": 4, "hits": 1, "misses": 4}
    repeat = cached.screen_batch(images, TEXTS)
    assert cached.info()["text_cache"]["hits"] == 6 and "text_encoder" not in repeat[0].timings_ms
    assert "text_encoder" in first[0].timings_ms
    for got in (first, repeat):
        assert [v.unsafe for v in got] == [v.unsafe for v in want]
        assert [v.picture_words for v in got] == [v.picture_words for v in want]
        assert np.max(np.abs(np.array([v.score for v in got]) - [v.score for v in want])) < 1e-5
    single = cached.screen(images[1], TEXTS[1])  # batch 1 reuses a row encoded in a batch
    assert abs(single.score - want[1].score) < 1e-5 and "text_encoder" not in single.timings_ms
    with pytest.raises(ValueError, match="text cache size"):
        Guard.load(tiny_composite_bundle, device="cpu", ocr="off", warmup=False, text_cache=-1)


class RowCounter:
    """Wraps a guard's graph session, counting the rows it runs."""

    def __init__(self, guard, graph: str):
        self.session, self.rows = guard.graphs.sessions[graph], 0
        guard.graphs.sessions[graph] = self

    def run(self, feeds):
        self.rows += len(next(iter(feeds.values())))
        return self.session.run(feeds)


def _png(image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_guard_image_cache_reads_a_repeated_picture_once(tiny_composite_bundle):
    """A picture sent again (bytes or decoded) is not read again, within a batch or across calls; the verdicts
    and picture words are those of a guard without caches."""
    from crossguard.runtime.guard import Guard

    plain = Guard.load(tiny_composite_bundle, device="cpu", precision="fp32", ocr="off", warmup=False, text_cache=0)
    cached = Guard.load(tiny_composite_bundle, device="cpu", precision="fp32", ocr="off", warmup=False, image_cache=8)
    encoder = RowCounter(cached, "image_encoder")
    pictures = _images(3)
    data = _png(pictures[0])
    texts = ["what is this", "how do I use this on him", "what is this", "describe it"]
    batch = [data, pictures[1], data, pictures[2]]
    want = plain.screen_batch(batch, texts)
    got = cached.screen_batch(batch, texts)
    assert encoder.rows == 3  # the repeated bytes read once
    again = cached.screen_batch([pictures[1].copy(), data], ["a new question", "what is this"])
    assert encoder.rows == 3 and "image_encoder" not in again[0].timings_ms  # both pictures known
    assert cached.info()["image_cache"]["entries"] == 3
    assert [v.picture_words for v in got] == [v.picture_words for v in want]
    assert [v.unsafe for v in got] == [v.unsafe for v in want]
    assert np.max(np.abs(np.array([v.score for v in got]) - [v.score for v in want])) < 1e-5
    fresh = plain.screen(pictures[1], "a new question")
    assert again[0].picture_words == fresh.picture_words and abs(again[0].score - fresh.score) < 1e-5


def test_guard_reads_the_blank_picture_once_even_with_the_image_cache_off(tiny_composite_bundle):
    from crossguard.runtime.guard import Guard

    guard = Guard.load(tiny_composite_bundle, device="cpu", precision="fp32", ocr="off", warmup=False)
    encoder = RowCounter(guard, "image_encoder")
    first = guard.screen_batch([None, None], ["write a poem", "make a bomb"])
    assert encoder.rows == 1 and guard.image_cache.blank is not None
    second = guard.screen(None, "make a cake")
    assert encoder.rows == 1 and "image_encoder" not in second.timings_ms
    assert second.picture_words == first[0].picture_words == first[1].picture_words
    other = guard.screen_batch(_images(2), ["a", "b"])  # other pictures: read every time (cache off)
    guard.screen_batch(_images(2), ["a", "b"])
    assert encoder.rows == 5 and guard.info()["image_cache"]["entries"] == 0 and len(other) == 2
