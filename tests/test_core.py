"""Core contracts: taxonomy, schemas, manifest reading/writing, the CLI table."""
from __future__ import annotations

import json

import pytest

from crossguard import taxonomy
from crossguard.cli import COMMANDS, main
from crossguard.manifest import ManifestError, read_manifest, write_manifest
from crossguard.schemas import KIND_TO_MODALITY, KINDS, MODALITIES, Sample, SchemaError, Verdict


def test_fourteen_domains_with_stable_ids():
    assert taxonomy.NUM_DOMAINS == 14
    assert [d.id for d in taxonomy.DOMAINS] == list(range(14))
    assert len(set(taxonomy.DOMAIN_NAMES)) == 14
    assert taxonomy.domain("self_harm").id == 10
    assert taxonomy.domain(13).name == "violence"
    with pytest.raises(KeyError, match="valid"):
        taxonomy.domain("nope")


def test_every_mapping_targets_a_domain_or_none():
    for source, table in taxonomy.MAPPINGS.items():
        for label, target in table.items():
            assert target is None or target in taxonomy.DOMAIN_NAMES, (source, label)


def test_beavertails_covers_all_domains_and_no_domain_labels_are_listed():
    assert set(taxonomy.BEAVERTAILS.values()) == set(taxonomy.DOMAIN_NAMES)
    assert set(taxonomy.NO_DOMAIN["figstep"]) == {"legal opinion", "financial advice", "health consultation"}
    assert taxonomy.map_label("figstep", "Legal Opinion") is None
    assert taxonomy.map_label("mlcommons", "S11") == "self_harm"
    assert taxonomy.map_label("garak_intent", "S004lewd") == "sexual_content"
    with pytest.raises(KeyError, match="no mapping"):
        taxonomy.map_label("figstep", "cooking")
    with pytest.raises(KeyError, match="unknown label source"):
        taxonomy.map_label("nosuch", "x")


def _sample(**kw):
    d = dict(id="a", image="x.png", text="t", label="unsafe", kind="implicit", domain="violence")
    d.update(kw)
    return d


def test_sample_validation():
    assert Sample.from_dict(_sample()).modality == "joint"
    assert Sample.from_dict(_sample(domain=None)).domain is None  # unsafe outside the 14 domains (advice)
    assert set(KIND_TO_MODALITY) == set(KINDS) and set(KIND_TO_MODALITY.values()) <= set(MODALITIES)
    for bad, msg in [
        (_sample(label="maybe"), "label"),
        (_sample(kind="weird"), "kind"),
        (_sample(label="safe"), "contradicts"),
        (_sample(domain="cooking"), "domain"),
        (_sample(text=3), "'text' must be str"),
        ({"id": "a"}, "missing field"),
    ]:
        with pytest.raises(SchemaError, match=msg):
            Sample.from_dict(bad)
    with pytest.raises(SchemaError, match="JSON object"):
        Sample.from_dict([1, 2])


def test_verdict_checks_and_serialises():
    v = Verdict(unsafe=True, score=0.9, threshold=0.5, domain="violence", domain_scores={"violence": 1.0},
                modality="joint", modality_scores={"joint": 1.0}, ocr_text="", backend="cpu", latency_ms=3.0)
    assert v.to_dict()["label"] == "unsafe" and "UNSAFE" in v.summary()
    with pytest.raises(SchemaError):
        Verdict(unsafe=True, score=1.5, threshold=0.5, domain=None, domain_scores={}, modality="joint",
                modality_scores={}, ocr_text="", backend="cpu", latency_ms=1.0)


def test_manifest_round_trip_and_bad_lines_by_number(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    samples = [Sample(**_sample(image=str(tmp_path / "images" / "a.png")))]
    path = tmp_path / "m.jsonl"
    assert write_manifest(path, samples) == 1
    assert json.loads(path.read_text())["image"] == "images/a.png"  # stored relative: the folder can move
    back = read_manifest(path)
    assert back[0].image == str(tmp_path / "images" / "a.png") and back[0].kind == "implicit"

    lines = [json.dumps(_sample(id="ok", image="images/a.png")), "{not json", "",
             json.dumps(_sample(id="ok", image="images/a.png")), json.dumps(_sample(id="b", image="gone.png")),
             json.dumps(_sample(id="c", kind="benign", label="safe", domain=None, image="images/a.png"))]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(path)
    numbers = [n for n, _ in e.value.errors]
    assert numbers == [2, 4, 5]
    assert "duplicate id" in str(e.value) and "image not found" in str(e.value)


def test_write_manifest_is_atomic_on_failure(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("old\n")

    def broken():
        yield Sample(**_sample())
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_manifest(path, broken())
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_cli_lists_commands_and_rejects_unknown(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    assert main(["nosuch"]) == 2


def test_atomic_dir_keeps_the_old_directory_when_the_block_fails(tmp_path):
    from crossguard.fileio import atomic_dir

    target = tmp_path / "bundle"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "a.txt").write_text("half")
            raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "v1"
    with atomic_dir(target) as d:
        (d / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temporary leftovers
