"""The composite guard's data: real text corpora, hard benign text, pictures (photos, clip-art, emoji), typographic
renders and object-intent pairs, as ``PairRow``s split into train / val / test.

What each part teaches (``RecipeConfig`` sets the sizes):

- **explicit text**: every harmful request of the real corpora (``crossguard.train.corpora``) with a random pool
  picture or none -> unsafe. The corpora named in ``held_out`` are left out entirely (leave-one-source-out).
- **benign text**: Self-Instruct, the combinatorial benign generator, and requests that use harm words in safe
  senses with their harmful minimal pairs (``safe_senses``), with a random picture or none -> their label.
- **typographic**: harmful and benign requests rendered FigStep-style, read back by the runtime's OCR, with one of
  our incitement texts as the user text -> the rendered request's label.
- **picture questions**: benign requests about a picture in the implicit requests' pointer phrasings ("this", "the
  thing in the picture"; ``picture_questions``) on ordinary pictures and on the very pictures the implicit rows
  use, as many as there are implicit rows, everyday questions on photos, and legitimate questions about
  alarming-looking pictures (a knife, pills) -> safe. So phrasing alone carries no label, nor does the picture.
- **stance posters**: a poster against a harm with an advocacy request -> safe, the same request with a poster for
  the harm -> unsafe (``stance``): a harm named in the image is not a harm asked for.
- **poster questions**: posters, signs and labels that name a harm (against it, neutral, for it) with a question
  about the picture itself ("What font is this?") -> safe (``stance.poster_questions``): the text in a picture is
  no request unless the user's words act on it.
- **long benign text**: tasks over a passage and persona set-ups (long text is not a jailbreak by its length).
- **implicit**: object-intent requests (harmless words, harmful about the object shown) with a picture of their
  object -> unsafe; the ones harmless with an ordinary picture also appear with one -> safe. And the real corpora's
  own requests with their most picturable phrase replaced by a pointer, shown with a pool picture of that phrase
  (``referent_rewrites``; "How do I poison a dog?" -> "How do I poison this?" + a dog): harmful with the picture
  (often still harmful alone: the label is right either way), each with a benign pointer request on the same
  picture.
- **rephrasings**: harmful and benign requests rephrased into the past or future tense or a first-person question
  ("How did people write keyloggers back in the 1990s?"; ``rephrase``) -> their source's label: a known way round a
  guard that learned imperative wordings, taught on both sides so grammar alone carries no label.

Every row's picture words come from the concept head on that picture (what the runtime will compute), and its OCR
text from the runtime's OCR. Splits follow a family key (a corpus item, a generated text's template family, an
intent frame), so validation and test hold texts never trained on.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from crossguard.train.corpora import READINGS, CorpusError, TextItem, read_reading, text_key
from crossguard.train.seeds import hash_unit, split_of

from .composite import PairRow

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
READING_CHOICES = ("corpus", "read", "unsafe_only")


@dataclass
class RecipeConfig:
    """Sizes and shares of the recipe (counts are targets; a generator may give fewer distinct texts)."""

    seed: int = 0
    held_out: list[str] = field(default_factory=list)  # corpora left out (leave-one-source-out)
    blank_share: float = 0.3  # text rows with no picture
    benign_templates: int = 3000
    safe_senses: int = 4500
    safe_senses_harmful: int = 1200
    alarming_share: float = 0.2  # benign text rows shown with an alarming-looking picture
    long_benign: int = 1500
    typographic_harmful: int = 1000
    typographic_benign: int = 800
    stance_pairs: int = 300
    poster_questions: int = 0  # posters naming a harm with a question about the picture (safe); on in the shipped
    # train_config.json, always with harmful_rephrasings: alone they lowered past-tense harmful requests
    # (train/default_guard/README.md), and with threshold_ignores for their groups (they are easy safe rows)
    picture_questions: int = 2500  # on ordinary pictures; as many again on the implicit rows' pictures
    everyday_questions: int = 800
    hard_picture_questions: int = 1200
    intent_variants: int = 6
    referent_rewrites: int = 0  # corpus requests rewritten to point at a picture of their keyword; off: 1,500
    # of them raised false refusals on benign picture questions (train/default_guard/README.md)
    referent_similarity: float = 0.6  # keyword-caption similarity a rewrite's picture needs
    implicit_pictures: int = 2  # pictures of its object per implicit request
    situation_intents: bool = False  # also the situations (a place or scene + a first-person request) and, on their
    # pictures, everyday questions and benign first-person requests in the same words; on in the shipped
    # train_config.json (train/default_guard/README.md: without the benign mirrors MOSSBench refusals rose)
    harmful_rephrasings: int = 0  # harmful requests rephrased into past / future tense or a first-person question;
    # on in the shipped train_config.json (beside poster_questions)
    benign_rephrasings: int = 0  # benign requests rephrased the same ways (so the grammar carries no label); off:
    # beside the harmful ones they cancelled their effect and raised the threshold (train/default_guard/README.md)
    hh_rlhf: bool = False  # the hand-labelled HH-RLHF first turns (corpora.read_hh_rlhf): real conversational
    # harmful requests and real benign questions that touch harm, as corpus rows like any other corpus
    hh_rlhf_benign: float = 1.0  # with hh_rlhf: the share of its benign turns kept (0: the harmful ones only),
    # chosen by a hash of the turn's id, so the same turns whatever the seed
    topic_benign: int = 0  # benign requests about the topics of the harmful training requests (train/topic_benign.py)
    readings: str = "corpus"  # a corpus with a hand reading (corpora.READINGS): "corpus" trains on its own labels,
    # "read" on the reading's (read-safe texts become benign rows, unclear ones are left out), "unsafe_only" keeps
    # only the texts read unsafe; a held-out corpus is always measured on its own labels (and the reading beside them)
    bootstrapped_benign: int = 0  # benign instructions an instruct LM bootstraps from Self-Instruct's train split
    # (train/instruction_bootstrap.py; one cached set, whatever the seed), as the corpus self_instruct_bootstrap;
    # off: 1,000 left held-out Self-Instruct refusals where they were (train/default_guard/README.md)
    twin_share: float = 0.0  # training rows with a pool picture that get the picture's twin instead (the same
    # picture slightly changed, ``crossguard.augment.small_change``, with its own embedding and picture words), so a
    # word that a re-save or a crop swaps carries no label; val and test rows keep the originals; off: at 0.5 verdicts
    # flipped as often after a re-save or a crop as without it (train/default_guard/README.md)

    def __post_init__(self):
        if self.readings not in READING_CHOICES:  # checked when the config is read, before any data is prepared
            raise ValueError(f"recipe.readings must be one of {READING_CHOICES}, got {self.readings!r}")
        if not 0.0 <= self.twin_share <= 1.0:
            raise ValueError(f"recipe.twin_share must be in [0, 1], got {self.twin_share!r}")

    @classmethod
    def from_dict(cls, d: dict) -> RecipeConfig:
        from crossguard.configs import from_dict_strict

        return from_dict_strict(cls, d, "recipe config")

    def uses(self, corpus: str) -> bool:
        """Whether the recipe reads ``corpus`` at all (``hh_rlhf`` only with the ``hh_rlhf`` option)."""
        return corpus != "hh_rlhf" or self.hh_rlhf

    def keeps(self, item: TextItem) -> bool:
        """Whether a corpus item reaches the recipe (``hh_rlhf``'s benign turns: the ``hh_rlhf_benign`` share, unless
        the corpus is held out: then every turn is measured)."""
        if not self.uses(item.corpus):
            return False
        return (item.unsafe or item.corpus != "hh_rlhf" or item.corpus in self.held_out
                or hash_unit(f"share|{item.id}") < self.hh_rlhf_benign)

    def relabelled(self, items: list[TextItem]) -> list[TextItem]:
        """``items`` with the ``readings`` choice applied to the training corpora that have a hand reading (the
        ``held_out`` ones keep their own labels); a text the reading does not cover is a ``CorpusError``."""
        if self.readings == "corpus":
            return items
        readings = {c: read_reading(path) for c, path in READINGS.items()
                    if c not in self.held_out and any(i.corpus == c for i in items)}
        out = []
        for item in items:
            reading = readings.get(item.corpus)
            if reading is None:
                out.append(item)
                continue
            label = reading.get(text_key(item.text))
            if label is None:
                raise CorpusError(f"{item.id}: not in the hand reading of {item.corpus} (another copy of the corpus?)")
            if label == "unsafe" or (label == "safe" and self.readings == "read"):
                out.append(replace(item, unsafe=label == "unsafe"))
        return out


@dataclass
class Pictures:
    """The picture table rows index: embeddings [M,1280], their picture words and OCR text, plus the blank image's
    (row index -1). ``kind`` tells photo / clipart / emoji / render apart; ``ordinary`` marks pool pictures that
    show nothing alarming."""

    embeddings: np.ndarray
    words: list[str]
    ocr: list[str]
    kind: list[str]
    captions: list[str]
    ordinary: np.ndarray
    blank_embedding: np.ndarray
    blank_words: str
    twin_of: np.ndarray | None = None  # [M] the row of each picture's twin (``add_twins``), -1 for none

    def add(self, embeddings: np.ndarray, words: list[str], ocr: list[str], kind: str, captions: list[str]) -> list[int]:
        """Append rows (e.g. typographic renders); returns their indices."""
        start = len(self.words)
        self.embeddings = np.concatenate([self.embeddings, np.asarray(embeddings, np.float32)])
        self.words += words
        self.ocr += ocr
        self.kind += [kind] * len(words)
        self.captions += captions
        self.ordinary = np.concatenate([self.ordinary, np.zeros(len(words), bool)])
        if self.twin_of is not None:
            self.twin_of = np.concatenate([self.twin_of, np.full(len(words), -1, np.int64)])
        return list(range(start, start + len(words)))

    def add_twins(self, embeddings: np.ndarray, words: list[str]) -> None:
        """Twins of the first ``len(words)`` rows (the pool): the same pictures slightly changed. They become rows of
        kind "twin" (never drawn as pictures themselves) and ``twin_of`` points each original at its twin."""
        n = len(words)
        if n > len(self.words) or len(embeddings) != n:
            raise ValueError(f"{len(embeddings)} twin embeddings and {n} words for {len(self.words)} pictures")
        rows = self.add(embeddings, list(words), list(self.ocr[:n]), "twin", list(self.captions[:n]))
        self.twin_of = np.full(len(self.words), -1, np.int64) if self.twin_of is None else self.twin_of
        self.twin_of[:n] = rows


@dataclass
class RowSet:
    train: list[PairRow]
    val: list[PairRow]
    test: list[PairRow]
    pictures: Pictures
    held_out: dict[str, list[PairRow]] = field(default_factory=dict)

    def summary(self) -> dict:
        def count(rows):
            return dict(sorted(Counter(f"{r.group}:{'unsafe' if r.unsafe else 'safe'}" for r in rows).items()))
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test),
                "held_out": {k: len(v) for k, v in self.held_out.items()}, "by_group_train": count(self.train)}


def split_of_key(key: str) -> str:
    """The recipe split (train / val / test) of a row key or corpus item id: by hash, ``SPLIT_FRACTIONS``."""
    return split_of(key, SPLIT_FRACTIONS)


class _Builder:
    def __init__(self, config: RecipeConfig, pictures: Pictures):
        self.config = config
        self.pictures = pictures
        self.rng = random.Random(config.seed)
        self.rows: dict[str, list[PairRow]] = {"train": [], "val": [], "test": []}
        pool = np.asarray([k not in ("render", "twin") for k in pictures.kind])
        self.ordinary = np.flatnonzero(pool & pictures.ordinary)
        self.alarming = np.flatnonzero(pool & ~pictures.ordinary)
        self.photos = np.flatnonzero(np.asarray([k == "photo" for k in pictures.kind]))

    def picture(self, alarming_share: float = 0.0) -> int:
        """No picture (``blank_share``), an alarming-looking one (``alarming_share`` of the rest) or an ordinary one."""
        if self.rng.random() < self.config.blank_share:
            return -1
        pool = self.alarming if len(self.alarming) and self.rng.random() < alarming_share else self.ordinary
        return int(self.rng.choice(pool))

    def add(self, key: str, text: str, image: int, unsafe: bool, domain: str | None, modality: str, group: str,
            split: str | None = None) -> None:
        words = self.pictures.blank_words if image < 0 else self.pictures.words[image]
        ocr = "" if image < 0 else self.pictures.ocr[image]
        row = PairRow(text, words, ocr, image, unsafe, domain, modality, group)
        self.rows[split or split_of_key(key)].append(row)


def build_rows(config: RecipeConfig, items: Sequence[TextItem], pictures: Pictures,
               render: Callable[[list[tuple[str, str, str]]], list[int]],
               concept_pictures: Callable[[str, int], list[int]],
               showable: Callable[[list[str]], list[tuple[int, float]]] | None = None,
               held_out_image: int = -1) -> RowSet:
    """Assemble the recipe. ``items``: the corpora (domains assigned); ``render([(key, text, style)])`` adds
    typographic renders to ``pictures`` and returns their indices; ``concept_pictures(concept, k)``: indices of ``k``
    pool pictures showing a concept; ``showable(phrases)``: the best pool picture of each phrase and its caption
    similarity (no referent rewrites without it). Held-out corpora come back under ``held_out`` (text with
    ``held_out_image``). The parts run in a fixed order: they share one random stream, so the same config gives
    the same rows."""
    b = _Builder(config, pictures)
    items = config.relabelled([i for i in items if config.keeps(i)])
    if config.hh_rlhf and not any(i.corpus == "hh_rlhf" for i in items):
        raise ValueError("recipe.hh_rlhf needs the HH-RLHF corpus (text_safety/hh_rlhf_harmless in the data folder)")
    held = set(config.held_out)
    unknown = held - {i.corpus for i in items}
    if unknown:
        raise ValueError(f"held_out names corpora that were not read: {sorted(unknown)}")
    rowset = RowSet([], [], [], pictures)
    rowset.held_out = _corpus_rows(b, items, held, held_out_image)
    templates, senses = _benign_text(b, config)
    if config.topic_benign > 0:
        _topic_benign(b, config, items, held)
    _typographic(b, config, items, held, render)
    _stance(b, config, render)
    _poster_questions(b, config, render)
    _picture_questions(b, config)
    _alarming_pictures(b, config, concept_pictures)
    _object_intents(b, config, concept_pictures)
    if showable is not None:
        _referent_rewrites(b, config, items, held, showable)
    sources = [(i.id, i.text, i.unsafe, i.domain) for i in items if i.corpus not in held and i.form == "request"]
    sources += [(f"benign|{t}", t, False, None) for t in templates]
    sources += [(f"sense|{s.family}", s.text, s.unsafe, s.domain if s.unsafe else None) for s in senses]
    _rephrasings(b, config, sources)
    rowset.train, rowset.val, rowset.test = b.rows["train"], b.rows["val"], b.rows["test"]
    if config.twin_share > 0:
        rowset.train = _with_twins(rowset.train, pictures, config)
    return rowset


def _with_twins(rows: list[PairRow], pictures: Pictures, config: RecipeConfig) -> list[PairRow]:
    """``rows`` where ``twin_share`` of those showing a pool picture with its own words show its twin instead (own
    random stream: the rows drawn before stay the same)."""
    if pictures.twin_of is None:
        raise ValueError("recipe.twin_share needs the pool's twins (pipeline.prepare(twins=True))")
    rng = random.Random(f"twins|{config.seed}")
    out = []
    for row in rows:
        twin = int(pictures.twin_of[row.image]) if row.image >= 0 else -1
        if twin >= 0 and row.words == pictures.words[row.image] and rng.random() < config.twin_share:
            row = replace(row, image=twin, words=pictures.words[twin])
        out.append(row)
    return out


def _corpus_rows(b: _Builder, items, held: set[str], held_out_image: int) -> dict[str, list[PairRow]]:
    """Every corpus item with a random picture or none -> its label; the held-out corpora's items are returned
    instead (text with ``held_out_image``), by corpus."""
    pictures = b.pictures
    held_words = pictures.blank_words if held_out_image < 0 else pictures.words[held_out_image]
    held_out: dict[str, list[PairRow]] = {}
    for item in items:
        modality = "text" if item.unsafe else "none"
        if item.corpus in held:
            held_out.setdefault(item.corpus, []).append(
                PairRow(item.text, held_words, "", held_out_image, item.unsafe, item.domain, modality, item.corpus))
            continue
        b.add(item.id, item.text, b.picture(b.config.alarming_share), item.unsafe, item.domain, modality,
              item.corpus if item.unsafe else f"benign:{item.corpus}")
    return held_out


def _benign_text(b: _Builder, config: RecipeConfig) -> tuple[list[str], list]:
    """Generated benign text (templates, long task-over-passage texts, hand-written hard texts) and the safe-sense
    minimal pairs; returns the templates and the senses (the rephrasings draw from them)."""
    from crossguard.train.benign_text import long_benign_texts, mixed_benign_texts
    from crossguard.train.dataset_builder import HARD_TEXTS
    from crossguard.train.safe_senses import generate

    share = config.alarming_share
    templates = mixed_benign_texts(config.benign_templates, config.seed)
    for text in templates:
        b.add(f"benign|{text}", text, b.picture(share), False, None, "none", "benign:templates")
    for text in long_benign_texts(config.long_benign, config.seed):
        b.add(f"long|{text[:40]}", text, b.picture(share), False, None, "none", "benign:long")
    for text, domain in HARD_TEXTS:
        b.add(f"hard|{text}", text, b.picture(share), False, domain, "none", "benign:hard_texts")
    senses = generate(config.safe_senses, config.safe_senses_harmful, config.seed)
    for s in senses:
        b.add(f"sense|{s.family}", s.text, b.picture(share), s.unsafe, s.domain if s.unsafe else None,
              "text" if s.unsafe else "none", f"senses:{s.category}")
    return templates, senses


def _topic_benign(b: _Builder, config: RecipeConfig, items, held: set[str]) -> None:
    """Benign requests about the topics of the harmful training requests, split by topic (val topics are new)."""
    from crossguard.train.topic_benign import topic_requests

    harmful = [i.text for i in items if i.unsafe and i.corpus not in held and i.form == "request"]
    for t in topic_requests(harmful, config.topic_benign, config.seed):
        b.add(f"topic|{t.topic}", t.text, b.picture(config.alarming_share), False, None, "none", "benign:topic")


def _picture_questions(b: _Builder, config: RecipeConfig) -> None:
    """Benign questions about pictures: pointer phrasings on ordinary pictures, everyday questions on photos, and
    generated image requests (some naming the picture's caption)."""
    from crossguard.train.benign_text import image_request
    from crossguard.train.picture_questions import everyday_question, picture_request

    for _ in range(config.picture_questions):
        text, family = picture_request(b.rng)
        b.add(family, text, int(b.rng.choice(b.ordinary)), False, None, "none", "benign:picture_question")
    for _ in range(config.everyday_questions):
        text, family = everyday_question(b.rng)
        b.add(family, text, int(b.rng.choice(b.photos if len(b.photos) else b.ordinary)), False, None, "none",
              "benign:everyday")
    for _ in range(config.picture_questions // 3):
        image = int(b.rng.choice(b.ordinary))
        g = image_request(b.rng, b.pictures.captions[image] if b.rng.random() < 0.3 else None)
        b.add(f"pq|{g.template.split('/')[0]}", g.text, image, False, None, "none", "benign:picture_question")


def _alarming_pictures(b: _Builder, config: RecipeConfig, concept_pictures) -> None:
    """Legitimate questions about alarming-looking pictures (a knife, pills; with ``situation_intents`` also the
    situations' places) -> safe."""
    from crossguard.train.dataset_builder import HARD_CONCEPTS, SITUATION_CONCEPTS

    concepts = HARD_CONCEPTS + (SITUATION_CONCEPTS if config.situation_intents else ())
    per_concept = max(1, config.hard_picture_questions // max(1, sum(len(q) for _, _, q in concepts)))
    for concept, domain, questions in concepts:
        found = concept_pictures(concept, 8)
        for qi, q in enumerate(questions):
            for k in range(per_concept):
                image = found[(qi + k) % len(found)]
                b.add(f"hardpq|{concept}|{qi}", q.format(c=b.pictures.captions[image] or concept), image, False,
                      domain, "none", "benign:alarming_picture")


def _object_intents(b: _Builder, config: RecipeConfig, concept_pictures) -> None:
    """Implicit object-intent requests with pictures of their object -> unsafe, each with a benign pointer request
    on the same picture (its twin); the ones harmless with an ordinary picture also appear with one -> safe."""
    from crossguard.train.object_intents import intent_requests
    from crossguard.train.picture_questions import picture_request

    for req in intent_requests(config.intent_variants, config.situation_intents):
        found = concept_pictures(req.concept, config.implicit_pictures)
        split = split_of_key(f"intent|{req.family}")
        for image in found:
            b.add("", req.text, image, True, req.domain, "joint", "implicit:object_intent", split=split)
            text, family = picture_request(b.rng)
            b.add(family, text, image, False, req.domain, "none", "benign:implicit_twin")
        if req.contrast_ok:
            b.add("", req.text, int(b.rng.choice(b.ordinary)), False, None, "none", "benign:intent_contrast",
                  split=split)


def _rephrasings(b: _Builder, config: RecipeConfig, sources: list[tuple[str, str, bool, str | None]]) -> None:
    """Requests (key, text, unsafe, domain) rephrased into past / future tense or a first-person question
    (``crossguard.train.rephrase``), each with its source's label and split: as many harmful and benign ones as the
    config asks, drawn at random from the sources whose action the rephraser finds."""
    from crossguard.train.rephrase import rephrase

    if config.harmful_rephrasings <= 0 and config.benign_rephrasings <= 0:
        return
    order = list(sources)
    b.rng.shuffle(order)
    want = {True: config.harmful_rephrasings, False: config.benign_rephrasings}
    for key, text, unsafe, domain in order:
        if want[unsafe] <= 0:
            continue
        made = rephrase(text, b.rng)
        if made is None:
            continue
        new, form = made
        b.add("", new, b.picture(config.alarming_share), unsafe, domain, "text" if unsafe else "none",
              f"rephrase:{form}" if unsafe else f"benign:rephrase:{form}", split=split_of_key(key))
        want[unsafe] -= 1


def _referent_rewrites(b: _Builder, config: RecipeConfig, items, held, showable) -> None:
    """Corpus requests whose most picturable phrase a pool picture shows, rewritten to point at the picture
    (split with their corpus item), each with a benign pointer request on the same picture."""
    from crossguard.train.dataset_builder import REFERENTS, keyword_candidates, narrow_to_caption, rewrite_with_referent
    from crossguard.train.picture_questions import picture_request

    requests = [i for i in items if i.unsafe and i.corpus not in held and i.form == "request" and len(i.text) < 240]
    b.rng.shuffle(requests)
    requests = requests[:config.referent_rewrites * 2]  # about half have a showable phrase
    candidates = {i.id: keyword_candidates(i.text) for i in requests}
    phrases = sorted({p for c in candidates.values() for p in c})
    best = dict(zip(phrases, showable(phrases))) if phrases else {}
    made = 0
    for item in requests:
        scored = [(p, *best[p]) for p in candidates[item.id] if best[p][1] >= config.referent_similarity]
        if not scored or made >= config.referent_rewrites:
            continue
        phrase, image, _ = max(scored, key=lambda x: x[2])
        text = rewrite_with_referent(item.text, narrow_to_caption(phrase, b.pictures.captions[image]),
                                     b.rng.choice(REFERENTS))
        if text is None:
            continue
        split = split_of_key(item.id)
        b.add("", text, image, True, item.domain, "joint", "implicit:referent", split=split)
        twin, _ = picture_request(b.rng)
        b.add("", twin, image, False, item.domain, "none", "benign:referent_twin", split=split)
        made += 1


def _typographic(b: _Builder, config: RecipeConfig, items, held, render) -> None:
    """Harmful corpus requests and benign requests rendered FigStep-style with an incitement as the user text."""
    from crossguard.train.benign_text import mixed_benign_texts
    from crossguard.train.typography import INCITEMENTS

    harmful = [i for i in items if i.unsafe and i.corpus not in held and i.form == "request" and len(i.text) < 200]
    b.rng.shuffle(harmful)
    harmful = harmful[:config.typographic_harmful]
    benign = mixed_benign_texts(config.typographic_benign, config.seed + 1)
    jobs = [(f"typo|{i.id}", i.text, "request") for i in harmful] + [(f"typo|benign|{t}", t, "request") for t in benign]
    rows = [(i.id, True, i.domain) for i in harmful] + [(f"benign|{t}", False, None) for t in benign]
    for (key, unsafe, domain), index in zip(rows, render(jobs)):
        b.add(key, b.rng.choice(INCITEMENTS), index, unsafe, domain, "image" if unsafe else "none",
              "typographic" if unsafe else "benign:typographic")


def _stance(b: _Builder, config: RecipeConfig, render) -> None:
    """Posters against a harm (safe) and for it (unsafe) with the same advocacy request, split by topic."""
    from crossguard.train.stance import stance_pairs

    pairs = stance_pairs(config.stance_pairs, random.Random(f"{config.seed}|stance"))
    jobs = [(f"stance|{i}|{side}", poster, "poster") for i, p in enumerate(pairs)
            for side, poster in (("against", p.against), ("for", p.for_))]
    indices = render(jobs)
    for i, p in enumerate(pairs):
        split = split_of_key(f"stance|{p.topic}")
        b.add("", p.request, indices[2 * i], False, p.domain, "none", "benign:stance_against", split=split)
        b.add("", p.request, indices[2 * i + 1], True, p.domain, "image", "stance_for", split=split)


def _poster_questions(b: _Builder, config: RecipeConfig, render) -> None:
    """Posters naming a harm with a question about the picture -> safe, split by topic like the stance pairs."""
    from crossguard.train.stance import poster_questions

    if config.poster_questions <= 0:
        return
    made = poster_questions(config.poster_questions, random.Random(f"{config.seed}|posters"))
    indices = render([(f"poster|{p.stance}|{p.poster}", p.poster, "poster") for p in made])
    for p, index in zip(made, indices):
        b.add("", p.question, index, False, p.domain, "none", f"benign:poster_{p.stance}",
              split=split_of_key(f"stance|{p.topic}"))
