"""A tiny BERT text encoder folder (WordPiece tokenizer + 2-layer BertModel) for composite-guard tests."""
from __future__ import annotations

from pathlib import Path

WORDS = ("how do i use this on him make a bomb cake knife bake recipe picture what is the in photo of with "
         "steps to kill process python weeds write poem sunny day flowers list hello world rope tie boat").split()


def tiny_bert_dir(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    import transformers

    from _wordpiece import save_wordpiece_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = save_wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS, ",", ".", "?"],
                                     folder / "tokenizer.json")
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=160)
    transformers.BertModel(config).save_pretrained(folder)
    return folder
