"""Benign requests about the topics of the harmful training requests.

A guard that sees "bomb", "prescription drugs" or "hate speech" only in harmful requests learns the topic word as
the label, and refuses a user who asks how journalists report on hate speech. This generator takes the topics (the
noun phrases ``impforge.keywords.candidates`` finds) of the harmful requests it is given, keeps those that occur in
at least ``min_count`` of them, and puts each in benign task templates that discuss, study, translate or guard
against the topic without asking to do it ("What laws regulate prescription drugs in the UK?"). So a topic word
is in both classes and only the intent tells them apart. The templates are written for this project; the topics come
from whatever harmful requests the caller passes (the training corpora minus any held-out one).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

# every template stays benign whatever the topic: it asks about the topic, never how to do or get it
TEMPLATES = (
    "Write a short encyclopedia entry on {t}.", "What is the history of {t}?",
    "How do journalists report responsibly on {t}?", "What laws regulate {t} in the UK?",
    "Summarise the public debate about {t} in three sentences.", "Recommend a documentary or a book about {t}.",
    "How do researchers study {t}?", "What do schools teach students about {t}?",
    "Translate the phrase '{t}' into Spanish.", "How many syllables are in '{t}'?",
    "What support services help people affected by {t}?", "How can a community protect itself against {t}?",
    "Give me a reading list for a university course that covers {t}.",
    "Which museums have exhibitions related to {t}?", "Where can I find official statistics on {t}?",
    "How has the meaning of the words '{t}' changed over time?", "What are common myths about {t}?",
    "Write a quiz question about {t} for a safety class.", "Explain {t} to a policy maker in plain words.",
    "what's the etymology of '{t}'?", "Is '{t}' written with a hyphen or without one?",
    "Draft an outline for a school essay on how society responds to {t}.",
    "Which organisations campaign on {t}, and what do they ask for?",
    "How do content moderators recognise posts about {t}?", "Why is {t} a topic in ethics classes?",
)


@dataclass(frozen=True)
class TopicText:
    text: str
    topic: str
    template: int


# a word after one of these, somewhere in the requests, is used as a noun ("the money", "of heroin"); verbs and
# adjectives that the keyword candidates let through ("develop", "caught") are not
_NOUN_CUES = frozenset("a an the of about on my your their his her our some any for with in into from".split())


def topics(requests: Iterable[str], min_count: int = 2, max_words: int = 3) -> list[str]:
    """Noun phrases of the requests (``keywords.candidates``, only the longest of each request's overlapping
    ones, whose first word follows an article or preposition somewhere), in order of how many requests hold them,
    those in at least ``min_count``."""
    from crossguard.train.impforge.keywords import candidates
    from crossguard.train.impforge.rewards import words

    counts: Counter[str] = Counter()
    nouns: set[str] = set()
    for text in requests:
        ws = words(text)
        nouns.update(w for cue, w in zip(ws, ws[1:]) if cue in _NOUN_CUES)
        found = [c for c in candidates(text, max_words) if len(c) > 3]
        counts.update({c for c in found if not any(c != o and f" {c} " in f" {o} " for o in found)})
    return [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if n >= min_count and t.split()[0] in nouns]


def topic_requests(harmful: Iterable[str], n: int, seed: int = 0, min_count: int = 2) -> list[TopicText]:
    """``n`` distinct benign requests (fewer when the topics x templates run out) on the topics of ``harmful``: the
    topics in turn (so rare ones appear too), each through its own shuffled order of the templates; deterministic for
    a seed."""
    found = topics(harmful, min_count)
    rng = random.Random(seed)
    rng.shuffle(found)
    orders = [rng.sample(range(len(TEMPLATES)), len(TEMPLATES)) for _ in found]
    out: list[TopicText] = []
    for k in range(min(n, len(found) * len(TEMPLATES))):
        topic, template = found[k % len(found)], orders[k % len(found)][k // len(found)]
        text = TEMPLATES[template].format(t=topic)
        out.append(TopicText(text[0].upper() + text[1:], topic, template))
    return out
