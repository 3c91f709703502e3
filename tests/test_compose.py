"""crossguard.runtime.compose: the three-part sequence the composite guard reads, token budgets, picture words."""
from __future__ import annotations

import numpy as np
import pytest

from _composite_tiny import RULE_WORDS
from _wordpiece import save_wordpiece_tokenizer
from crossguard.runtime.compose import CompositeTokenizer, Composition, head_and_tail, picture_words


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    save_wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *RULE_WORDS, ",", ".", "?"], path)
    return path


def test_head_and_tail_keeps_both_ends():
    assert head_and_tail(list(range(10)), 20) == list(range(10))
    assert head_and_tail(list(range(10)), 4) == [0, 1, 8, 9]
    assert head_and_tail(list(range(10)), 5) == [0, 1, 2, 8, 9]
    assert head_and_tail(list(range(10)), 1) == [0]


def test_sequence_is_user_words_ocr_with_separators(tokenizer_file):
    tok = CompositeTokenizer(tokenizer_file, Composition(user_tokens=4, word_tokens=2, ocr_tokens=3))
    (seq,) = tok.sequences(["how do i use this on him"], ["knife , rope , boat"], ["steps to make a bomb"])
    cls, sep = tok.cls_id, tok.sep_id
    assert seq[0] == cls and seq.count(sep) == 3 and seq[-1] == sep
    first, second = seq.index(sep), seq.index(sep, seq.index(sep) + 1)
    user, words, ocr = seq[1:first], seq[first + 1:second], seq[second + 1:-1]
    vocab = tok._tok.get_vocab()
    assert user == [vocab["how"], vocab["do"], vocab["on"], vocab["him"]]  # head and tail of the user text
    assert words == [vocab["knife"], vocab[","]] and len(ocr) == 3 and ocr[0] == vocab["steps"]


def test_batch_padding_and_fixed_length(tokenizer_file):
    comp = Composition(user_tokens=8, word_tokens=4, ocr_tokens=4)
    ids, mask = CompositeTokenizer(tokenizer_file, comp)(["hello", "how do i make a cake"], ["", "cake"], None)
    assert ids.dtype == np.int64 and ids.shape == mask.shape and ids.shape[1] == mask.sum(1).max()
    assert mask[0].sum() == 1 + 1 + 3  # [CLS] hello [SEP] [SEP] [SEP]
    ids, mask = CompositeTokenizer(tokenizer_file, comp, fixed_length=True)(["hello"], None, None)
    assert ids.shape == (1, comp.max_tokens) and mask.sum() == 5
    with pytest.raises(ValueError, match="picture-word"):
        CompositeTokenizer(tokenizer_file, comp)(["a", "b"], ["x"], None)


def test_picture_words_top_k_above_min_prob():
    vocab = ["knife", "cake", "rope", "boat"]
    probs = np.array([[0.6, 0.3, 0.05, 0.05], [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.25, 0.25]])
    comp = Composition(word_top_k=2, word_min_prob=0.2)
    assert picture_words(probs, vocab, comp) == ["knife, cake", "boat", "knife, cake"]
    assert picture_words(probs, vocab, Composition(word_top_k=0)) == ["", "", ""]


def test_composition_checks_its_fields():
    assert Composition.from_dict(Composition().to_dict()) == Composition()
    for bad in ({"user_tokens": 0}, {"word_tokens": -1}, {"word_min_prob": 2}, {"user_tokens": "64"},
                {"unknown": 1}, {"word_top_k": True}):
        with pytest.raises(ValueError):
            Composition.from_dict(bad)
