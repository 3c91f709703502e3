"""Image pool: caption cleaning, indexing a temporary folder (+ emoji), cache reuse, search."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossguard.train.image_pool import (
    EMOJI_FONT, OPENCLIPART_DIR, ImagePool, clean_caption, emoji_caption, render_emoji, strip_author)
from crossguard.train.seeds import hashing_embed


@pytest.mark.parametrize("name,category,expected", [
    ("redApple_remix_openclipart_01.png", None, "red apple"),
    ("fire-extinguisher_svg.png", None, "fire extinguisher"),
    ("Old_Kitchen-Knife2.PNG", None, "kitchen knife"),
    ("HTMLParserIcon.png", None, "html parser"),
    ("12345_bw.png", "animals", "animals"),
    ("the dog & the cat", None, "dog cat"),
])
def test_clean_caption(name, category, expected):
    assert clean_caption(name, category) == expected


def test_strip_author_and_emoji_caption():
    assert strip_author("cigno_architetto_frances_01", {"architetto"}) == "cigno"
    assert strip_author("bored_dog_01", {"architetto"}) == "bored dog"
    assert strip_author("red_apple_architetto_fr", {"architetto", "francesco"}) == "red apple"
    assert emoji_caption("\U0001F52A") == "kitchen knife"  # Unicode: HOCHO
    assert emoji_caption("\U0001F480") == "skull"


def _make_images(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 30), (0, 0, 0)]
    names = ["red_apple.png", "green_tree.png", "blue_car.jpg", "yellow_sun.png", "black_cat.png"][:n]
    for name, colour in zip(names, colours):
        img = Image.new("RGBA" if name.endswith(".png") else "RGB", (600, 300), colour)
        img.save(folder / name)
    return names


def test_index_tmp_folder_cache_reuse_and_search(tmp_path):
    images = tmp_path / "imgs"
    _make_images(images)
    (images / "sub").mkdir()
    Image.new("RGB", (64, 64), "white").save(images / "sub" / "plain.png")
    (images / "broken.png").write_bytes(b"not a png")
    (images / "captions.json").write_text(json.dumps({"yellow_sun.png": "A bright yellow sun."}))
    cache = tmp_path / "cache"
    pool = ImagePool.open(cache, openclipart=None, emoji_font=None, user_dirs=[images], thumb_size=128,
                          embed=hashing_embed, progress=False)
    assert len(pool) == 5 and pool.meta["skipped"] == 1 and pool.meta["work"] == 5
    caps = {it.caption for it in pool.items}
    assert {"red apple", "green tree", "blue car", "a bright yellow sun", "plain"} == caps
    for it in pool.items:
        thumb = Image.open(it.path)
        assert max(thumb.size) == (64 if it.caption == "plain" else 128)  # never upscaled
        assert thumb.mode == "RGB" and it.source == "user:imgs"
    assert pool.get(pool.items[0].id) is pool.items[0]
    sub = next(it for it in pool.items if it.caption == "plain")
    assert sub.category == "sub"

    index_mtime = os.stat(cache / "index.jsonl").st_mtime_ns
    again = ImagePool.open(cache, openclipart=None, emoji_font=None, user_dirs=[images], thumb_size=128,
                           embed=hashing_embed, progress=False)
    assert again.meta["work"] == 0 and os.stat(cache / "index.jsonl").st_mtime_ns == index_mtime
    assert [it.id for it in again.items] == [it.id for it in pool.items]

    # the same bytes with another modification time (a copy of the data) render nothing again
    os.utime(images / "red_apple.png", (2, 2))
    copied = ImagePool.open(cache, openclipart=None, emoji_font=None, user_dirs=[images], thumb_size=128,
                            embed=hashing_embed, progress=False)
    assert copied.meta["work"] == 0

    # one changed source re-renders only that item
    Image.new("RGB", (300, 300), (10, 10, 10)).save(images / "green_tree.png")
    os.utime(images / "green_tree.png", (1, 1))
    third = ImagePool.open(cache, openclipart=None, emoji_font=None, user_dirs=[images], thumb_size=128,
                           embed=hashing_embed, progress=False)
    assert third.meta["work"] == 1

    (item, score), *_ = third.search("a red apple on the table", k=3)
    assert item.caption == "red apple" and score > 0.3
    results = third.search_many(["blue car", "sun"], k=2)
    assert [r[0][0].caption for r in results] == ["blue car", "a bright yellow sun"]
    emb = third.caption_embeddings()
    assert emb.shape == (5, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_caption_embeddings_cached_on_disk_with_cache_key(tmp_path):
    images = tmp_path / "imgs"
    _make_images(images, 3)
    calls = []

    def embed(texts):
        calls.append(len(texts))
        return hashing_embed(texts)
    embed.cache_key = "hash-test"
    pool = ImagePool.open(tmp_path / "c", openclipart=None, emoji_font=None, user_dirs=[images],
                          embed=embed, progress=False)
    pool.caption_embeddings()
    assert len(list((tmp_path / "c").glob("caption_emb.hash-test.*.npy"))) == 1
    again = ImagePool.open(tmp_path / "c", openclipart=None, emoji_font=None, user_dirs=[images],
                           embed=embed, progress=False)
    again.caption_embeddings()
    assert calls == [3]


def test_a_copied_index_opens_without_its_sources(tmp_path, caplog):
    """A pool built on one machine and copied (index + thumbnails) to one without the sources: used as built."""
    images = tmp_path / "imgs"
    _make_images(images, 3)
    built = ImagePool.open(tmp_path / "here", openclipart=None, emoji_font=None, user_dirs=[images],
                           embed=hashing_embed, progress=False)
    shutil.copytree(tmp_path / "here", tmp_path / "there")
    shutil.rmtree(images)
    shutil.rmtree(tmp_path / "here")
    moved = ImagePool.open(tmp_path / "there", openclipart=None, emoji_font=None, embed=hashing_embed,
                           progress=False)
    assert [(it.id, it.caption) for it in moved.items] == [(it.id, it.caption) for it in built.items]
    assert all(Path(it.path).is_file() and Path(it.path).parent == tmp_path / "there" / "thumbs" for it in moved.items)
    assert moved.meta["work"] == 0 and "no image sources" in caplog.text
    (tmp_path / "there" / "thumbs" / Path(moved.items[0].path).name).unlink()
    with pytest.raises(ValueError, match="no sources"):  # an incomplete copy is no pool
        ImagePool.open(tmp_path / "there", openclipart=None, emoji_font=None)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImagePool.open(tmp_path / "c", openclipart=None, emoji_font=None, user_dirs=[tmp_path / "nope"])
    with pytest.raises(ValueError, match="no sources"):
        ImagePool.open(tmp_path / "c", openclipart=None, emoji_font=None)


@pytest.mark.skipif(not EMOJI_FONT.is_file(), reason="Noto colour emoji font not installed")
def test_emoji_rendering_and_index(tmp_path):
    img = render_emoji("\U0001F52A")
    assert img.mode == "RGB" and min(img.size) > 50
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 10  # colour glyph, not blank
    pool = ImagePool.open(tmp_path / "c", openclipart=None, user_dirs=[], limit=5, progress=False,
                          embed=hashing_embed)
    assert len(pool) == 5 and all(it.source == "emoji" and it.caption for it in pool.items)


@pytest.mark.skipif(not OPENCLIPART_DIR.is_dir(), reason="openclipart-png not installed")
def test_real_openclipart_sample(tmp_path):
    pool = ImagePool.open(tmp_path / "c", emoji_font=None, limit=20, progress=False, embed=hashing_embed)
    assert len(pool) == 20 and all(it.source == "openclipart" for it in pool.items)
    assert sum(bool(it.caption) for it in pool.items) >= 18


def test_caption_embeddings_reuse_rows_after_reindex(tmp_path):
    images = tmp_path / "imgs"
    _make_images(images, 3)
    seen = []

    def embed(texts):
        seen.append(list(texts))
        return hashing_embed(texts)
    embed.cache_key = "hash-test"
    ImagePool.open(tmp_path / "c", openclipart=None, emoji_font=None, user_dirs=[images],
                   embed=embed, progress=False).caption_embeddings()
    Image.new("RGB", (50, 50)).save(images / "purple_grapes.png")
    pool = ImagePool.open(tmp_path / "c", openclipart=None, emoji_font=None, user_dirs=[images],
                          embed=embed, progress=False)
    emb = pool.caption_embeddings()
    assert seen[-1] == ["purple grapes"] and emb.shape[0] == 4
    assert np.allclose(emb, hashing_embed(pool.search_texts))


def test_image_embeddings_cached_and_resumable(tmp_path):
    images = tmp_path / "imgs"
    _make_images(images, 5)
    pool = ImagePool.open(tmp_path / "c", openclipart=None, emoji_font=None, user_dirs=[images],
                          embed=hashing_embed, progress=False)
    seen = []

    def encode(paths):
        seen.append(len(paths))
        if len(seen) == 2:
            raise KeyboardInterrupt  # interrupted after the first chunk
        return np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32).mean((0, 1)) for p in paths])
    encode.cache_key = "mean-rgb"
    with pytest.raises(KeyboardInterrupt):
        pool.image_embeddings(chunk=2, encode=encode, progress=False)
    emb = pool.image_embeddings(chunk=2, encode=encode, progress=False)  # resumes at item 2
    assert seen == [2, 2, 2, 1] and emb.shape == (5, 3)
    assert np.allclose(emb[0], np.asarray(Image.open(pool[0].path).convert("RGB"), np.float32).mean((0, 1)))
    assert (pool.image_embeddings(encode=encode, progress=False) == emb).all() and len(seen) == 4
    assert not list((tmp_path / "c").glob("*.partial.npy"))
