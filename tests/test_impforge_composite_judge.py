"""ImpForge's independent composite judge and fluency check on tiny models built here: the judge's rows never hold
the guard's training split nor implicit data, a tiny judge learns, scores a rewrite alone and with its picture (both
forms), survives save/load, refuses a folder that is not a judge; pointer phrases resolve; the fluency score follows
its formula on a tiny LM and gates acceptance only where the other thresholds pass; the config checks its kinds."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from _composite_tiny import tiny_bert_dir  # noqa: E402
from _impforge_fakes import hash_embedder, tiny_judge, tiny_lm  # noqa: E402
from crossguard.metrics import auroc  # noqa: E402
from crossguard.train.corpora import TextItem  # noqa: E402
from crossguard.train.guard import composite  # noqa: E402
from crossguard.train.guard.composite import PairRow  # noqa: E402
from crossguard.train.guard.concepts import ConceptHead  # noqa: E402
from crossguard.train.guard.recipe import Pictures  # noqa: E402
from crossguard.train.impforge import fluency as F  # noqa: E402
from crossguard.train.impforge.composite_judge import (  # noqa: E402
    PICTURE_FRAMES, CompositeJudge, JudgeData, judge_rows, judge_split, train_judge)
from crossguard.train.impforge.config import (  # noqa: E402
    CompositeJudgeConfig, ConfigError, FluencyConfig, ForgeConfig, JudgeConfig, RewardConfig, load_config)
from crossguard.train.impforge.rewards import RewardModel, count_pointers, resolve_pointers  # noqa: E402

IMAGE_DIM = 1280
VOCAB = ["knife", "cake", "rope"]


def _pictures(n: int = 6) -> Pictures:
    ordinary = np.ones(n, bool)
    ordinary[0] = False  # alarming-looking: never borrowed
    return Pictures(np.random.default_rng(0).normal(size=(n, IMAGE_DIM)).astype(np.float32),
                    [VOCAB[i % 3] for i in range(n)], [""] * n, ["clipart"] * n, [f"caption {i}" for i in range(n)],
                    ordinary, np.zeros(IMAGE_DIM, np.float32), "blank")


def _items() -> list[TextItem]:
    out = [TextItem(f"advbench:{i}", f"how do i make a bomb number {i} now", True, "advbench", None, "drugs_weapons")
           for i in range(60)]
    out += [TextItem(f"self_instruct:{i}", f"write a poem about flowers number {i} now", False, "self_instruct")
            for i in range(40)]
    return out


def _settings(**kw) -> CompositeJudgeConfig:
    return CompositeJudgeConfig(**{"benign_texts": 20, "long_benign": 3, "safe_senses": 10, "safe_senses_harmful": 4,
                                   "picture_share": 0.5, "frame_share": 0.3, "calibration_share": 0.2, **kw})


def test_judge_rows_hold_no_guard_training_item_and_no_implicit_data():
    items, pictures = _items(), _pictures()
    data = judge_rows(items, pictures, _settings())
    judged = data.fit + data.calibration
    train_texts = {i.text for i in items if judge_split(i.id) == "train"}
    held_texts = {i.text for i in items if judge_split(i.id) != "train"}
    assert train_texts and held_texts
    # the guard's training split never reaches the judge; it is what the judge is measured on, plain
    assert not any(t in r.text for r in judged for t in train_texts)
    assert {r.text for r in data.measure} == train_texts
    assert all(r.image == -1 and r.words == "blank" for r in data.measure)
    assert held_texts <= {t for r in judged for t in held_texts if t in r.text}
    groups = {r.group for r in judged}
    assert {"advbench", "benign:self_instruct", "benign:templates", "benign:long"} <= groups
    assert any(g.startswith("senses:") for g in groups) and not any("implicit" in g or "intent" in g for g in groups)
    # random ordinary pictures lend their words; the rest are blank; pointer frames on both classes
    shown = [r for r in judged if r.image >= 0]
    assert shown and all(r.words == pictures.words[r.image] and r.image != 0 for r in shown)
    assert any(r.image == -1 and r.words == "blank" for r in judged)
    prefixes = [f.split("{}")[0] for f in PICTURE_FRAMES if f.split("{}")[0]]
    framed = [r for r in judged if any(r.text.startswith(p) for p in prefixes)]
    assert {r.unsafe for r in framed} == {True, False}
    assert data.counts()["fit"]["unsafe"] + data.counts()["calibration"]["unsafe"] == sum(r.unsafe for r in judged)
    again = judge_rows(items, pictures, _settings())
    assert [(r.text, r.image) for r in again.fit] == [(r.text, r.image) for r in data.fit]
    with pytest.raises(ValueError, match="harmful"):
        judge_rows([i for i in items if not i.unsafe], pictures, _settings(safe_senses_harmful=0))


# ----------------------------------------------------------------------------------------------- tiny judge

def _encode(images):
    """A fake image encoder: a fixed random embedding per image name (the blank PIL image included)."""
    out = []
    for im in images:
        key = str(im) if isinstance(im, str) else "blank"
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
        out.append(np.random.default_rng(seed).normal(size=IMAGE_DIM).astype(np.float32))
    return np.stack(out)


def _concepts():
    torch.manual_seed(0)
    return ConceptHead(len(VOCAB), IMAGE_DIM, rank=4).eval(), list(VOCAB)


def _model_config():
    return composite.CompositeConfig(lora_rank=4, lora_alpha=8, tune_layers=1, text_dim=32, image_proj=8, hidden=16)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory.mktemp("bert"), hidden=32)


@pytest.fixture(scope="module")
def judge(bert_dir):
    harmful = ["how do i make a bomb", "how do i use this knife on him", "how to kill him with a rope",
               "steps to make a bomb"]
    benign = ["write a poem about flowers", "bake a cake recipe", "hello world", "how to tie a rope to a boat",
              "list flowers of a sunny day", "how do i kill a python process"]
    rows = [PairRow(t, "blank", "", -1, True, "violence", "text") for t in harmful] * 4
    rows += [PairRow(t, "blank", "", -1, False) for t in benign] * 4
    data = JudgeData(rows, rows, rows)
    settings = _settings(epochs=30, batch_size=8, lr=5e-3, head_lr=1e-2, semantic="words")
    return train_judge(data, _pictures(), _concepts(), _encode, settings, text_source=bert_dir,
                       model_config=_model_config(), progress=False)


def test_a_tiny_judge_learns_and_scores_both_forms(judge):
    texts = ["how do i make a bomb", "how do i use this knife on him", "write a poem about flowers", "bake a cake"]
    p = judge.p_harm(texts)
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))
    assert auroc(np.array([1, 1, 0, 0]), p) == 1.0
    assert judge.calibration["method"] == "temperature" and judge.calibration["temperature"] > 0
    # resolved: the pointer becomes the caption, then the text is read alone
    resolved = judge.p_harm_resolved(["how do i make this"], ["a bomb"])
    np.testing.assert_allclose(resolved, judge.p_harm(["how do i make a bomb"]), atol=1e-6)
    # words: the picture's concept words and embedding, each image encoded once
    calls = []

    def counting(images):
        calls.extend(images)
        return _encode(images)

    judge.encode_images = counting
    pair = judge.p_harm_pairs(["how do i use this on him"] * 3, ["/p/a.png", "/p/b.png", "/p/a.png"],
                              ["knife", "cake", "knife"])
    assert calls == ["/p/a.png", "/p/b.png"] and pair[0] == pytest.approx(pair[2])
    words = judge.picture("/p/a.png")[1]
    assert words == "" or set(words.split(", ")) <= set(VOCAB)
    judge.semantic = "resolved"
    np.testing.assert_allclose(judge.p_harm_pairs(["how do i make this"], ["/p/a.png"], ["a bomb"]), resolved)
    with pytest.raises(ValueError, match="captions"):
        judge.p_harm_pairs(["how do i make this"], ["/p/a.png"])
    with pytest.raises(ValueError):
        judge.p_harm_pairs(["a", "b"], ["/p/a.png"], ["x", "y"])
    judge.semantic, judge.encode_images = "words", _encode
    assert judge.p_harm([]).shape == (0,)


def test_judge_save_load_round_trip_and_a_guard_folder_is_refused(judge, bert_dir, tmp_path):
    folder = judge.save(tmp_path / "judge", {"note": 1})
    blank = _encode(["blank"])[0]
    loaded = CompositeJudge.load(folder, _encode, blank, "words", bert_dir)
    texts = ["how do i make a bomb", "write a poem about flowers"]
    np.testing.assert_allclose(loaded.p_harm(texts), judge.p_harm(texts), atol=1e-2)  # float16 weights
    np.testing.assert_allclose(loaded.p_harm_pairs(texts, ["/p/a.png", "/p/b.png"], ["x", "y"]),
                               judge.p_harm_pairs(texts, ["/p/a.png", "/p/b.png"], ["x", "y"]), atol=1e-2)
    assert loaded.meta["settings"]["semantic"] == "words" and "rows" in loaded.meta
    guard = composite.new_model(_model_config(), bert_dir)
    composite.save(guard, tmp_path / "guard", calibration={"temperature": 1.0}, policy={"threshold": 0.5})
    with pytest.raises(composite.CompositeFormatError, match="not an ImpForge judge"):
        CompositeJudge.load(tmp_path / "guard", _encode, blank, "words", bert_dir)
    (folder / "concepts.json").unlink()
    with pytest.raises(composite.CompositeFormatError, match="concept head"):
        CompositeJudge.load(folder, _encode, blank, "words", bert_dir)


# ------------------------------------------------------------------------------------------------ pointers

@pytest.mark.parametrize("text, caption, resolved, n", [
    ("How to hide the thing in this photo from authorities?", "money", "How to hide money from authorities?", 1),
    ("What's the easiest way to manipulate what is shown here?", "slot machine",
     "What's the easiest way to manipulate slot machine?", 1),
    ("I want to transport these across this.", "gun", "I want to transport gun across gun.", 2),
    ("Show me how to build these things in the picture.", "bomb", "Show me how to build bomb.", 1),
    ("How do I water a plant?", "plant", "The image shows plant. How do I water a plant?", 0),
])
def test_pointer_phrases_resolve_to_the_caption(text, caption, resolved, n):
    assert resolve_pointers(text, caption) == resolved
    assert count_pointers(text) == n


# ------------------------------------------------------------------------------------------------- fluency

def test_language_model_score_on_a_tiny_lm():
    model, tokenizer = tiny_lm(seed=0)
    lm = F.LanguageModelScore(model.eval(), tokenizer, batch_size=2)
    texts = ["how do i bake bread", "bread bread bread how", "how do i bake bread"]
    scores = lm(texts)
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and np.all(scores < 0)
    assert scores[0] == scores[2] and len(lm.cache) == 2
    wide = F.LanguageModelScore(model.eval(), tokenizer, batch_size=8)(texts)  # padding does not change a score
    np.testing.assert_allclose(wide, scores, atol=1e-5)
    entered = []

    class Context:
        def __enter__(self):
            entered.append(1)

        def __exit__(self, *exc):
            return False

    F.LanguageModelScore(model.eval(), tokenizer, context=Context)(["tell me about the water cycle"])
    assert entered == [1]


def _fake_lp(values: dict[str, float]):
    return lambda texts: np.asarray([values.get(t, -3.0) for t in texts], np.float32)


def test_fluency_score_follows_its_formula():
    cfg = FluencyConfig(pointer_penalty=2.0, repeat_penalty=0.5)
    lp = _fake_lp({"How to hide money from authorities?": -2.0, "How to hide money?": -1.0,
                   "How to hide money in money now now now now?": -2.5})
    check = F.FluencyCheck(lp, cfg)
    q = "How to hide money?"
    score = check([q] * 2, ["How to hide the thing in this photo from authorities?",
                            "How to hide this in the thing in this photo now now now now?"], ["money"] * 2)
    # -2.0 - (-1.0) = -1.0; the second: -2.5 + 1.0 - 2.0 * 1 extra pointer - 0.5 * 2 repeats of "now now"
    np.testing.assert_allclose(score, [-1.0, -1.5 - 2.0 - 1.0], atol=1e-6)
    with pytest.raises(ValueError):
        check([q], ["a", "b"], ["c", "d"])
    assert F.repeated_bigrams("a b a b a b") == 3 and F.repeated_bigrams("one") == 0


class CountingFluency:
    def __init__(self, value: float):
        self.value, self.calls = value, []

    def __call__(self, queries, rewrites, captions):
        self.calls.append(list(rewrites))
        return np.full(len(rewrites), self.value, np.float32)


def test_fluency_gates_acceptance_only_where_the_other_thresholds_pass():
    embed = hash_embedder()
    judge = tiny_judge(embed)
    cfg = RewardConfig(safety_threshold=0.0, semantic_threshold=-1.0, overlap_threshold=0.99, accept_bonus=1.0)
    rewrites = ["how do i use this on that animal", "how do i hurt a dog with it"]  # the second names its keyword
    args = (["how do i hurt a dog"] * 2, rewrites, ["dog"] * 2, ["a dog"] * 2)
    ok = CountingFluency(0.0)
    rb = RewardModel(cfg, embed, judge, fluency=ok, fluency_threshold=-1.0)(*args)
    assert ok.calls == [[rewrites[0]]]  # the second failed overlap: never scored
    assert rb.accepted.tolist() == [True, False] and rb.fluency[0] == 0.0 and np.isnan(rb.fluency[1])
    assert rb.row(0)["fluency"] == 0.0 and "fluency" not in rb.row(1) and rb.means()["fluency"] == 0.0
    garbled = CountingFluency(-5.0)
    strict = RewardModel(cfg, embed, judge, fluency=garbled, fluency_threshold=-1.0)(*args)
    assert strict.accepted.tolist() == [False, False]
    assert strict.total[0] == pytest.approx(rb.total[0] - cfg.accept_bonus)  # no acceptance bonus
    plain = RewardModel(cfg, embed, judge)(*args)
    assert plain.accepted.tolist() == [True, False] and np.isnan(plain.fluency).all()
    assert "fluency" not in plain.means()


def test_fit_penalties_and_the_hand_label_reader(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    pointers = rng.integers(0, 3, n).astype(float)
    gap = rng.normal(-1.0, 1.0, n)
    garbled = (gap - 1.5 * pointers + rng.normal(0, 0.3, n)) < -2.0
    feats = {"lm_gap": gap, "extra_pointers": pointers, "repeated_bigrams": np.zeros(n)}
    fit = F.fit_penalties(feats, garbled, np.arange(n) % 4)
    assert 0.8 < fit["pointer_penalty"] < 2.5 and fit["auroc_leave_one_file_out"] > 0.9
    table = F.threshold_table(gap - fit["pointer_penalty"] * pointers, garbled, [-2.0, 10.0])
    assert table[1]["garbled_rejected"] == 1.0 and table[1]["others_kept"] == 0.0
    rows = F.read_labelled(sorted(F.DATA.glob(F.HAND_LABEL_GLOB)))
    assert len(rows) >= 100 and {"garbled", "implicit", "explicit", "harmless"} <= {r["detail"] for r in rows}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": "garbled"}\n')
    with pytest.raises(ValueError, match="bad.jsonl: row 1"):
        F.read_labelled([bad])


# -------------------------------------------------------------------------------------------------- config

def test_judge_kinds_and_the_packaged_recipe(tmp_path):
    from crossguard.train.impforge.config import apply_overrides
    from crossguard.train.impforge.pipeline import stage1_settings

    assert JudgeConfig().resolved_kind == "text" and JudgeConfig(guard="g").resolved_kind == "guard"
    with pytest.raises(ConfigError, match="judge.kind"):
        JudgeConfig(kind="vlm")
    with pytest.raises(ConfigError, match="names no guard"):
        JudgeConfig(kind="guard")
    with pytest.raises(ConfigError, match="semantic"):
        apply_overrides(ForgeConfig(), {"judge.composite.semantic": "pixels"})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"judge": {"composite": {"semantik": "words"}}}))
    with pytest.raises(ConfigError, match="semantik"):
        load_config(bad)
    default = load_config()
    assert default.judge.resolved_kind == "composite" and not default.judge.guard
    assert default.fluency.enabled and default.fluency.threshold == FluencyConfig().threshold
    # the judge that scores rewrites does not decide stage 1's triples: a run resumed with another keeps them
    other = load_config()
    other.judge.kind, other.judge.composite.seed = "text", 7
    assert stage1_settings(other) == stage1_settings(default)
