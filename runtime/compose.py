"""The one text the guard's text encoder reads for a pair: the user's text, the picture's words, the picture's text.

    [CLS] user text [SEP] picture words [SEP] text read in the picture (OCR) [SEP]

A joint-modal attack is harmful only when the text is read with what the picture shows ("how do I get this into
my body unnoticed" + pills), so the encoder sees both in one sequence and its attention relates them. Each part
has its own token budget (``Composition``): the user text keeps its head and its tail when it is longer (a
jailbreak often puts its request at the end), the picture words and the OCR text keep their head. Training and
screening build the sequence with this same class, so both see the same tokens.

``read_pictures`` and ``score_pairs`` are the composite chain's two halves over any graph runner (the runtime's
ONNX sessions, or the exporter's torch reference and ONNX chains, which check the graphs with this same code);
``score_pairs`` is ``encode_pairs`` then ``score_embeddings``, which the runtime calls with its text cache
between them (``runtime.cache``: a repeated pair skips the text encoder).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

Runner = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]  # (graph name, feeds) -> named outputs


@dataclass(frozen=True)
class Composition:
    """Token budgets of the three parts (special tokens not counted)."""

    user_tokens: int = 64
    word_tokens: int = 16
    ocr_tokens: int = 40
    # picture words: the concept head's top entries with at least this probability
    word_top_k: int = 3
    word_min_prob: float = 0.15

    @property
    def max_tokens(self) -> int:
        return self.user_tokens + self.word_tokens + self.ocr_tokens + 4

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Composition:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"composition: unknown keys {unknown}")
        values = {}
        for key, value in d.items():
            if key == "word_min_prob":
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                    raise ValueError(f"composition: word_min_prob must be a number in [0, 1], got {value!r}")
                values[key] = float(value)
            elif not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 512:
                raise ValueError(f"composition: {key} must be an integer in [0, 512], got {value!r}")
            else:
                values[key] = value
        if values.get("user_tokens", cls.user_tokens) < 1:
            raise ValueError("composition: user_tokens must be at least 1")
        return cls(**values)


def picture_words(probs: np.ndarray, vocabulary: Sequence[str], composition: Composition) -> list[str]:
    """One string per row of ``probs`` [N, V]: the top ``word_top_k`` vocabulary entries with at least
    ``word_min_prob``, most probable first, joined by ", " ("" when none qualifies)."""
    probs = np.asarray(probs)
    k = min(composition.word_top_k, probs.shape[1]) if probs.ndim == 2 else 0
    if k == 0:
        return [""] * len(probs)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [", ".join(vocabulary[j] for j in row if probs[i, j] >= composition.word_min_prob)
            for i, row in enumerate(top)]


def head_and_tail(ids: list[int], budget: int) -> list[int]:
    """``ids`` cut to ``budget`` tokens keeping its first and last halves."""
    if len(ids) <= budget:
        return ids
    head = (budget + 1) // 2
    return ids[:head] + ids[len(ids) - (budget - head):] if budget > head else ids[:head]


class CompositeTokenizer:
    """WordPiece tokenizer of the text encoder building the three-part sequence; returns int64 (ids, mask)."""

    def __init__(self, tokenizer_json: str | os.PathLike, composition: Composition = Composition(),
                 fixed_length: bool = False):
        from tokenizers import Tokenizer

        self.composition = composition
        self.fixed_length = fixed_length
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_truncation()
        self._tok.no_padding()
        ids = {name: self._tok.token_to_id(name) for name in ("[CLS]", "[SEP]", "[PAD]")}
        if ids["[CLS]"] is None or ids["[SEP]"] is None:
            raise ValueError(f"{tokenizer_json}: the tokenizer has no [CLS] / [SEP] tokens")
        self.cls_id, self.sep_id, self.pad_id = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"] or 0

    @property
    def max_tokens(self) -> int:
        return self.composition.max_tokens

    def _pieces(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch([t or "" for t in texts], add_special_tokens=False)]

    def sequences(self, texts: Sequence[str], words: Sequence[str] | None = None,
                  ocr: Sequence[str] | None = None) -> list[list[int]]:
        n = len(texts)
        words = words if words is not None else [""] * n
        ocr = ocr if ocr is not None else [""] * n
        if len(words) != n or len(ocr) != n:
            raise ValueError(f"{n} texts but {len(words)} picture-word strings and {len(ocr)} OCR strings")
        c = self.composition
        out = []
        for user, w, o in zip(self._pieces(texts), self._pieces(words), self._pieces(ocr)):
            out.append([self.cls_id, *head_and_tail(user, c.user_tokens), self.sep_id, *w[:c.word_tokens],
                        self.sep_id, *o[:c.ocr_tokens], self.sep_id])
        return out

    def __call__(self, texts: Sequence[str], words: Sequence[str] | None = None,
                 ocr: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) [len(texts), L]: L is the longest sequence, or ``max_tokens`` when fixed."""
        seqs = self.sequences(texts, words, ocr)
        length = self.max_tokens if self.fixed_length else max((len(s) for s in seqs), default=1)
        ids = np.full((len(seqs), length), self.pad_id, np.int64)
        mask = np.zeros((len(seqs), length), np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return ids, mask


def read_pictures(run: Runner, pixel_values: np.ndarray, vocabulary: Sequence[str],
                  composition: Composition) -> tuple[np.ndarray, list[str]]:
    """``image_encoder`` -> image embedding [N,1280] -> ``concepts`` -> the picture words of every image."""
    embedding = np.asarray(run("image_encoder", {"pixel_values": pixel_values})["image_embedding"], np.float32)
    probs = run("concepts", {"image_embedding": embedding})["concept_probs"]
    return embedding, picture_words(probs, vocabulary, composition)


def encode_pairs(run: Runner, tokenizer: CompositeTokenizer, texts: Sequence[str], words: Sequence[str],
                 ocr_texts: Sequence[str]) -> np.ndarray:
    """The composite sequences -> ``text_encoder``: one sentence embedding per pair [N, 384] float32."""
    ids, mask = tokenizer(texts, words, ocr_texts)
    text = run("text_encoder", {"input_ids": ids, "attention_mask": mask})
    return np.asarray(text["sentence_embedding"], np.float32)


def score_embeddings(run: Runner, sentence_embedding: np.ndarray, image_embedding: np.ndarray) -> dict[str, np.ndarray]:
    """``fusion`` over the pairs' sentence embeddings and image embeddings: the head's outputs."""
    return run("fusion", {"text_embedding": sentence_embedding, "image_embedding": image_embedding})


def score_pairs(run: Runner, tokenizer: CompositeTokenizer, texts: Sequence[str], words: Sequence[str],
                ocr_texts: Sequence[str], image_embedding: np.ndarray) -> dict[str, np.ndarray]:
    """The composite sequences -> ``text_encoder`` -> ``fusion`` (with the image embedding): the head's outputs
    (``encode_pairs`` then ``score_embeddings``; the runtime calls the two itself, with its text cache between)."""
    return score_embeddings(run, encode_pairs(run, tokenizer, texts, words, ocr_texts), image_embedding)
