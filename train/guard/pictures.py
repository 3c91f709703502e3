"""Pictures for the composite guard's recipe: the pool with its embeddings and picture words, the blank image, and
typographic renders read back by the runtime's OCR (cached on disk, so a rerun renders nothing twice)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from crossguard.fileio import atomic_path
from crossguard.runtime.compose import Composition, picture_words
from crossguard.runtime.preprocess import blank_image

from .recipe import Pictures

ImageEncodeFn = Callable[[list], np.ndarray]  # images (paths or PIL) -> [n, 1280] embeddings


def pool_kind(source: str) -> str:
    return "photo" if source.startswith("user:") else ("emoji" if source == "emoji" else "clipart")


def words_of(embeddings: np.ndarray, concepts, composition: Composition) -> list[str]:
    """Picture words of embeddings through a ``(head, vocabulary)`` concept model."""
    from .concepts import concept_probs

    head, vocabulary = concepts
    return picture_words(concept_probs(head, embeddings), vocabulary, composition)


def pool_pictures(pool, embeddings: np.ndarray, concepts, composition: Composition, encode: ImageEncodeFn,
                  alarming: set[int]) -> Pictures:
    """The picture table of a pool: every item's embedding, picture words and caption; ``alarming`` item indices
    are not ``ordinary``."""
    blank = np.asarray(encode([blank_image()]), np.float32)[0]
    words = words_of(embeddings, concepts, composition)
    ordinary = np.ones(len(pool.items), bool)
    ordinary[sorted(alarming)] = False
    return Pictures(np.asarray(embeddings, np.float32), words, [""] * len(words),
                    [pool_kind(it.source) for it in pool.items], [it.caption for it in pool.items], ordinary,
                    blank, words_of(blank[None], concepts, composition)[0])


def twin_encoder(encode: ImageEncodeFn) -> Callable[[list], np.ndarray]:
    """paths -> embeddings of the pictures slightly changed (``crossguard.augment.small_change``, keyed by the file
    name, so a rerun makes the same twins); ``cache_key`` names its embeddings in the pool's cache."""
    from crossguard.augment import small_change
    from crossguard.runtime.preprocess import load_image

    def encode_twins(paths: list) -> np.ndarray:
        return encode([small_change(load_image(p), Path(p).name) for p in paths])

    encode_twins.cache_key = "efficientnet-lite0-twins"  # type: ignore[attr-defined]
    return encode_twins


RENDER_STYLES = ("request", "poster")


def render_job(key: str, text: str, style: str):
    """One typographic image: ``request`` FigStep-like (``typography.render_request_image``), ``poster`` the text
    as it is on a sign, poster, note or paragraph layout."""
    import random

    from crossguard.train.typography import render_request_image, render_typographic

    if style == "request":
        return render_request_image(text, key)[0]
    if style == "poster":
        rng = random.Random(f"poster|{key}")
        return render_typographic(text, seed=key, layout=rng.choice(("sign", "poster", "handwritten", "paragraph")),
                                  size=rng.choice((448, 512, 640)))[0]
    raise ValueError(f"unknown render style {style!r}; styles: {RENDER_STYLES}")


class RenderCache:
    """Typographic renders of (key, text, style) jobs: image embedding and OCR text, computed once and kept in
    ``folder`` (``renders.json`` + ``renders.npy``, rewritten atomically after each batch)."""

    def __init__(self, folder: str | Path, encode: ImageEncodeFn, ocr: Callable, batch: int = 64):
        self.folder = Path(folder)
        self.encode, self.ocr, self.batch = encode, ocr, batch
        self.index: dict[str, int] = {}
        self.ocr_texts: list[str] = []
        self.embeddings = np.zeros((0, 1280), np.float32)
        meta, arr = self.folder / "renders.json", self.folder / "renders.npy"
        if meta.is_file() and arr.is_file():
            doc = json.loads(meta.read_text(encoding="utf-8"))
            emb = np.load(arr, allow_pickle=False)
            if len(doc["keys"]) == len(emb):
                self.index = {k: i for i, k in enumerate(doc["keys"])}
                self.ocr_texts, self.embeddings = doc["ocr"], emb

    @staticmethod
    def job_id(key: str, text: str, style: str = "request") -> str:
        extra = "" if style == "request" else f"\n{style}"  # request renders keep their first ids
        return hashlib.sha1(f"{key}\n{text}{extra}".encode("utf-8")).hexdigest()

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.index, key=self.index.get)
        with atomic_path(self.folder / "renders.npy", suffix=".npy") as tmp:
            np.save(tmp, self.embeddings)
        with atomic_path(self.folder / "renders.json") as tmp:
            tmp.write_text(json.dumps({"keys": keys, "ocr": self.ocr_texts}), encoding="utf-8")

    def get(self, jobs: Sequence[tuple[str, str, str]], progress: bool = True) -> tuple[np.ndarray, list[str]]:
        """(embeddings [n,1280], OCR texts) of the jobs' renders, rendering only the ones not cached."""
        todo = list(dict.fromkeys(j for j in jobs if self.job_id(*j) not in self.index))
        steps = range(0, len(todo), self.batch)
        if progress and todo:
            from tqdm.auto import tqdm
            steps = tqdm(steps, desc="typographic renders", unit=f"x{self.batch}")
        for start in steps:
            part = todo[start:start + self.batch]
            images = [render_job(*job) for job in part]
            emb = np.asarray(self.encode(images), np.float32)
            texts = [" ".join(self.ocr(img).text.split()) for img in images]
            for job, t in zip(part, texts):
                self.index[self.job_id(*job)] = len(self.ocr_texts)
                self.ocr_texts.append(t)
            self.embeddings = np.concatenate([self.embeddings, emb])
            self._save()
        rows = [self.index[self.job_id(*job)] for job in jobs]
        return self.embeddings[rows], [self.ocr_texts[r] for r in rows]


def renderer(pictures: Pictures, cache: RenderCache, concepts, composition: Composition,
             progress: bool = True) -> Callable[[list[tuple[str, str]]], list[int]]:
    """The ``render`` callable ``recipe.build_rows`` takes: renders (key, text, style) jobs into ``pictures``."""
    def render(jobs: list[tuple[str, str, str]]) -> list[int]:
        emb, ocr = cache.get(jobs, progress)
        return pictures.add(emb, words_of(emb, concepts, composition), ocr, "render", [""] * len(jobs))
    return render


def concept_finder(pool, pictures: Pictures) -> Callable[[str, int], list[int]]:
    """``concept_pictures(concept, k)``: the ``k`` pool items whose captions are closest to the concept."""
    cache: dict[str, list[int]] = {}

    def find(concept: str, k: int) -> list[int]:
        if concept not in cache:
            cache[concept] = [pool.index_of(it.id) for it, _ in pool.search(concept, 12)]
        return cache[concept][:k]
    return find


def phrase_finder(pool, embed) -> Callable[[list[str]], list[tuple[int, float]]]:
    """``showable(phrases)``: for each phrase the pool item whose caption is closest (MiniLM cosine) and that
    similarity."""
    def find(phrases: list[str]) -> list[tuple[int, float]]:
        q = np.asarray(embed(list(phrases)), np.float32)
        sims = q @ pool.caption_embeddings().T
        top = sims.argmax(1)
        return [(int(i), float(sims[r, i])) for r, i in enumerate(top)]
    return find
