"""--protocol paper: resize to 256, keep the centre 224 (images and masks alike), as
the PaDiM and PatchCore papers; in every key, the protocol line and the model folder,
and honoured wherever a model scores images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from iadbench.errors import InputError
from iadbench.images import load_image, load_mask, prepare_image
from iadbench.plugins import get_registry
from iadbench.runner.plan import PROTOCOLS, DatasetEntry, DetectorEntry, Plan, expand
from iadbench.visual.overlay import place_map

CROP = PROTOCOLS["paper"]


def _reference(arr: np.ndarray) -> np.ndarray:
    """torchvision's Resize(256) + CenterCrop(224) on a square image, by hand: PIL
    bilinear to 256 x 256, then rows and columns 16..240."""
    big = np.asarray(Image.fromarray(arr).resize((256, 256), Image.BILINEAR))
    return big[16:240, 16:240]


def test_images_and_masks_are_cropped_as_the_papers(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    np.testing.assert_array_equal(prepare_image(arr, (224, 224), CROP), _reference(arr))
    # a mask square that lies wholly in the cropped-away border vanishes, one in the centre stays
    mask = np.zeros((256, 256), np.uint8)
    mask[0:10, 0:10] = 255
    mask[120:136, 120:136] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(tmp_path / "i.png")
    cropped = load_mask(tmp_path / "m.png", (224, 224), CROP)
    assert cropped.shape == (224, 224) and not cropped[:8, :8].any()
    assert cropped[104:120, 104:120].all() and cropped.sum() == 16 * 16
    assert load_image(tmp_path / "i.png", (224, 224), CROP).shape == (224, 224, 3)
    # crop 1 is the whole image resized, as before
    np.testing.assert_array_equal(prepare_image(arr, (64, 64)),
                                  np.asarray(Image.fromarray(arr).resize((64, 64), Image.BILINEAR)))


def test_a_map_goes_back_to_the_window_it_came_from():
    amap = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    back = place_map(amap, (64, 64), CROP)
    top = (64 - 56) // 2
    assert back.shape == (64, 64)
    assert np.all(back[:top] == 1) and np.all(back[:, :top] == 1)  # unseen border: the map's minimum
    assert back[top:top + 56, top:top + 56].max() == pytest.approx(16, abs=0.5)


def test_the_paper_protocol_sets_224_and_enters_every_key():
    registry = get_registry()
    base = Plan([DetectorEntry("padim"), DetectorEntry("pixel_gaussian", {"input_size": 128})],
                [DatasetEntry("factory", ["bottle"])])
    paper = Plan([DetectorEntry("padim"), DetectorEntry("pixel_gaussian", {"input_size": 128})],
                 [DatasetEntry("factory", ["bottle"])], protocol="paper")
    default_cells = {c.detector: c for c in expand(base, registry, lambda _: ["bottle"])}
    paper_cells = {c.detector: c for c in expand(paper, registry, lambda _: ["bottle"])}
    assert paper_cells["padim"].params["input_size"] == 224 and default_cells["padim"].params["input_size"] == 256
    assert paper_cells["pixel_gaussian"].params["input_size"] == 128  # a size the plan gives stands
    assert all(paper_cells[d].protocol == "paper" and paper_cells[d].key != default_cells[d].key for d in paper_cells)
    with pytest.raises(InputError, match="not one of default, paper"):
        expand(Plan([DetectorEntry("padim")], [DatasetEntry("factory")], protocol="papers"), registry,
               lambda _: ["bottle"])


def test_a_paper_model_folder_predicts_through_its_crop(tmp_path):
    from iadbench.model.fit import fit_model, save_model
    from iadbench.model.folder import load_model
    from iadbench.model.use import predict_images
    from iadbench.types import Sample, Split

    rng = np.random.default_rng(1)
    paths = []
    for i in range(8):
        img = np.full((80, 80, 3), 100, np.uint8)
        img[:8] = rng.integers(0, 256, (8, 80, 3))  # noise only in the border the crop drops
        Image.fromarray(img).save(tmp_path / f"g{i}.png")
        paths.append(tmp_path / f"g{i}.png")
    spec = get_registry().detector("pixel_gaussian")
    split = Split("own", "c", [Sample(p) for p in paths], [])
    fitted = fit_model(spec, {**spec.params, "input_size": 56}, split, seed=0, holdout_fraction=0.25,
                       threshold_rule="max", threads=1, workdir=tmp_path / "w", predict_batch=4, crop=CROP)
    save_model(fitted, tmp_path / "model", {})
    model = load_model(tmp_path / "model")
    assert model.crop == pytest.approx(CROP)
    probe = np.full((80, 80, 3), 100, np.uint8)
    border_defect = probe.copy()
    border_defect[:4] = 255  # in the border: the model never sees it
    (same, border) = predict_images(model, [probe, border_defect])
    assert border.score == pytest.approx(same.score)
    assert border.map.shape == (80, 80)
