"""Stage 1a: visualizable keywords of a harmful query, without an NER model.

Candidates are n-grams (up to ``max_ngram``) inside runs of words that are neither stopwords nor verbs
nor abstract nouns (a POS-free chunker over word lists). Each candidate is scored by

    score = w_vocab * vocab + w_concrete * concrete
    vocab    = 0.5 * lexical + 0.5 * max_c cos(e(g), e(c))   (can the pool show it at all?)
               lexical = weighted fraction of the candidate's words whose stem occurs in a vocabulary of
               showable things (emoji names, clip-art categories; weight 1.5 on the last, head word);
               c ranges over the pool captions
    concrete = clip(4 * (max_p cos(e(g), e(p)) - max_a cos(e(g), e(a))), -1, 1)
               with p / a a few concrete / abstract prototype phrases

and the top ``max_keywords`` non-overlapping candidates are kept: the first when it scores at least
``min_score``, further ones only at ``second_min_score`` (second keywords are the usual mistakes).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .config import KeywordConfig
from .embedding import CachedEmbedder
from .rewards import stem, words

STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from into onto about above below over under
between through during before after up down out off again further once here there when where why how what
which who whom whose this that these those am is are was were be been being have has had having do does did
doing i me my mine myself we us our ours you your yours he him his she her hers it its they them their theirs
can could should would will shall may might must not no nor only own same so than too very just also any all
some such each every both few more most other another much many lot lots someone somebody anyone anybody
everyone something anything everything nothing one ones please tell explain give show let lets i'm i'd i've
you're it's there's what's don't can't without within via per like as s t ever even still yet really
""".split())

VERBS = frozenset("""
make makes made making get gets got getting use uses used using take takes took taking go goes went going
know knows knew want wants wanted need needs needed find finds found help helps helped create creates created
write writes wrote written build builds built buy buys bought sell sells sold steal steals stole stolen kill
kills killed hurt hurts harm harms harmed hide hides hid hidden avoid avoids avoided obtain obtains obtained
describe describes described provide provides provided convince convinced persuade trick tricked cheat cheated
hack hacked hacking spread spreading commit committed start started keep kept bypass bypassed smuggle smuggled
manipulate manipulated evade evaded fake faked forge forged poison poisoned attack attacked threaten threatened
think say said call called look looks see seen try tried become became cause caused prove proved avoid
teach taught learn learned learnt access accessed produce produced grow grown distribute distributed
blackmail blackmailed exploit exploited harass harassed bully bullied scam scammed launder laundered
recruit recruited promote promoted encourage encouraged justify justified insult insulted mock mocked
mistreat mistreated pirate pirated download downloaded replicate replicated counterfeit counterfeited embezzle
launder evade capture captured train trained poach poached disable disabled hunt hunted set open opened
remove removed copy copied stream streamed assist assisted sabotage sabotaged break broke broken spy spied
track tracked stalk stalked lie lied deceive deceived torture tortured abuse abused neglect neglected
exploit exploits invade invaded destroy destroyed burn burned burnt shoot shot stab stabbed beat beaten
kidnap kidnapped traffic trafficked inject injected sniff snort smoke smoked cook cooked mix mixed
generate generated spread post posted share shared leak leaked reveal revealed publish published
done gain gains dump dumps
""".split())

ADJECTIVES = frozenset("""
illegal illegally legal fake wild exotic protected endangered copyrighted undetected secret secretly
dangerous harmful violent sexual explicit offensive racist sexist best worst easy easiest quick quickest
cheap cheapest effective new old young personal private public certain specific different other own
black white good bad big small free certain various common whole entire real false true untraceable
healthy digital electronic non economic environmental older useful backwards standing sexist female male
modern anonymous social sexual romantic graphic former upcoming detailed negative positive political
mental physical human racial ethnic religious certain local foreign national international online
""".split())

# words that look like nouns by suffix but are not adjectives / verbs (kept as candidate heads)
NOUN_EXCEPTIONS = frozenset("""
building clothing painting ring king wing string ceiling sling swing pudding earring wedding bedding
stuffing bed seed weed sled shed explosive explosives detective chemical chemicals vegetable table cable
handful
""".split())

_ADJ_SUFFIXES = ("ous", "ful", "ical", "less", "ive", "ible", "able")

ABSTRACT = frozenset("""
place places world system systems media data security message messages business figures target targets
content materials material access account accounts measures tutorial manner means approach group groups
month months week weeks health copyright protections instances
way ways method methods step steps tip tips advice guide guidance detail details example examples reason
reasons idea ideas type types kind kinds effect effects history past future time times information info
people person persons individual individuals thing things stuff case cases fact facts problem problems issue
issues opinion opinions view views question questions answer answers story stories process plan plans
strategy strategies technique techniques consequence consequences experience experiences situation
relationship behaviour behavior practice practices activity activities reason purpose result results
difference differences part parts level levels amount number percent rate chance chances risk risks
someone's others other's early late years year decade decades day days century centuries
""".split())

CONCRETE_PROTOTYPES = ("a photo of a physical object", "a thing you can see and touch", "a tool", "a weapon",
                       "a building", "an animal", "a vehicle", "a bottle of pills", "food", "a computer",
                       "money and coins", "a document", "a plant", "a place outdoors", "a machine")
ABSTRACT_PROTOTYPES = ("an abstract idea", "a feeling or emotion", "a concept", "an action or activity",
                       "information and knowledge", "a social group or ideology", "a legal or moral issue",
                       "a method", "a quality", "a crime", "an opinion", "a relationship")


@dataclass(frozen=True)
class Keyword:
    phrase: str
    score: float
    vocab: float
    concrete: float


def _verb_form(w: str) -> bool:
    """-ing / -ed forms (posing, worshipped) break a noun phrase, except known nouns (building, bed)."""
    return w not in NOUN_EXCEPTIONS and ((w.endswith("ing") and len(w) > 5) or (w.endswith("ed") and len(w) > 4))


def _adjective(w: str) -> bool:
    return w in ADJECTIVES or (w not in NOUN_EXCEPTIONS and w.endswith(_ADJ_SUFFIXES))


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


def proper_nouns(text: str) -> set[str]:
    """Lower-cased words written capitalised or in capitals anywhere but a sentence start: names of people,
    firms, places ("Kenya", "IBM"), which an image pool cannot show."""
    names, sentence_start = set(), True
    for m in re.finditer(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?|[.!?]", text):
        tok = m.group(0)
        if tok in ".!?":
            sentence_start = True
            continue
        if not sentence_start and tok[0].isupper() and tok.lower() not in STOPWORDS:
            names.add(tok.lower().replace("'s", ""))
        sentence_start = False
    return names


def candidates(text: str, max_ngram: int = 3) -> list[str]:
    """N-grams inside runs of content words (no stopword, verb, abstract noun, number or proper noun)."""
    runs, current = [], []
    names = proper_nouns(text)
    for w in words(text):
        if (w in STOPWORDS or w in VERBS or w in ABSTRACT or w.isdigit() or len(w) < 3 or w.endswith("ly")
                or _verb_form(w) or w.replace("'s", "") in names):
            if current:
                runs.append(current)
            current = []
        else:
            current.append(w.replace("'s", ""))
    if current:
        runs.append(current)
    out = []
    for run in runs:
        for n in range(1, min(max_ngram, len(run)) + 1):
            for i in range(len(run) - n + 1):
                gram = run[i:i + n]
                if not _adjective(gram[-1]):  # the head (last word) must not be an adjective
                    out.append(" ".join(gram))
    return list(dict.fromkeys(out))


class KeywordExtractor:
    """Scores candidates against the pool vocabulary (captions) and a concreteness direction."""

    def __init__(self, embed: CachedEmbedder, captions: Sequence[str], config: KeywordConfig = KeywordConfig(),
                 caption_embeddings: np.ndarray | None = None, vocabulary: Sequence[str] | None = None):
        """``caption_embeddings`` [len(captions), dim] (e.g. the pool's cached ones) saves encoding them;
        ``vocabulary``: the texts whose words count as showable (default: the captions; the pipeline passes
        the cleaner emoji names and clip-art category names, file-name captions are noisy)."""
        self.embed, self.config = embed, config
        captions = list(captions)
        self.vocab = {stem(w) for c in (captions if vocabulary is None else vocabulary) for w in words(c)
                      if w not in STOPWORDS}
        if caption_embeddings is None:
            caption_embeddings = embed(captions) if captions else np.zeros((0, 1), np.float32)
        if len(caption_embeddings) != len(captions):
            raise ValueError(f"{len(caption_embeddings)} caption embeddings for {len(captions)} captions")
        self.caption_embeddings = np.asarray(caption_embeddings, np.float32)
        self.concrete_protos = embed(list(CONCRETE_PROTOTYPES))
        self.abstract_protos = embed(list(ABSTRACT_PROTOTYPES))

    def lexical_score(self, phrase: str) -> float:
        ws = phrase.split()
        hits = [stem(w) in self.vocab for w in ws]
        weights = [1.0] * (len(ws) - 1) + [1.5]
        return float(np.dot(hits, weights) / sum(weights))

    def vocab_scores(self, phrases: Sequence[str]) -> np.ndarray:
        lexical = np.array([self.lexical_score(p) for p in phrases], np.float32)
        if len(self.caption_embeddings) == 0 or not phrases:
            return lexical
        e = self.embed(list(phrases))
        best = np.zeros(len(phrases), np.float32)
        for start in range(0, len(self.caption_embeddings), 4096):  # bounded memory
            block = e @ self.caption_embeddings[start:start + 4096].T
            best = np.maximum(best, block.max(1))
        return 0.5 * lexical + 0.5 * np.clip(best, 0.0, 1.0)

    def concreteness(self, phrases: Sequence[str]) -> np.ndarray:
        if not phrases:
            return np.zeros(0, np.float32)
        e = self.embed(list(phrases))
        diff = (e @ self.concrete_protos.T).max(1) - (e @ self.abstract_protos.T).max(1)
        return np.clip(4.0 * diff, -1.0, 1.0).astype(np.float32)

    def extract(self, texts: Sequence[str]) -> list[list[Keyword]]:
        """Top keywords per text (possibly none), best first; one batched embedding call."""
        c = self.config
        per_text = [candidates(t, c.max_ngram) for t in texts]
        flat = list(dict.fromkeys(g for gs in per_text for g in gs))
        conc = dict(zip(flat, self.concreteness(flat).tolist()))
        vocab = dict(zip(flat, self.vocab_scores(flat).tolist()))
        results = []
        for gs in per_text:
            scored = []
            for g in gs:
                v = vocab[g]
                scored.append(Keyword(g, c.weight_vocab * v + c.weight_concrete * conc[g], v, conc[g]))
            scored.sort(key=lambda k: (-k.score, k.phrase))
            kept: list[Keyword] = []
            for k in scored:
                if len(kept) >= c.max_keywords or k.score < (c.min_score if not kept else c.second_min_score):
                    break
                if any(set(k.phrase.split()) & set(o.phrase.split()) for o in kept):
                    continue  # no two keywords sharing a word ("kitchen knife" and "knife")
                kept.append(k)
            results.append(kept)
        return results
