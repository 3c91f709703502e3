"""``crossguard bench stability``: the perturbations, the counting, and a run on a tiny composite bundle."""
import json
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from crossguard import augment as A
from crossguard.benchmarks import stability as S
from crossguard.benchmarks.cli import main as bench_main


def _photo(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def test_perturbations_keep_the_picture_and_change_the_pixels():
    img = _photo(0)
    assert A.crop_edges(img).size == (62, 46)
    assert np.array_equal(np.asarray(A.crop_edges(img, 2, "bottom_right")), np.asarray(img)[:46, :62])
    assert np.array_equal(np.asarray(A.crop_edges(img, 2, "top_left")), np.asarray(img)[2:, 2:])
    assert A.scale(img).size == (58, 43)
    resaved = A.jpeg_resave(img)
    assert resaved.size == img.size and resaved.mode == "RGB"
    assert not np.array_equal(np.asarray(resaved), np.asarray(img))
    assert A.crop_edges(Image.new("RGB", (1, 1))).size == (1, 1)  # never an empty picture


def test_small_change_is_seeded_by_its_key():
    img = _photo(1, (80, 60))
    same = [np.asarray(A.small_change(img, "k1")) for _ in range(2)]
    assert np.array_equal(*same)
    changed = [np.asarray(A.small_change(img, f"k{i}")) for i in range(12)]
    assert len({(c.shape, c.tobytes()) for c in changed}) > 3  # keys draw different changes
    assert all(c.shape[0] >= 48 and c.shape[1] >= 64 for c in changed)  # small: at most 8 px or 20 %


@dataclass
class _Verdict:
    score: float
    unsafe: bool
    picture_words: str


def _fake_screen(images, texts):
    """Score from the image's mean brightness; the word from whether it is dark."""
    out = []
    for img, text in zip(images, texts):
        p = float(np.asarray(img, np.float64).mean() / 255.0) * (0.5 if "What" in text else 1.0)
        out.append(_Verdict(p, p >= 0.5, "dark" if p < 0.25 else "light"))
    return out


def test_measure_counts_drift_flips_and_word_changes():
    images = [Image.new("RGB", (8, 8), (v, v, v)) for v in (102, 153)]  # means 0.4 and 0.6
    brighter = lambda img: Image.eval(img, lambda x: min(255, x + 51))  # +0.2
    result = S.measure(_fake_screen, images, ["What is this?", "Use it?"],
                       {"same": lambda img: img, "brighter": brighter}, progress=False)
    same, moved = result["same"], result["brighter"]
    assert same["pairs"] == moved["pairs"] == 4
    assert same["verdict_flips"] == 0 and same["logit_drift_max"] == 0.0 and same["words_changed"] == 0.0
    # "Use it?" on 0.4 -> 0.6 flips; "What" halves the scores: 0.2 -> 0.3 (no flip, word dark -> light)
    assert moved["verdict_flips"] == 1
    assert moved["words_changed"] == 0.5
    expected = abs(S.calibrated_logit(0.6) - S.calibrated_logit(0.4))
    assert moved["logit_drift_max"] == pytest.approx(max(expected, abs(S.calibrated_logit(0.8) - S.calibrated_logit(0.6)),
                                                         abs(S.calibrated_logit(0.3) - S.calibrated_logit(0.2)),
                                                         abs(S.calibrated_logit(0.4) - S.calibrated_logit(0.3))),
                                                     abs=1e-3)


def test_photo_paths_spread_over_the_folder(tmp_path):
    for i in range(10):
        _photo(i).save(tmp_path / f"p{i}.jpg")
    (tmp_path / "notes.txt").write_text("not a photo")
    picked = S.photo_paths(tmp_path, 3)
    assert [p.name for p in picked] == ["p0.jpg", "p4.jpg", "p9.jpg"]
    assert len(S.photo_paths(tmp_path, 50)) == 10
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        S.photo_paths(tmp_path / "empty", 3)


def test_cli_on_a_tiny_composite_bundle(tiny_composite_bundle, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        _photo(i, (96, 80)).save(photos / f"p{i}.jpg")
    out = tmp_path / "results"
    rc = bench_main(["stability", "--bundle", str(tiny_composite_bundle), "--photo-dir", str(photos),
                     "--photos", "2", "--results-dir", str(out), "--no-progress"])
    assert rc == 0
    result = json.loads((out / "stability.json").read_text())
    assert set(result["perturbations"]) == set(S.PERTURBATIONS)
    for m in result["perturbations"].values():
        assert m["photos"] == 2 and m["pairs"] == 2 * len(S.QUESTIONS) == len(m["drift"])
        assert 0.0 <= m["words_changed"] <= 1.0 and 0 <= m["verdict_flips"] <= m["pairs"]
    assert (out / "stability.png").stat().st_size > 0
    assert "verdict flips" in (out / "stability.md").read_text()
    from crossguard.benchmarks.report import regenerate
    assert "### Verdict stability" in regenerate(out).read_text()  # `crossguard bench report` shows it too
    assert bench_main(["stability", "--bundle", str(tiny_composite_bundle), "--photo-dir", str(tmp_path / "none"),
                       "--results-dir", str(out), "--no-progress"]) == 2
    assert bench_main(["stability", "--photos", "0", "--results-dir", str(out)]) == 2
