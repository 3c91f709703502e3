"""The offline image pool: Debian openclip-art, Noto colour emoji and user image folders, indexed once.

Every item gets a normalised PNG thumbnail (longest side ``thumb_size``, transparency on white) and a
cleaned caption (from the file name and category, or the emoji's Unicode name, or a user caption).
The index lives in a cache folder (``artifacts/pool`` or ``$CROSSGUARD_CACHE/pool``)::

    pool/index.jsonl          one PoolItem a line
    pool/meta.json            fingerprint of the sources, settings, counts, indexing time
    pool/thumbs/<id>.png      thumbnails
    pool/caption_emb.<key>.npy, pool/image_emb.<key>.npy   embeddings, computed lazily once

``ImagePool.open(...)`` reuses the index while the sources' fingerprint is unchanged, and re-renders only
the items whose source file changed. ``pool.search(query, k)`` ranks items by caption similarity
(MiniLM sentence embeddings, one matrix product); ``pool.image_embeddings()`` gives EfficientNet-Lite0
pooled features for ImpForge's image-text alignment.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from crossguard.fileio import atomic_path, atomic_write_text
from crossguard.paths import pool_cache_dir

from crossguard.runtime.preprocess import ImageLimits, InputError, load_image

EmbedFn = Callable[[list[str]], np.ndarray]
log = logging.getLogger("crossguard.train.image_pool")

OPENCLIPART_DIR = Path("/usr/share/openclipart/png")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_RENDER_SIZE = 109  # the only size NotoColorEmoji's bitmap strikes render at in Pillow
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
INDEX_VERSION = 2  # bump when thumbnails or captions change meaning
# Clip-art beyond this is skipped (some openclipart PNGs decode to >100 M pixels; PNG has no draft mode).
POOL_LIMITS = ImageLimits(max_pixels=30_000_000, max_bytes=25 * 1024 * 1024, max_side=1024)

default_cache_dir = pool_cache_dir


@dataclass
class PoolItem:
    """One pool image. ``path`` is the thumbnail (absolute once loaded); ``origin`` the source file."""

    id: str
    path: str
    source: str  # "openclipart" | "emoji" | "user:<folder name>"
    category: str
    caption: str
    origin: str
    stamp: str  # size+content hash of the source (or codepoint+font stamp): decides re-rendering


# ------------------------------------------------------------------------------------------ captions

JUNK_TOKENS = {
    "openclipart", "clipart", "clip", "art", "remix", "svg", "png", "jpg", "jpeg", "gif", "image", "img",
    "icon", "vector", "vectors", "drawing", "simple", "colour", "color", "colored", "coloured", "version",
    "ver", "v", "new", "old", "final", "copy", "edit", "edited", "by", "of", "the", "a", "an", "and", "or",
    "pd", "public", "domain", "cc", "free", "file", "untitled", "sample", "test", "org", "www", "com",
    "net", "http", "https", "draft", "style", "design", "graphic", "graphics", "illustration", "pic",
    "picture", "photo", "small", "large", "big", "mini", "hd", "hq", "lo", "hi", "bw", "rgb", "cmyk",
    "tango", "glossy", "shiny", "3d", "2d",
}
# Openclipart files often start with the author's user name ("johnny_automatic_...", "Anonymous_...").
AUTHOR_PREFIXES = ("johnny_automatic", "johnny-automatic", "anonymous", "ryanlerch", "papapishu", "gerald_g",
                   "liftarn", "nicubunu", "mystica", "rygle", "jean_victor_balin", "jean victor balin",
                   "machovka", "molumen", "architetto", "cyberscooty", "h0us3s", "j4p4n", "laobc",
                   "lemmling", "pitr", "rejon", "sheikh_tuhin", "sunshine", "valessiobrito", "warszawianka",
                   "yves_guillou", "zeimusu", "dominiquechappard", "firkin", "gnokii", "netalloy",
                   "secretlondon", "studiofibonacci", "thestructorr", "tzunghaor", "unknown", "wasat", "aubanel")


def clean_caption(name: str, category: str | None = None, max_words: int = 8) -> str:
    """A short lowercase caption from a file name or label: camelCase, underscores, dashes and dots split,
    numbers, author prefixes and junk tokens ("openclipart", "remix", "svg", ...) dropped. Falls back to
    the category when nothing is left."""
    stem = re.sub(r"\.(png|jpe?g|svg|gif|webp|bmp|tiff?)$", "", name.strip(), flags=re.IGNORECASE)
    lowered = stem.lower()
    for prefix in AUTHOR_PREFIXES:
        if lowered.startswith(prefix) and len(lowered) > len(prefix) + 2:
            stem = stem[len(prefix):]
            break
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    stem = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", stem)
    words = re.split(r"[^A-Za-z']+", stem)
    out: list[str] = []
    for w in words:
        w = w.strip("'").lower()
        if len(w) < 2 or w in JUNK_TOKENS or (out and out[-1] == w):
            continue
        if len(w) <= 3 and not re.search(r"[aeiouy]", w):  # "bw", "xyz": no vowel, not a word
            continue
        out.append(w)
    caption = " ".join(out[:max_words])
    if not caption and category:
        caption = clean_caption(category, None, max_words)
    return caption


# Unicode names that are not the everyday word for what the emoji shows.
EMOJI_ALIASES = {"hocho": "kitchen knife", "pill": "pill capsule", "pistol": "water pistol",
                 "face with tears of joy": "laughing face", "pile of poo": "poop",
                 "smoking symbol": "cigarette", "no smoking symbol": "no smoking sign",
                 "bomb": "cartoon bomb", "police cars revolving light": "police light"}


def emoji_caption(char: str) -> str | None:
    """The emoji's Unicode name, lowercased (with a few everyday aliases: U+1F52A HOCHO -> kitchen knife)."""
    try:
        name = unicodedata.name(char)
    except ValueError:
        return None
    caption = re.sub(r"\s+", " ", name.lower().replace("-", " ")).strip()
    return EMOJI_ALIASES.get(caption, caption)


# ------------------------------------------------------------------------------------------ sources

def _stamp(path: Path) -> str:
    """Size and content hash of a source file: a copy of the same data (a fresh checkout, a re-extracted archive)
    keeps its thumbnails and embeddings; only changed bytes re-render."""
    data = path.read_bytes()
    return f"{len(data)}:{hashlib.sha1(data).hexdigest()[:16]}"


def _item_id(source: str, key: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", Path(key).stem.lower()).strip("-")[:40] or "item"
    return f"{source.split(':')[0]}-{slug}-{hashlib.sha1(f'{source}|{key}'.encode()).hexdigest()[:8]}"


@dataclass
class _Pending:
    item: PoolItem
    render: Callable[[], Image.Image]


_NAME_WORDS = {"alex", "alejandro", "anthony", "anton", "charles", "dan", "daniel", "dave", "james", "jon",
               "jonathan", "kim", "linda", "matt", "matthew", "michael", "mike", "patricia", "phil", "susan",
               "tom", "park", "moore", "gates", "victor", "jean", "joel", "gerald", "yves", "jakob", "todd",
               "mitchell", "steele", "sergio", "stefan", "celso", "marcelo", "mauro", "luiz", "juliane"}


def _name_tokens(stem: str) -> list[str]:
    return [t for t in re.split(r"[^a-z]+", re.sub(r"_\d+$", "", stem.lower())) if t]


def openclipart_author_tokens(paths: Sequence[Path], root: Path) -> set[str]:
    """Tokens that are authors' names, learnt from the corpus: openclipart file names are
    "<title>_<author>" cut to 24 characters, so an author token recurs at the end of names across
    several categories and (almost) never starts one. English words (the MiniLM vocabulary) are kept
    unless they are common first names."""
    first: dict[str, int] = {}
    trail: dict[str, int] = {}
    cats: dict[str, set] = {}
    for p in paths:
        toks = _name_tokens(p.stem)
        if not toks:
            continue
        first[toks[0]] = first.get(toks[0], 0) + 1
        for t in toks[1:][-3:]:
            trail[t] = trail.get(t, 0) + 1
            cats.setdefault(t, set()).add(p.relative_to(root).parts[0])
    vocab = _english_words()
    return {t for t, c in trail.items() if c >= 3 and first.get(t, 0) <= max(2, c // 10) and len(cats[t]) >= 3
            and len(t) > 2 and (t not in vocab or t in _NAME_WORDS)}


def _english_words() -> set[str]:
    from crossguard.locate import text_model_dir

    d = text_model_dir()
    vocab = d / "vocab.txt" if d else None
    if vocab is None or not vocab.is_file():
        return set()
    return {w for w in vocab.read_text(encoding="utf-8").split() if w.isalpha()}


def strip_author(stem: str, authors: set[str]) -> str:
    """Cut a file-name stem at the first author token (or a truncated prefix of one at the end)."""
    toks = _name_tokens(stem)
    for i, t in enumerate(toks[1:], start=1):
        if t in authors or (i == len(toks) - 1 and len(t) >= 2 and i > 1
                            and any(a.startswith(t) for a in authors) and toks[i - 1] in authors):
            return " ".join(toks[:i])
    return " ".join(toks)


def _openclipart_items(root: Path) -> list[_Pending]:
    paths = sorted(root.rglob("*.png"))
    authors = openclipart_author_tokens(paths, root)
    items = []
    for path in paths:
        rel = path.relative_to(root)
        category = "/".join(rel.parts[:-1]) or "misc"
        caption = clean_caption(strip_author(path.stem, authors), " ".join(category.split("/")[-2:]))
        item = PoolItem(_item_id("openclipart", str(rel)), "", "openclipart", category, caption,
                        str(path), _stamp(path))
        items.append(_Pending(item, lambda p=path: load_image(p, POOL_LIMITS)))
    return items


def emoji_codepoints(font_path: Path = EMOJI_FONT) -> list[int]:
    """Single-codepoint emoji the font has a glyph for (ZWJ sequences and flags are left out)."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(font_path), lazy=True)
    cmap = font.getBestCmap() or {}
    font.close()
    return sorted(cp for cp in cmap if cp >= 0x2000 and cp not in (0x200D, 0xFE0F, 0x20E3)
                  and not 0x1F1E6 <= cp <= 0x1F1FF and not 0xE0000 <= cp <= 0xE007F
                  and not 0x1F3FB <= cp <= 0x1F3FF and emoji_caption(chr(cp)))


def render_emoji(char: str, font_path: Path = EMOJI_FONT) -> Image.Image:
    """One emoji on white, cropped to its glyph. Raises ``InputError`` when the glyph renders empty."""
    font = _emoji_font(str(font_path))
    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((8, 8), char, font=font, embedded_color=True)
    bbox = canvas.getchannel("A").getbbox()
    if bbox is None:
        raise InputError(f"emoji U+{ord(char):04X} renders empty")
    glyph = canvas.crop(bbox)
    out = Image.new("RGB", glyph.size, (255, 255, 255))
    out.paste(glyph, mask=glyph.getchannel("A"))
    return out


_EMOJI_FONTS: dict[str, ImageFont.FreeTypeFont] = {}


def _emoji_font(path: str) -> ImageFont.FreeTypeFont:
    if path not in _EMOJI_FONTS:
        _EMOJI_FONTS[path] = ImageFont.truetype(path, EMOJI_RENDER_SIZE)
    return _EMOJI_FONTS[path]


def _emoji_items(font_path: Path) -> list[_Pending]:
    stamp = _stamp(font_path)
    items = []
    for cp in emoji_codepoints(font_path):
        char = chr(cp)
        caption = emoji_caption(char) or f"emoji {cp:x}"
        item = PoolItem(f"emoji-{cp:05x}", "", "emoji", "emoji", caption, f"{font_path}#U+{cp:04X}", stamp)
        items.append(_Pending(item, lambda c=char: render_emoji(c, font_path)))
    return items


def _user_captions(folder: Path) -> dict[str, str]:
    """Captions from ``captions.json`` (COCO ``{"images": [...], "annotations": [...]}`` or a plain
    ``{file name: caption}`` object) if the folder has one; first caption per image."""
    for name in ("captions.json", "annotations.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid UTF-8 JSON captions file ({e})") from None
        if isinstance(doc, dict) and "images" in doc and "annotations" in doc:
            files = {im["id"]: im["file_name"] for im in doc["images"] if "id" in im and "file_name" in im}
            out: dict[str, str] = {}
            for ann in doc["annotations"]:
                f = files.get(ann.get("image_id"))
                if f and isinstance(ann.get("caption"), str):
                    out.setdefault(f, ann["caption"].strip())
            return out
        if isinstance(doc, dict):
            return {str(k): str(v).strip() for k, v in doc.items() if isinstance(v, str)}
        raise ValueError(f"{path}: captions must be a COCO captions object or {{file name: caption}}")
    return {}


def _user_items(folder: Path) -> list[_Pending]:
    captions = _user_captions(folder)
    source = f"user:{folder.name}"
    items = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        rel = path.relative_to(folder)
        category = "/".join(rel.parts[:-1])  # "" for files at the top of the folder
        caption = captions.get(str(rel)) or captions.get(path.name)
        caption = re.sub(r"\s+", " ", caption.lower()).strip(" .") if caption else clean_caption(path.name, category)
        item = PoolItem(_item_id(source, str(rel)), "", source, category, caption, str(path), _stamp(path))
        items.append(_Pending(item, lambda p=path: load_image(p, POOL_LIMITS)))
    return items


def _fingerprint(pending: Sequence[_Pending], settings: dict) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for p in pending:
        h.update(f"{p.item.id}|{p.item.stamp}|{p.item.caption}\n".encode())
    return h.hexdigest()




def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".tmp.npy") as tmp:
        np.save(tmp, array)


# ------------------------------------------------------------------------------------------ the pool

class ImagePool:
    """An indexed image pool; build or reuse one with ``ImagePool.open``."""

    def __init__(self, cache_dir: Path, items: list[PoolItem], meta: dict, embed: EmbedFn | None = None):
        self.cache_dir = Path(cache_dir)
        self.items = items
        self.meta = meta
        self._embed = embed
        self._caption_emb: np.ndarray | None = None
        self._by_id = {it.id: i for i, it in enumerate(items)}

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, cache_dir: str | os.PathLike | None = None, *,
             openclipart: str | os.PathLike | None = OPENCLIPART_DIR,
             emoji_font: str | os.PathLike | None = EMOJI_FONT,
             user_dirs: Iterable[str | os.PathLike] = (), thumb_size: int = 256,
             embed: EmbedFn | None = None, progress: bool = True, limit: int | None = None) -> ImagePool:
        """Index the sources into ``cache_dir`` (reusing what is there) and return the pool.

        Missing default sources (no openclipart or emoji font installed) are skipped; a user folder that
        does not exist is an error. With no source at all, an index already in ``cache_dir`` (built on another
        machine and copied here with its thumbnails) is used as it is. ``limit`` caps items per source (for
        quick tries). ``meta['work']`` says how many thumbnails this call rendered (0 when the cache was reused).
        """
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        t0 = time.perf_counter()
        pending: list[_Pending] = []
        sources = []
        if openclipart is not None and Path(openclipart).is_dir():
            pending += _openclipart_items(Path(openclipart))[:limit]
            sources.append(f"openclipart:{openclipart}")
        if emoji_font is not None and Path(emoji_font).is_file():
            pending += _emoji_items(Path(emoji_font))[:limit]
            sources.append(f"emoji:{emoji_font}")
        for d in user_dirs:
            d = Path(d)
            if not d.is_dir():
                raise FileNotFoundError(f"image folder not found: {d}")
            pending += _user_items(d)[:limit]
            sources.append(f"user:{d.resolve()}")
        old_meta = _read_json(cache / "meta.json")
        if not pending:
            items = cls._indexed_items(cache)
            if items is None:
                raise ValueError("the image pool has no sources: install openclipart-png / fonts-noto-color-emoji, "
                                 f"pass an image folder, or copy a built pool index with its thumbnails to {cache}")
            log.warning("no image sources on this machine: using the pool index in %s as built (%s)", cache,
                        ", ".join(old_meta.get("settings", {}).get("sources", [])) or "sources unknown")
            return cls(cache, items, dict(old_meta, work=0, open_seconds=round(time.perf_counter() - t0, 3)), embed)
        settings = {"version": INDEX_VERSION, "thumb_size": thumb_size, "sources": sources}
        fingerprint = _fingerprint(pending, settings)
        if old_meta.get("fingerprint") == fingerprint:
            items = cls._indexed_items(cache)
            if items is not None:
                meta = dict(old_meta, work=0, open_seconds=round(time.perf_counter() - t0, 3))
                return cls(cache, items, meta, embed)
        return cls._build(cache, pending, settings, fingerprint, embed, progress, t0)

    @staticmethod
    def _indexed_items(cache: Path) -> list[PoolItem] | None:
        """The items of the index in ``cache`` with absolute thumbnail paths, or None when there is no
        complete index (a missing index file or thumbnail)."""
        index_path = cache / "index.jsonl"
        if not index_path.is_file():
            return None
        items = [PoolItem(**json.loads(line)) for line in index_path.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
        if not items or not all((cache / it.path).is_file() for it in items):
            return None
        for it in items:
            it.path = str(cache / it.path)
        return items

    @classmethod
    def _build(cls, cache: Path, pending: list[_Pending], settings: dict, fingerprint: str,
               embed: EmbedFn | None, progress: bool, t0: float) -> ImagePool:
        thumbs = cache / "thumbs"
        thumbs.mkdir(parents=True, exist_ok=True)
        previous = {}
        index_path = cache / "index.jsonl"
        if index_path.is_file():
            for line in index_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    d = json.loads(line)
                    previous[d["id"]] = d.get("stamp")
        size = settings["thumb_size"]
        items: list[PoolItem] = []
        skipped: list[str] = []
        rendered = 0
        iterator: Iterable[_Pending] = pending
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(pending, desc="index image pool", unit="img", mininterval=2.0)
        for p in iterator:
            it = p.item
            thumb = thumbs / f"{it.id}.png"
            if not (previous.get(it.id) == it.stamp and thumb.is_file()):
                try:
                    img = p.render()
                except (InputError, OSError, ValueError) as e:
                    skipped.append(f"{it.origin}: {e}")
                    continue
                img.thumbnail((size, size), Image.Resampling.LANCZOS)
                tmp = thumb.with_suffix(".tmp.png")
                img.save(tmp, optimize=False, compress_level=3)
                os.replace(tmp, thumb)
                rendered += 1
            it.path = str(thumb.relative_to(cache))
            items.append(it)
        seconds = time.perf_counter() - t0
        counts: dict[str, int] = {}
        for it in items:
            counts[it.source] = counts.get(it.source, 0) + 1
        meta = {"fingerprint": fingerprint, "settings": settings, "counts": counts, "items": len(items),
                "skipped": len(skipped), "skipped_examples": skipped[:20], "index_seconds": round(seconds, 1)}
        atomic_write_text(index_path, "".join(json.dumps(asdict(it), ensure_ascii=False) + "\n" for it in items))
        atomic_write_text(cache / "meta.json", json.dumps(meta, indent=2))
        for it in items:
            it.path = str(cache / it.path)
        return cls(cache, items, dict(meta, work=rendered), embed)

    # -- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> PoolItem:
        return self.items[index]

    def get(self, item_id: str) -> PoolItem:
        return self.items[self._by_id[item_id]]

    def index_of(self, item_id: str) -> int:
        return self._by_id[item_id]

    def image(self, index: int) -> Image.Image:
        """The thumbnail as an RGB image."""
        return load_image(self.items[index].path)

    @property
    def captions(self) -> list[str]:
        return [it.caption for it in self.items]

    @property
    def search_texts(self) -> list[str]:
        """What ``search`` embeds: the caption plus the category's last word ("bored dog (dogs)")."""
        out = []
        for it in self.items:
            leaf = it.category.split("/")[-1].replace("_", " ").replace("-", " ")
            out.append(it.caption if not leaf or leaf in it.caption or leaf in ("emoji", "misc")
                       else f"{it.caption} ({leaf})")
        return out

    def _embedder(self) -> EmbedFn:
        if self._embed is None:
            from crossguard.train.seeds import default_embed
            self._embed = default_embed()
        return self._embed

    def _cached(self, kind: str, key: str | None, content: Sequence[str],
                compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Load or compute+save ``<kind>_emb.<key>.<hash of content>.npy``; older versions are removed."""
        if key is None:
            return compute()
        prefix = f"{kind}_emb.{re.sub(r'[^A-Za-z0-9_-]+', '_', key)}."
        digest = hashlib.sha256("\n".join(content).encode("utf-8")).hexdigest()[:16]
        path = self.cache_dir / f"{prefix}{digest}.npy"
        if path.is_file():
            arr = np.load(path, allow_pickle=False)
            if len(arr) == len(self.items):
                return arr
        arr = compute()
        _atomic_save_npy(path, arr)
        for old in self.cache_dir.glob(f"{prefix}*.npy"):
            if old != path:
                old.unlink(missing_ok=True)
        return arr

    def caption_embeddings(self) -> np.ndarray:
        """[N, D] embeddings of ``search_texts`` (L2-normalised). Cached as .npy when the embedder has a
        ``cache_key``; after a re-index only texts not embedded before are computed."""
        if self._caption_emb is None:
            embed = self._embedder()
            texts = self.search_texts
            self._caption_emb = self._cached("caption", getattr(embed, "cache_key", None), texts,
                                             lambda: self._embed_reusing(embed, texts))
        return self._caption_emb

    def _embed_reusing(self, embed: EmbedFn, texts: list[str]) -> np.ndarray:
        """Embed ``texts``, taking rows from the last saved caption embeddings where the text is unchanged."""
        known: dict[str, np.ndarray] = {}
        key = re.sub(r"[^A-Za-z0-9_-]+", "_", getattr(embed, "cache_key", "") or "")
        texts_file = self.cache_dir / f"caption_emb.{key}.texts.json"
        for npy in self.cache_dir.glob(f"caption_emb.{key}.*.npy"):
            try:
                old_texts = json.loads(texts_file.read_text(encoding="utf-8"))
                old = np.load(npy, allow_pickle=False)
            except (OSError, ValueError):
                continue
            if len(old_texts) == len(old):
                known.update(zip(old_texts, old))
        todo = sorted({t for t in texts if t not in known})
        if todo:
            known.update(zip(todo, np.asarray(embed(todo), dtype=np.float32)))
        if key:
            atomic_write_text(texts_file, json.dumps(texts, ensure_ascii=False))
        return np.stack([known[t] for t in texts]).astype(np.float32)

    def search(self, query: str, k: int = 10, exclude_sources: Sequence[str] = ()) -> list[tuple[PoolItem, float]]:
        """The ``k`` items whose captions are closest to ``query`` (cosine), best first."""
        return self.search_many([query], k, exclude_sources)[0]

    def search_many(self, queries: Sequence[str], k: int = 10,
                    exclude_sources: Sequence[str] = ()) -> list[list[tuple[PoolItem, float]]]:
        if not queries:
            return []
        emb = self.caption_embeddings()
        q = np.asarray(self._embedder()(list(queries)), dtype=np.float32)
        sims = q @ emb.T
        if exclude_sources:
            mask = np.array([it.source in exclude_sources for it in self.items])
            sims[:, mask] = -np.inf
        k = min(k, len(self.items))
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out = []
        for row, idx in zip(sims, top):
            idx = idx[np.argsort(-row[idx])]
            out.append([(self.items[i], float(row[i])) for i in idx if np.isfinite(row[i])])
        return out

    def image_embeddings(self, batch_size: int = 32, progress: bool = True, chunk: int = 512,
                         encode: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
        """[N, 1280] EfficientNet-Lite0 pooled features of the thumbnails, computed once and cached.

        Work is saved every ``chunk`` images (``image_emb.*.partial.npy``), so an interrupted run resumes
        where it stopped. ``encode`` (paths -> [n, D]) replaces the backbone, e.g. in tests.
        """
        content = [f"{it.id}|{it.stamp}" for it in self.items]
        digest = hashlib.sha256("\n".join(content).encode("utf-8")).hexdigest()[:16]
        name = "efficientnet-lite0" if encode is None else getattr(encode, "cache_key", "custom")
        path = self.cache_dir / f"image_emb.{name}.{digest}.npy"
        if path.is_file():
            return np.load(path, allow_pickle=False)
        partial = path.with_name(path.stem + ".partial.npy")
        done = np.load(partial, allow_pickle=False) if partial.is_file() else None
        if encode is None:
            from crossguard.train import backbones  # lazy: torch

            encoder = backbones.image_encoder("efficientnet-lite0")

            def encode(paths: list[str]) -> np.ndarray:
                return backbones.encode_images(encoder, paths, batch_size=batch_size)[1]
        parts = [done] if done is not None else []
        start = 0 if done is None else len(done)
        steps = range(start, len(self.items), chunk)
        if progress:
            from tqdm.auto import tqdm
            steps = tqdm(steps, desc="pool image embeddings", unit=f"x{chunk}")
        for begin in steps:
            parts.append(np.asarray(encode([it.path for it in self.items[begin:begin + chunk]]), dtype=np.float32))
            _atomic_save_npy(partial, np.concatenate(parts))
        result = np.concatenate(parts) if parts else np.zeros((0, 1280), np.float32)
        _atomic_save_npy(path, result)
        partial.unlink(missing_ok=True)
        for old in self.cache_dir.glob(f"image_emb.{name}.*.npy"):
            if old != path:
                old.unlink(missing_ok=True)
        return result


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def main(argv: list[str] | None = None) -> int:
    """``python -m crossguard.train.image_pool [--cache DIR] [--images DIR ...]``: index and summarise."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--images", type=Path, action="append", default=[])
    ap.add_argument("--search", action="append", default=[], help="query to try after indexing")
    args = ap.parse_args(argv)
    pool = ImagePool.open(args.cache, user_dirs=args.images)
    print(json.dumps({k: v for k, v in pool.meta.items() if k != "fingerprint"}, indent=2))
    for q in args.search:
        print(q, "->", [(it.caption, round(s, 3)) for it, s in pool.search(q, 5)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
