"""A tiny composite guard saved like a trained one (``composite.save`` + ``save_concepts``): a 2-block BERT with
hidden size 384 (the graphs' contract) over a WordPiece vocabulary, LoRA on its top block, a ``CompositeHead`` and a
pool-only ``ConceptHead`` (the ImageNet block would be the packaged classifier)."""
from __future__ import annotations

from pathlib import Path

import torch
from _export_tiny import WORDS, HEAD_CONFIG, TinyImageEncoder
from _wordpiece import save_wordpiece_tokenizer

POOL_WORDS = ("pill", "knife", "cake", "dog", "sign", "car")
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# the words of the composite model tests' toy rules
RULE_WORDS = tuple("how do i use this on him make a bomb cake knife bake recipe picture what is the in photo of with "
                   "steps to kill process python weeds write poem sunny day flowers list hello world rope tie boat".split())


def tiny_bert_dir(folder: Path, hidden: int = 384) -> Path:
    """A local BERT encoder folder (config.json, safetensors weights, tokenizer.json) ``backbones.text_encoder``
    reads: ``hidden`` wide (384: the graphs' contract), 2 blocks, 2 heads, positions for the composite sequence's
    124 tokens."""
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]  # also: >= 100 ids, as GraphSetting.random_inputs needs
    vocab = save_wordpiece_tokenizer(list(dict.fromkeys([*SPECIAL, *WORDS, *RULE_WORDS, *POOL_WORDS, ",", ".", "?",
                                                         "!", "'", *pieces])), folder / "tokenizer.json")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=160, type_vocab_size=2)
    BertModel(config).eval().save_pretrained(folder)
    return folder


def save_tiny_composite(head_dir: Path, bert_dir: Path, image_encoder: torch.nn.Module) -> Path:
    """A composite head folder over ``bert_dir``: random LoRA deltas (so merging them matters), a head whose
    unsafe logit spreads over both verdicts, and a peaked concept head over ``POOL_WORDS`` standardised on
    ``image_encoder``'s embeddings of generated images (so different pictures get different words)."""
    from crossguard.export.samples import generated_image
    from crossguard.runtime.preprocess import images_to_batch

    from crossguard.train.guard import composite
    from crossguard.train.guard.concepts import ConceptHead, save_concepts

    torch.manual_seed(1)
    model = composite.new_model(composite.CompositeConfig(lora_rank=4, lora_alpha=8, tune_layers=1, hidden=32,
                                                          image_proj=16, dropout=0.0), text_source=bert_dir)
    with torch.no_grad():
        for name, p in model.text_encoder.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
        model.head.unsafe.weight.mul_(20.0)
    composite.save(model.eval(), head_dir, calibration=dict(HEAD_CONFIG["calibration"]),
                   policy=dict(HEAD_CONFIG["policy"]))
    concepts = ConceptHead(len(POOL_WORDS), rank=8)
    with torch.no_grad():
        _, embeddings = image_encoder(torch.from_numpy(images_to_batch([generated_image(i, 3) for i in range(16)])))
        concepts.mean.copy_(embeddings.mean(0))
        concepts.std.copy_(embeddings.std(0).clamp(min=1e-4))
        concepts.up.weight.mul_(4.0)  # peaked: the top words pass the composition's 0.15 bar
    save_concepts(concepts.eval(), list(POOL_WORDS), head_dir)
    return head_dir


def tiny_composite_folder(folder: Path) -> tuple[Path, torch.nn.Module, Path]:
    """(BERT folder, image encoder, head folder): a tiny composite guard saved under ``folder`` (``bert``,
    ``head``) over a seeded ``TinyImageEncoder``."""
    bert = tiny_bert_dir(folder / "bert")
    torch.manual_seed(0)
    encoder = TinyImageEncoder().eval()
    return bert, encoder, save_tiny_composite(folder / "head", bert, encoder)


def export_tiny_composite(folder: Path) -> Path:
    """A tiny composite head saved under ``folder`` and exported fp32 (``export_modules``, fake OCR files) to
    ``folder/bundle``; returns the bundle folder."""
    from _export_tiny import fake_ocr_models

    from crossguard.export.pipeline import ExportConfig, export_modules, read_concept_vocabulary
    from crossguard.export.samples import fixed_samples
    from crossguard.export.settings import COMPOSITE_GUARD, architecture_of, build_modules
    from crossguard.train.guard.model import read_guard_json

    torch.set_num_threads(2)
    bert, image_encoder, head = tiny_composite_folder(folder)
    modules = build_modules(architecture_of(head), head, given={"image_encoder": image_encoder}, text_source=bert)
    config = ExportConfig(out=folder / "bundle", precisions=("fp32",), ocr_graphs="original")
    return export_modules(modules, read_guard_json(head), bert / "tokenizer.json", fake_ocr_models(folder),
                          fixed_samples(6), config, log=lambda s: None, architecture=COMPOSITE_GUARD,
                          concept_vocabulary=read_concept_vocabulary(head)).bundle
