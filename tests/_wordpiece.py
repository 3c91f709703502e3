"""A BERT-style WordPiece ``tokenizer.json`` over a given vocabulary, for tiny test encoders."""
from __future__ import annotations


def save_wordpiece_tokenizer(tokens, path) -> dict[str, int]:
    """Write a lower-casing BERT tokenizer ([CLS] $A [SEP]) over ``tokens`` to ``path``; returns its vocab."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    tok.save(str(path))
    return vocab
