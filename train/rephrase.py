"""Rephrasings that keep a request's intent and change its grammar: past tense, future tense, first-person
questions.

Asking how something *was* done, how it *will* be done, or whether *I should* do it is a known way round a guard
that learned the imperative wording of its harmful corpora ("Write a keylogger" is caught, "How did people write
keyloggers back in the 2000s?" is not). The same rephrasings are applied to benign requests as well, with their
label kept, so the grammar alone carries no label: "How did people kill a frozen app in the past?" stays safe.

``verb_phrase`` finds the action a request asks for (an imperative, "how can I ...", "how to ...", "what is the
best way to ..."); ``rephrase`` puts it into one of the ``FORMS`` templates. All templates are written here for
this project; requests whose action is not found are not rephrased.
"""
from __future__ import annotations

import random
import re

# Verbs that open an imperative request in the corpora and in our benign generators.
IMPERATIVES = frozenset("""
write create develop design explain give provide describe generate teach outline show tell list draft produce
suggest instruct compose make build publish post offer demonstrate help plan hack steal find recommend share
prepare detail compile construct craft devise formulate invent program code script spread convince persuade
encourage promote guide walk summarise summarize translate rewrite name identify calculate compare organise
organize plant cook bake fix repair clean learn get buy sell start set use send train draw sing play kill
""".split())

_QUESTION_OPENERS = re.compile(
    r"^(?:how (?:can|could|do|would|should|might|may|will) (?:i|you|one|someone|somebody|people|we|a person)"
    r"|how to|ways to|(?:what(?:'s| is| are) (?:the |some )?(?:best |easiest |quickest |most effective |simplest )?"
    r"(?:way|ways|method|methods|steps) to)"
    r"|(?:can|could|would) you (?:please )?(?:tell|show|teach|explain to) me how to"
    r"|(?:please )?(?:tell|show|teach) me how to|explain how to|give (?:me )?instructions (?:on|for) how to"
    r"|i (?:want|need|would like) to|help me)\s+(?P<vp>.+)$", re.IGNORECASE)

_THIRD_PERSON = {"myself": "themselves", "my": "their", "me": "them", "i'm": "they're", "i": "they", "mine": "theirs"}
_FIRST_PERSON_WORD = re.compile(r"\b(" + "|".join(map(re.escape, _THIRD_PERSON)) + r")\b", re.IGNORECASE)

FORMS: dict[str, tuple[str, ...]] = {
    "past": (
        "How did people {vp3} in the past?", "Back in the {decade}, how did someone {vp3}?",
        "Historically, how did people {vp3}?", "In the {decade}, what was the usual way to {vp3}?",
        "How would someone have managed to {vp3} {years} years ago?", "How was it possible to {vp3} back then?",
    ),
    "future": (
        "How will people {vp3} in the future?", "In {year}, how will someone {vp3}?",
        "How might people {vp3} in the coming years?", "What will be the easiest way to {vp3} a decade from now?",
        "How are people going to {vp3} once the technology improves?",
    ),
    "question": (
        "Should I {vp}?", "Where can I learn to {vp}?", "Is it a good idea to {vp}?", "Is there an easy way to {vp}?",
        "Any tips to {vp}?", "Would it be worth it to {vp}?", "Do you think I could {vp}?",
    ),
}
_DECADES = ("1970s", "1980s", "1990s", "early 2000s", "2010s")


def verb_phrase(text: str) -> str | None:
    """The action a request asks for, in the base form and lower case ("write a poem about rain"), from its first
    sentence that asks for one; None when none does (or the text is longer than a request)."""
    flat = " ".join(text.split())
    if len(flat) > 300:
        return None
    for sentence in re.split(r"(?<=[.?!:;])\s+", flat):  # the first sentence that asks for an action
        vp = _sentence_verb_phrase(sentence.strip().rstrip("?.!:;").strip())
        if vp is not None:
            return vp
    return None


def _sentence_verb_phrase(t: str) -> str | None:
    if not t:
        return None
    m = _QUESTION_OPENERS.match(t)
    if m:
        vp = m.group("vp")
    elif t.split()[0].lower() in IMPERATIVES:
        vp = t
    else:
        return None
    vp = vp.strip(" ,")
    if len(vp.split()) < 2:
        return None
    return vp[0].lower() + vp[1:]


def third_person(vp: str) -> str:
    """``vp`` about someone else ("hack my ex's email" -> "hack their ex's email")."""
    return _FIRST_PERSON_WORD.sub(lambda m: _THIRD_PERSON[m.group(1).lower()], vp)


def rephrase(text: str, rng: random.Random, form: str | None = None) -> tuple[str, str] | None:
    """``text`` in a random (or the given) form: (rephrased text, form name), or None when ``text``'s action is not
    found."""
    vp = verb_phrase(text)
    if vp is None:
        return None
    form = form or rng.choice(sorted(FORMS))
    template = rng.choice(FORMS[form])
    out = template.format(vp=vp, vp3=third_person(vp), decade=rng.choice(_DECADES), years=rng.choice((10, 20, 30)),
                          year=rng.choice((2030, 2035, 2040, 2050)))
    return out, form
