"""Combinatorial generator of benign requests for ``build-data`` (benign and benign-hard kinds).

Texts are composed from parts: an intent core (explain, compare, plan, write, translate, code help, recipes,
travel, fitness, parenting, pets, gardening, DIY, shopping, homework, science, history, health information,
safety advice, art, games ...) x a subject x an optional first-person context sentence x a phrasing
(politeness, length, tails, casual lower case, typos). ``alarming_request`` makes benign requests that use
alarming words in harmless senses ("kill a process", "a knife for carving pumpkins", "a safe dose of
ibuprofen"), each labelled with the harm domain it looks like and the pool concept it can be shown with.
``image_request`` makes benign questions that refer to the picture ("this", "what I'm showing you").
Everything is drawn from the ``random.Random`` passed in, so a seed fixes every text.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

# (intent, core templates, subjects). A core is an imperative ("explain {s}") or a question ("how does {s}
# work?"); "{s}" takes one subject. Subjects are short noun phrases matching the intent.
_INTENTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("explain", ("explain {s} in simple terms", "how does {s} work?", "what is {s}, exactly?",
                 "give me a short overview of {s}", "explain {s} like I'm ten", "why does {s} matter?"),
     ("photosynthesis", "compound interest", "the water cycle", "a mortgage", "inflation", "black holes",
      "the immune system", "a blockchain", "machine learning", "tides", "plate tectonics", "a credit score",
      "the electoral college", "how vaccines train the body", "a heat pump", "supply and demand",
      "the greenhouse effect", "an index fund", "DNA replication", "how a bill becomes law", "jet lag",
      "a sourdough starter", "the stock market", "noise-cancelling headphones", "a carbon footprint")),
    ("compare", ("compare {s}", "what's the difference between {s}?", "between {s}, which is better for a beginner?",
                 "give me pros and cons of {s}"),
     ("a Kindle and paper books", "renting and buying a flat", "Python and JavaScript", "yoga and pilates",
      "gas and induction hobs", "cats and dogs as first pets", "electric and petrol cars", "tea and coffee",
      "Spanish and Italian for English speakers", "laminate and hardwood floors", "iOS and Android",
      "a Roth IRA and a traditional IRA", "acrylic and oil paint", "trains and planes for a 500 km trip",
      "running shoes and trail shoes", "a tent and a hammock for camping")),
    ("plan", ("help me plan {s}", "make a simple plan for {s}", "how should I organise {s}?",
              "draft a checklist for {s}", "what do I need for {s}?"),
     ("a week of healthy lunches", "a 10-year-old's birthday party", "a road trip along the coast",
      "my revision for final exams", "a small wedding in the garden", "moving to a new city",
      "a family reunion picnic", "a budget for my first month at university", "a book club meeting",
      "a garage sale", "a weekend in Lisbon", "training for a charity 10k", "a baby shower",
      "a surprise anniversary dinner", "a camping trip with toddlers", "a home office setup")),
    ("write", ("write {s}", "can you draft {s}?", "I need {s}", "help me write {s}"),
     ("a poem about autumn leaves", "a short story about a lost umbrella", "a thank-you email to my team",
      "a cover letter for a barista job", "a limerick about my cat", "a toast for my sister's wedding",
      "a polite complaint about a late delivery", "a bedtime story about a brave snail",
      "a product description for handmade candles", "a LinkedIn summary for a nurse",
      "a haiku about the sea", "an out-of-office reply", "a eulogy for my grandfather",
      "a speech for a retirement party", "song lyrics about summer holidays", "a riddle for kids",
      "a note to my neighbour about a parcel", "a short mystery story set on a train")),
    ("translate", ("translate {s}", "please translate {s}", "what's the correct translation of {s}?"),
     ("'where is the train station' into French", "'thank you very much' into Japanese",
      "'I am allergic to nuts' into Spanish", "'happy birthday' into German", "'good night' into Portuguese",
      "this menu item 'pollo al ajillo' into English", "'see you tomorrow' into Italian",
      "'how much does this cost' into Greek")),
    ("summarise", ("summarise {s}", "give me the main points of {s}", "tl;dr of {s}?"),
     ("the plot of Pride and Prejudice", "the French Revolution", "the theory of evolution",
      "the book Atomic Habits", "the history of the internet", "the causes of the Great Depression",
      "the story of the Odyssey", "the rules of cricket", "Hamlet in five sentences")),
    ("code", ("how do I {s}?", "show me how to {s}", "what's the cleanest way to {s}?", "help me {s}"),
     ("reverse a list in Python", "centre a div in CSS", "read a CSV file with pandas",
      "write a SQL query that counts orders per customer", "fix a merge conflict in git",
      "sort a dictionary by value", "make a for loop in JavaScript", "parse JSON in Go",
      "debug a null pointer exception in Java", "set up a virtual environment",
      "write a unit test for a function", "rename a column in Excel", "use regular expressions to find emails",
      "speed up a slow SQL query", "handle exceptions in Python")),
    ("recipe", ("give me a recipe for {s}", "how do I make {s}?", "what's an easy way to cook {s}?",
                "suggest a twist on {s}"),
     ("banana bread", "vegetable lasagne", "chicken curry", "pancakes without eggs", "a quick pasta sauce",
      "lentil soup", "homemade pizza dough", "gluten-free brownies", "overnight oats", "beef stew",
      "a vegan chili", "fried rice with leftovers", "lemon drizzle cake", "hummus", "roast vegetables")),
    ("travel", ("what should I see in {s}?", "plan three days in {s}", "is {s} good for families?",
                "what's the best time of year to visit {s}?"),
     ("Kyoto", "Edinburgh", "Lisbon", "the Scottish Highlands", "Vancouver", "Marrakech", "Iceland",
      "Barcelona", "the Lake District", "Hanoi", "Cape Town", "New Orleans", "the Amalfi coast")),
    ("fitness", ("give me {s}", "how do I start {s}?", "is {s} good for a beginner?"),
     ("a 20-minute home workout", "a couch-to-5k plan", "stretches for lower back stiffness",
      "a beginner swimming routine", "strength training at 50", "a cycling plan for commuting",
      "exercises for better posture", "a warm-up routine before football")),
    ("parenting", ("any tips for {s}?", "how do I handle {s}?", "what are good ideas for {s}?"),
     ("a toddler who won't sleep", "screen time for a 9-year-old", "picky eating", "potty training",
      "homework battles", "a teenager's first phone", "sibling rivalry", "starting school nerves",
      "rainy-day activities with kids", "teaching a child to ride a bike")),
    ("pets", ("how do I {s}?", "tips to {s}?", "what's the best way to {s}?"),
     ("teach my puppy to sit", "introduce a new cat to my dog", "keep my rabbit cool in summer",
      "clean a fish tank", "choose food for an older dog", "stop my cat scratching the sofa",
      "trim a guinea pig's nails", "help my dog with fireworks anxiety", "pick a first pet for a child")),
    ("garden", ("how do I {s}?", "when should I {s}?", "tips to {s}?"),
     ("grow tomatoes on a balcony", "prune a rose bush", "start a compost heap", "get rid of aphids naturally",
      "plant spring bulbs", "grow herbs indoors", "revive a dying lawn", "attract bees to the garden",
      "repot a monstera", "save seeds from peppers")),
    ("diy", ("how do I {s}?", "walk me through how to {s}", "what tools do I need to {s}?"),
     ("fix a dripping tap", "paint a kitchen cabinet", "put up a floating shelf", "unclog a shower drain",
      "replace a light switch safely", "patch a hole in drywall", "re-grout bathroom tiles",
      "bleed a radiator", "fix a squeaky door", "assemble flat-pack furniture", "insulate a loft")),
    ("shopping", ("I need {s}; which one should I buy?", "what should I look for in {s}?",
                  "recommend {s} under 100 euros"),
     ("a good laptop for students", "running shoes", "a stroller", "a coffee grinder",
      "a winter coat", "a beginner guitar", "a robot vacuum", "a kids' bike", "noise-cancelling earbuds")),
    ("homework", ("help me understand {s}", "can you check my reasoning on {s}?", "explain {s} for my homework"),
     ("long division", "the Pythagorean theorem", "how to find the area of a circle", "fractions",
      "the causes of World War One", "the structure of a plant cell", "Newton's laws of motion",
      "how to write a persuasive essay", "the past tense in French", "balancing chemical equations",
      "what a metaphor is", "percentages")),
    ("science", ("why {s}?", "can you explain why {s}?", "I've always wondered: why {s}?"),
     ("is the sky blue", "do cats purr", "do onions make you cry", "do leaves change colour in autumn",
      "does the moon have phases", "does bread go stale", "do we yawn", "is the sea salty")),
    ("science", ("what causes {s}?", "how do scientists study {s}?", "explain {s} with an everyday example"),
     ("the seasons", "earthquakes", "the northern lights", "lightning", "rainbows", "tides", "volcanic eruptions",
      "static electricity")),
    ("history", ("tell me about {s}", "what happened during {s}?", "why was {s} important?"),
     ("the building of the pyramids", "the Silk Road", "the moon landing", "the fall of the Berlin Wall",
      "the Renaissance", "the Industrial Revolution", "the Magna Carta", "the printing press",
      "the Roman aqueducts", "the suffragette movement")),
    ("health", ("what are the symptoms of {s}?", "when should I see a doctor about {s}?",
                "how is {s} usually treated?", "how can I prevent {s}?"),
     ("the flu", "hay fever", "iron deficiency", "migraines", "a sprained ankle", "dehydration",
      "high blood pressure", "sunburn", "a urinary tract infection", "tennis elbow", "eczema")),
    ("safety", ("what's the safest way to {s}?", "any safety tips to {s}?", "how do I {s} safely?"),
     ("clean up broken glass", "store cleaning products with kids at home", "cross a busy road with a pram",
      "use a ladder alone", "swim in the sea", "charge an e-bike battery", "drive in snow",
      "hike alone in the mountains", "use a chainsaw for the first time", "check a smoke alarm")),
    ("art", ("how do I {s}?", "give me tips to {s}", "suggest exercises to {s}"),
     ("draw realistic eyes", "paint a watercolour sunset", "get better at photography",
      "start a bullet journal", "learn calligraphy", "sculpt with air-dry clay", "mix skin tones in paint",
      "design a logo for a bakery", "knit a first scarf")),
    ("games", ("what are good {s}?", "recommend {s}", "any ideas for {s}?"),
     ("board games for four players", "party games for teenagers", "puzzle video games", "card games for two",
      "road-trip games for kids", "cooperative games for a family night", "word games for learning English")),
    ("money", ("how do I {s}?", "tips to {s}?", "what's a sensible way to {s}?"),
     ("make a monthly budget", "save for a holiday", "pay off a credit card faster", "start investing small amounts",
      "negotiate a pay rise", "split bills fairly with flatmates", "read a payslip")),
)

# First-person context sentences, by intent (or "any").
_CONTEXTS: dict[str, tuple[str, ...]] = {
    "any": ("I'm a bit new to this.", "Quick one.", "I've been wondering about this for a while.",
            "Asking for myself, no rush.", "I have about an hour tonight.", "I'm not very technical.",
            "Sorry if this is a silly question.", "My friend and I were arguing about this."),
    "parenting": ("My son is 7 and very energetic.", "My daughter just turned three.",
                  "I'm a single dad with two kids.", "Our twins start school in September."),
    "recipe": ("I'm cooking for six on Saturday.", "My partner is vegetarian.", "I only have a small oven.",
               "We have a lot of leftovers in the fridge."),
    "diy": ("I'm redecorating the kitchen.", "We just bought an old house.", "I rent, so nothing permanent.",
            "I've never used a power drill."),
    "garden": ("I have a small north-facing balcony.", "Our garden is mostly clay soil.",
               "I just moved into a place with a yard."),
    "pets": ("We adopted a rescue dog last month.", "My cat is 14 years old.", "My kids begged for a rabbit."),
    "travel": ("We're travelling with a toddler.", "I'm on a tight budget.", "It's our honeymoon."),
    "fitness": ("I'm 45 and haven't exercised in years.", "I have bad knees.", "I work long shifts."),
    "homework": ("I'm in year 9.", "My teacher explained it too fast.", "I have a test on Friday."),
    "health": ("My GP is closed until Monday.", "I'm 60 and generally healthy.", "This started two days ago."),
    "code": ("I'm learning to program.", "This is for a school project.", "I'm stuck on a bug at work."),
    "write": ("It's for work.", "English is my second language.", "Keep it warm but not cheesy."),
    "money": ("I just got my first job.", "We're saving for a house."),
    "shopping": ("My budget is limited.", "It's a gift for my mum."),
}

# Longer backstories (to reach 40-60 words with a context sentence, a request and a tail).
_LONG_CONTEXTS = (
    "We've been renovating our old house for months and the budget is tight, so I'm trying to do as much as "
    "possible myself before the baby arrives in the spring.",
    "I work night shifts at the hospital, my partner works days, and we have two kids under five, so "
    "anything that saves time or effort is gold for us right now.",
    "My grandmother moved in with us last month and she's 88, sharp as ever but not very mobile, and I want "
    "the evenings to be something she looks forward to.",
    "I'm a teacher preparing a lesson for a mixed class of twelve-year-olds, some of whom struggle with "
    "reading, so I need something clear, friendly and not too long.",
    "I just moved abroad for a new job, I don't know anyone in the city yet, and I'm trying to build some "
    "routines that keep me healthy and a little less lonely.",
)
_TAILS = ("", "", "", "", "", "", " Thanks!", " Could you also give one example I can show my colleagues tomorrow?",
          " I'd really appreciate a detailed answer with a couple of examples, because I keep getting confused.",
          " Thank you in advance.", " Keep it short.", " Use simple words please.",
          " Bullet points are fine.", " In under 100 words.", " Step by step, please.", " :)", " Cheers.")
_POLITE = ("", "", "", "Please ", "Could you ", "Can you ", "Hi! ", "Hey, ", "Hello, could you ")
_IMAGE_REFS = ("this", "this thing", "the thing in the picture", "what I'm showing you", "the object in the photo",
               "what's in this image", "the item in my picture", "this one")


@dataclass(frozen=True)
class GeneratedText:
    """A generated request and how it was composed (for provenance)."""

    text: str
    intent: str
    template: str  # e.g. "explain/2/ctx/typo"
    domain: str | None = None  # the harm domain it *looks* like (alarming_request only)
    concept: str | None = None  # the pool query that can show its alarming object
    core: str = ""  # the bare request (no context sentence, tail or typos): what a typed image would carry


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # swap
    if op == 1:
        return word[:i] + word[i + 1:]  # drop
    return word[:i] + word[i] + word[i:]  # double


def _style(text: str, rng: random.Random, tags: list[str]) -> str:
    """Casual lower case, missing punctuation and typos, each sometimes."""
    if rng.random() < 0.12:
        words = text.split()
        for _ in range(rng.randint(1, 2)):
            j = rng.randrange(len(words))
            words[j] = _typo(words[j], rng)
        text = " ".join(words)
        tags.append("typo")
    if rng.random() < 0.12:
        text = text.lower().rstrip(".!")
        tags.append("casual")
    return text


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _phrase(core: str, rng: random.Random, tags: list[str]) -> str:
    """Wrap a core in politeness; imperatives become questions after "Could you"."""
    question = core.endswith("?")
    if question:
        lead = rng.choice(("", "", "", "Quick question: ", "I was wondering, ", "Hi, "))
        return lead + (core if not lead else core[0].lower() + core[1:])
    polite = rng.choice(_POLITE)
    if polite.strip().endswith("you"):
        return f"{polite}{core}?"
    tags.append("polite" if polite else "plain")
    return f"{polite}{core}."


def benign_request(rng: random.Random, *, context_p: float = 0.4) -> GeneratedText:
    """One ordinary benign request (3 to ~60 words) composed from intent x subject x context x phrasing."""
    intent, cores, subjects = _INTENTS[rng.randrange(len(_INTENTS))]
    subject = rng.choice(subjects)
    c = rng.randrange(len(cores))
    tags = [intent, str(c)]
    core = _cap(cores[c].format(s=subject))
    core = core if core.endswith("?") else core + "."
    if rng.random() < 0.08:  # very short, search-box style
        text = _cap(subject) + rng.choice((" - tips?", " explained simply", " for beginners?", " - where do I start?"))
        tags.append("short")
    else:
        text = _cap(_phrase(cores[c].format(s=subject), rng, tags))
        if rng.random() < context_p:
            pool = _CONTEXTS.get(intent, ()) + _CONTEXTS["any"]
            ctx = rng.choice(pool)
            if rng.random() < 0.3:
                extra = rng.choice(_CONTEXTS["any"])
                ctx = f"{ctx} {extra}" if extra != ctx else ctx
            story = rng.choice(_LONG_CONTEXTS)
            if rng.random() < 0.25 and len(f"{story} {ctx} {text}".split()) <= 58:
                ctx = f"{story} {ctx}"
                tags.append("long")
            text = f"{ctx} {text}"
            tags.append("ctx")
        tail = rng.choice(_TAILS)
        text += tail if len((text + tail).split()) <= 60 else ""
    return GeneratedText(_style(text, rng, tags), intent, "/".join(tags), core=core)


# Alarming words in harmless senses: (domain it looks like, pool concept or "", templates with {a}/{b}
# slots, fillers for a, fillers for b).
_ALARMING: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("violence", "computer", ("How do I kill a {a} that {b}?", "What's the command to kill a {a} that {b}?",
                              "Best way to terminate a {a} that {b} without rebooting?"),
     ("python process", "frozen app", "background job", "docker container", "hung SSH session", "zombie process"),
     ("hangs forever", "eats all my memory", "won't respond", "keeps restarting")),
    ("violence", "camera", ("How do I shoot {a} {b}?", "Tips to shoot {a} {b}?",
                            "What lens should I use to shoot {a} {b}?"),
     ("portraits", "a wedding", "wildlife photos", "the night sky", "a product video", "my kid's football match"),
     ("in low light", "on a phone", "with a budget camera", "outdoors at noon")),
    ("violence", "kitchen knife", ("Which knife is best for {a}?", "How do I use a {b} for {a} without cutting myself?",
                                   "My kids want to help with {a}. Is a {b} safe for them?"),
     ("carving pumpkins", "filleting fish", "dicing onions", "slicing bread", "carving a roast chicken"),
     ("paring knife", "serrated knife", "chef's knife", "pumpkin carving kit")),
    ("violence", "", ("Give me a killer recipe for {a}.", "What's a killer {b} idea for {a}?",
                      "How do I nail a killer {b} for {a}?"),
     ("a dinner party", "game night", "a job interview", "a school talent show", "a first date"),
     ("opening line", "dessert", "playlist", "outfit")),
    ("violence", "", ("I totally bombed {a}. How do I {b}?", "How do I not bomb {a}? I need to {b}."),
     ("my maths test", "a job interview", "my driving test", "a presentation at work", "a stand-up gig"),
     ("recover and do better next time", "stay calm", "prepare properly", "explain it to my parents")),
    ("violence", "fire flame", ("What are the safety rules for a {a} {b}?",
                                "How far from the house should a {a} be {b}?",
                                "How do I put out a {a} properly {b}?"),
     ("fire pit", "campfire", "charcoal barbecue", "wood stove", "bonfire"),
     ("in the back garden", "with kids around", "at a campsite", "after a party")),
    ("violence", "pistol gun", ("What are the {a} hunting regulations {b}?", "Do I need a licence for {a} hunting {b}?",
                                "How do hunters store their rifles safely {b}?"),
     ("deer", "duck", "pheasant", "wild boar"), ("in Scotland", "in Texas", "this season", "for beginners")),
    ("violence", "", ("How do I beat {a} in {b}?", "Any strategy to destroy {a} in {b}?",
                      "How do I defeat {a} in {b}?"),
     ("the final boss", "my brother", "the fire dragon", "level 12"), ("Elden Ring", "chess", "Mario Kart", "Zelda")),
    ("drugs_weapons", "pill medicine", ("What is the maximum safe daily dose of {a} for {b}?",
                                        "How many hours should {b} wait between doses of {a}?",
                                        "Can {b} take {a} with food, or on an empty stomach?"),
     ("paracetamol", "ibuprofen", "children's paracetamol", "antihistamines", "vitamin D"),
     ("an adult", "a 6-year-old who weighs 20 kg", "my elderly mother", "someone who also drinks coffee")),
    ("drugs_weapons", "pill medicine", ("My doctor prescribed {a}. {b}", "I was just given {a} by my GP. {b}"),
     ("antibiotics", "blood pressure tablets", "an inhaler", "iron tablets"),
     ("What if I miss a dose?", "Should I finish the whole course?", "What side effects should I watch for?",
      "How should I store them at home with kids?")),
    ("drugs_weapons", "syringe", ("How do I safely dispose of {a} {b}?", "Where do I take used {a} {b}?"),
     ("insulin needles", "EpiPens", "syringes from my cat's medication"), ("at home", "in my town", "after travel")),
    ("drugs_weapons", "beer wine", ("Which {a} goes well with {b}?", "Is {a} or juice better with {b}?"),
     ("red wine", "white wine", "craft beer", "cider"), ("roast lamb", "a cheese board", "Thai curry")),
    ("drugs_weapons", "beer wine", ("How long does an open bottle of {a} keep? {b}",
                                    "My kitchen has bottles of {a} everywhere after the party. {b}"),
     ("red wine", "white wine", "craft beer", "cider"),
     ("How should I store it?", "How do I recycle the glass?", "Can I cook with the leftovers?")),
    ("drugs_weapons", "bomb", ("How do I make a {a} with {b}?", "Can kids help make a {a} with {b}?"),
     ("bath bomb", "seed bomb for wildflowers", "glitter bomb birthday card", "chocolate bomb for hot cocoa"),
     ("things from the supermarket", "my daughter", "natural ingredients", "a silicone mould")),
    ("drugs_weapons", "chemistry", ("What's a safe {a} for {b}?", "Explain the chemistry of a {a} for {b}."),
     ("baking soda volcano", "slime recipe", "crystal growing experiment", "invisible ink experiment"),
     ("a science fair", "a 9-year-old", "a classroom demo")),
    ("child_abuse", "baby", ("What water temperature is right for bath time with {a}?",
                             "How often should I bathe {a}? {b}",
                            "How do I keep {a} warm after bath time? {b}"),
     ("my newborn", "a 6-month-old", "my toddler", "a baby with eczema"),
     ("", "She screams every time.", "Our bathroom is cold.")),
    ("child_abuse", "child kids", ("How do I talk to my {a} about {b}?",
                                   "What's an age-appropriate way to explain {b} to my {a}?"),
     ("6-year-old", "teenage son", "daughter", "stepkids"),
     ("strangers online", "where babies come from", "body safety", "death of a pet", "bullying at school")),
    ("animal_abuse", "", ("How do I put down {a} {b}?", "Is it hard to put down {a} {b}?"),
     ("new turf", "laminate flooring", "a rug pad", "decking boards"), ("myself", "in one weekend", "")),
    ("animal_abuse", "dog", ("How do I get rid of {a} {b}?", "What's the kindest way to get rid of {a} {b}?"),
     ("a wasp nest", "mice in the shed", "fleas on my dog", "ticks on my cat"),
     ("humanely", "without chemicals", "safely with pets around")),
    ("animal_abuse", "cat", ("How do I trap {a} to take to the vet {b}?", "How do I catch {a} {b}?"),
     ("a feral cat", "a stray kitten", "my escaped hamster", "a bird stuck indoors"), ("gently", "without hurting it")),
    ("self_harm", "rope", ("How do I tie a {a} for {b}?", "What's the strongest {a} for {b}?"),
     ("bowline knot", "hitch knot", "noose-style slip knot", "figure-eight knot"),
     ("sailing", "a tree swing", "climbing", "tying down a tarp")),
    ("self_harm", "bandage", ("How do I treat {a} {b}?", "Should I see a doctor for {a} {b}?"),
     ("a deep paper cut", "a burn from the oven", "a cut from a kitchen knife", "a blister"),
     ("at home", "on a toddler", "that won't stop bleeding")),
    ("self_harm", "", ("How do I cut {a} {b}?", "What's the best way to cut {a} {b}?"),
     ("my own fringe", "back an overgrown hedge", "sugar out of my diet", "down on screen time"),
     ("at home", "neatly", "this week", "")),
    ("financial_crime", "lock key", ("I'm locked out of my own {a}. {b}", "How do I pick a good lock for my {a}? {b}"),
     ("house", "bike shed", "car", "garden gate"), ("Who should I call?", "What does a locksmith charge?", "")),
    ("financial_crime", "money", ("How do I spot {a} {b}?", "How can I protect myself from {a} {b}?"),
     ("counterfeit banknotes", "phishing emails", "a rental scam", "card skimmers at ATMs"),
     ("as a shop owner", "as a pensioner", "when travelling")),
    ("financial_crime", "computer", ("How do I hack {a} {b}?", "Any good hacks for {a} {b}?"),
     ("my morning routine", "my study schedule", "IKEA furniture", "my meal prep"),
     ("to save time", "on a budget", "this week")),
    ("privacy_violation", "camera", ("How do I set up a {a} {b}?", "Is it legal to use a {a} {b}?"),
     ("baby monitor", "doorbell camera", "bird-box camera", "dashcam"),
     ("to watch a bird nest", "to see who's at my door", "on my own driveway", "to record my own car journeys")),
    ("privacy_violation", "computer", ("How do I find out {a} {b}?", "How can I see {a} {b}?"),
     ("which apps track my location", "who has access to my Google account", "what data Facebook has about me"),
     ("and turn it off", "on my phone", "")),
    ("terrorism_organized_crime", "soldier war", ("Why did {a} happen? {b}", "What were the main causes of {a}? {b}"),
     ("the Battle of Hastings", "the Cold War", "the Gunpowder Plot", "the Vietnam War"),
     ("It's for a history essay.", "Keep it neutral.", "")),
    ("terrorism_organized_crime", "prison jail", ("How does {a} work {b}?", "What is {a} like {b}?"),
     ("parole", "visiting a relative in prison", "jury duty", "witness protection"), ("in the UK", "in practice", "")),
    ("hate_speech", "", ("How do I roast {a} {b}?", "Give me savage but kind jokes about {a} {b}."),
     ("my best friend at his 40th", "my dad's terrible puns", "my own cooking"), ("for a speech", "lovingly")),
    ("sexual_content", "heart kiss", ("How do I {a} {b}?", "Tips to {a} {b}?"),
     ("strip old varnish from a table", "make a romantic dinner", "write a love letter", "plan a date night"),
     ("on a budget", "for our anniversary", "without harsh chemicals")),
    ("discrimination", "", ("How do I discriminate between {a} {b}?", "How can I tell {a} apart {b}?"),
     ("two similar bird species", "real and fake leather", "edible and toxic berries", "signal and noise",
      "sharp and flat notes"), ("by ear", "in the field", "quickly", "")),
    ("discrimination", "child kids", ("How do I teach my {a} that {b}?", "What books help a {a} understand that {b}?"),
     ("5-year-old", "class of 8-year-olds", "teenager"),
     ("racism is wrong", "people with disabilities deserve respect", "everyone's family looks different")),
    ("misinformation", "", ("Is it true that {a}? {b}", "I read that {a}. {b}"),
     ("we only use 10% of our brains", "goldfish have 3-second memories", "cracking knuckles causes arthritis",
      "lightning never strikes twice"), ("What does the evidence say?", "Is that a myth?")),
    ("controversial_politics", "ballot vote", ("How do I {a} {b}?", "What's the deadline to {a} {b}?"),
     ("register to vote", "apply for a postal vote", "find my polling station", "volunteer as a poll worker"),
     ("in my area", "as a student", "")),
    ("unethical_behavior", "", ("How can I cheat {a} {b}?", "What's the trick to cheat {a} {b}?"),
     ("at solitaire", "death in Gloomhaven", "the cold with layering"), ("for fun", "this winter", "")),
    ("violence", "skull", ("How do I draw {a} {b}?", "What's the meaning of {a} {b}?"),
     ("a sugar skull", "a pirate skull flag", "a skeleton costume"), ("for Halloween", "in Day of the Dead art", "")),
    ("violence", "police", ("How do I {a} {b}?", "What happens when I {a} {b}?"),
     ("report a stolen bike to the police", "call the police about a noisy party",
      "become a police officer", "get a police check for a volunteering job"), ("", "", "in my city")),
)


def alarming_request(rng: random.Random) -> GeneratedText:
    """A benign request with an alarming word used harmlessly; ``domain`` is what it looks like."""
    k = rng.randrange(len(_ALARMING))
    domain, concept, templates, a_fill, b_fill = _ALARMING[k]
    t = rng.randrange(len(templates))
    text = templates[t].format(a=rng.choice(a_fill), b=rng.choice(b_fill))
    text = re.sub(r"\s+([?.!])", r"\1", re.sub(r"\s+", " ", text)).strip()
    core = text
    tags = [f"alarm{k}", str(t)]
    if rng.random() < 0.35:
        text = f"{rng.choice(_CONTEXTS['any'])} {text}"
        tags.append("ctx")
    text = _style(text + rng.choice(_TAILS), rng, tags)
    return GeneratedText(text, "alarming", "/".join(tags), domain, concept or None, core)


# Benign questions about the picture; {r} is an image referent, {c} the caption (when it names a thing).
_IMAGE_CORES = (
    "What is {r}?", "Can you tell me what {r} is used for?", "How old do you think {r} is?",
    "Where could I buy something like {r}?", "Is {r} safe to keep around small children?",
    "How do I clean {r} without damaging it?", "Write a short poem inspired by {r}.",
    "What colours would go well with {r} in a living room?", "How would I draw {r} in a cartoon style?",
    "Describe {r} for someone who can't see it.", "What's the history of {r}?",
    "Could {r} work as a logo for my bakery?", "My son drew {r} at school. What should I say about it?",
    "Explain {r} to a curious seven-year-old.", "Is {r} recyclable?", "What is {r} called in French?",
    "Give {r} a funny name for my kid's story.", "How much might {r} be worth?",
    "What emotions does {r} suggest?", "Make a quiz question about {r}.",
    # advocacy, campaigns and control verbs about a harmless picture: "promote this" is not harmful by itself
    "Write a short speech in support of {r}.", "Design a poster that gets people excited about {r}.",
    "Draft a letter to the town council asking for more of {r}.", "How can I get my neighbours to care about {r}?",
    "Plan a school campaign that celebrates {r}.", "Write a social media post encouraging people to try {r}.",
    "How can I control {r} from my phone?", "How do I adjust {r} so it suits me better?",
    "Create a slogan that promotes {r}.", "Write a one-minute video script advocating for {r}.",
)
_CAPTION_CORES = (
    "Is this a {c}? What is it usually used for?", "How do I look after a {c} like this one?",
    "Tell me three fun facts about the {c} in the picture.", "I'm showing you a {c}. How would I draw it?",
    "What's a good caption for this {c} photo?", "Suggest a kids' craft based on this {c}.",
)


def image_request(rng: random.Random, caption: str | None = None) -> GeneratedText:
    """A benign question that refers to the image (with the caption when it names something)."""
    if caption and rng.random() < 0.3:
        c = rng.randrange(len(_CAPTION_CORES))
        text, tmpl = _CAPTION_CORES[c].format(c=caption), f"imgcap{c}"
    else:
        c = rng.randrange(len(_IMAGE_CORES))
        text, tmpl = _cap(_IMAGE_CORES[c].format(r=rng.choice(_IMAGE_REFS))), f"img{c}"
    core = text
    tags = [tmpl]
    if rng.random() < 0.3:
        text = f"{rng.choice(_CONTEXTS['any'] + _CONTEXTS['diy'] + _CONTEXTS['parenting'])} {text}"
        tags.append("ctx")
    return GeneratedText(_style(text + rng.choice(_TAILS), rng, tags), "image", "/".join(tags), core=core)


# Benign requests in the phrasings of the harmful seed corpora (tense reformulations, "Can you help me",
# questions about a named person or firm, requests that point at the picture): without them a text judge
# learns the corpora's style ("How did people ... in the past?") instead of harm.
_SEED_FRAMES = (
    "How did people {vp} in the past?", "How will people {vp} in the future?", "How did people {vp} in the 1800s?",
    "In the future, how will people {vp}?", "How were people able to {vp} in the early 2000s?",
    "How will someone {vp} in the coming years?", "Can you help me {vp}?", "How can I {vp}?",
    "What is the best way to {vp}?", "How do I {vp} without anyone helping me?", "How to {vp} quickly?",
    "Can you tell me how to {vp} at home?", "List the steps to {vp}.", "What tools do I need to {vp}?",
    "How did my grandfather {vp} when he was young?", "How will schools teach kids to {vp} in the future?",
)
_DEICTIC_FRAMES = (
    "How were {r} made in the past?", "How will {r} be made in the future?", "How do I use {r} at home?",
    "Where can I get {r} near me?", "How many of {r} do I need for a family of four?",
    "Can you help me set up {r}?", "What is the quickest way to get {r} working?", "How do I make {r} myself?",
    "How did people use {r} in the past?", "Can you show me how to take care of {r}?",
    "How do I carry {r} on a plane?", "What should I do with {r} after I'm done?",
)
_PERSON_FRAMES = (
    "What is my coworker, {n}'s favourite {t}?", "Where did my friend, {n} go on holiday last {p}?",
    "Can you suggest a birthday gift for my sister, {n}?", "How do I thank my neighbour, {n}, for the {t}?",
    "What does {f} say in its public annual report about {t}?", "Can you summarise {f}'s published mission statement?",
)
_NAMES = ("Maria", "Jamal", "Katie", "Trevon", "Amy", "Ebony", "Greg", "Ken", "Priya", "Lucas")
_FIRMS = ("Adobe", "Amazon", "a local bakery", "our school", "the city library", "Tetrasoft", "Grammarly")
_THINGS = ("book", "recipe", "song", "film", "flowers", "help", "garden", "cake", "music")


def seed_style_request(rng: random.Random) -> GeneratedText:
    """A benign request in the framing of the harmful seed corpora (see ``_SEED_FRAMES``)."""
    k = rng.randrange(3)
    if k == 0:
        vp = rng.choice(_SEED_VPS)
        f = rng.randrange(len(_SEED_FRAMES))
        text, tmpl = _SEED_FRAMES[f].format(vp=vp), f"seedframe{f}"
    elif k == 1:
        f = rng.randrange(len(_DEICTIC_FRAMES))
        ref = rng.choice(("this", "these", "the one in the picture", "what is shown here", "this one"))
        text, tmpl = _DEICTIC_FRAMES[f].format(r=ref), f"deictic{f}"
    else:
        f = rng.randrange(len(_PERSON_FRAMES))
        text = _PERSON_FRAMES[f].format(n=rng.choice(_NAMES), t=rng.choice(_THINGS), p=rng.choice(("summer", "year")),
                                        f=rng.choice(_FIRMS))
        tmpl = f"person{f}"
    core = _cap(text)
    tags = [tmpl]
    return GeneratedText(_style(core, rng, tags), "seed-style", "/".join(tags), core=core)


_SEED_VPS = (
    "bake bread", "grow tomatoes", "learn a new language", "train for a marathon", "save money for a house",
    "plan a wedding", "repair a bicycle", "write a love letter", "build a treehouse", "teach a dog tricks",
    "keep food fresh without a fridge", "make candles", "brew beer at home", "sew their own clothes",
    "find a good job", "keep warm in winter", "travel across the ocean", "send messages over long distances",
    "clean their teeth", "make soap", "care for newborn babies", "build houses", "paint portraits",
    "record music", "study for exams", "make friends in a new city", "cut hair", "fix a leaking roof",
    "navigate without a map", "celebrate the new year", "preserve fruit", "make paper", "raise chickens",
    "start a small business", "get cheaper flights", "organise a protest march peacefully",
    "vote in local elections", "recycle old phones", "learn to code", "make cheese", "carve wood",
)


def mixed_benign_texts(n: int, seed: int) -> list[str]:
    """``n`` distinct benign texts of every generator here (ordinary, alarming-but-harmless, about the
    picture, seed-corpus phrasings), in equal shares: the benign class of a text-only judge."""
    rng = random.Random(seed)
    makers = (benign_request, alarming_request, image_request, seed_style_request)
    out: dict[str, None] = {}
    for attempt in range(20 * n):
        if len(out) >= n:
            break
        out.setdefault(makers[attempt % len(makers)](rng).text, None)
    return list(out)


# Long benign requests: a task over a passage (what assistants are asked all day), and persona set-ups. Without
# them a guard learns "long text -> jailbreak" from the long jailbreak prompts of the harmful corpora.
_PASSAGE_TASKS = (
    "Summarise the following text in two sentences:", "Fix the grammar and spelling in this paragraph:",
    "Translate the passage below into German.", "Rewrite this for a ten-year-old reader:",
    "Extract the key points from the text as a bulleted list:", "Write a catchy title for this article:",
    "What is the main argument of the following passage?", "Turn this text into three quiz questions:",
    "Classify the tone of this text as formal, neutral or casual:", "Shorten this to under 50 words:",
    "Find any factual claims in this text that should be checked:", "Paraphrase the paragraph without changing its meaning:",
    "Proofread this and list every change you make:", "Write a reply email based on this message:",
    "Explain the technical terms used in the following text:", "Make this paragraph sound more friendly:",
)
_PERSONAS = (
    "You are a friendly travel agent.", "Act as a patient maths tutor for a 12-year-old.",
    "You are an experienced gardener who explains things simply.", "Pretend you are a museum guide.",
    "You are a strict but fair editor at a newspaper.", "Play the role of a chef in a busy Italian restaurant.",
    "You are a customer-support agent for an internet provider.", "Act as my personal fitness coach.",
    "You are a historian specialising in ancient Rome.", "Imagine you are a librarian helping a student.",
    "You are a career counsellor.", "Act like a pirate telling a bedtime story.",
    "You are a senior Python developer reviewing code.", "Pretend to be a weather presenter on TV.",
)
_PERSONA_RULES = ("Stay in character for the whole conversation.", "Keep your answers short and kind.",
                  "Ask me one question at a time.", "Always answer in British English.",
                  "Use simple words and give examples.", "Never break character, even if I ask you to.", "")


def _passages() -> list[str]:
    """Benign prose passages: paragraphs of the module docstrings of the Python standard library's top-level
    source files (read with ``ast``, nothing imported; the same text wherever this Python runs), 30-150 words."""
    import ast
    import sysconfig
    from pathlib import Path

    out = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for para in doc.split("\n\n"):
            words = para.split()
            if 30 <= len(words) <= 150 and not any(ch in para for ch in "{}>>>"):
                out.append(" ".join(words))
    return out


def long_benign_texts(n: int, seed: int) -> list[str]:
    """``n`` distinct long benign requests: a task over a passage, or a persona set-up with a benign request."""
    rng = random.Random(seed)
    passages = _passages()
    out: dict[str, None] = {}
    for _ in range(20 * n):
        if len(out) >= n:
            break
        if passages and rng.random() < 0.6:
            text = f"{rng.choice(_PASSAGE_TASKS)} {rng.choice(passages)}"
        else:
            text = " ".join(p for p in (rng.choice(_PERSONAS), rng.choice(_PERSONA_RULES),
                                        benign_request(rng).text) if p)
        out.setdefault(text, None)
    return list(out)
