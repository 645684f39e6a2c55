"""PaDiM's artifact in its two forms: the training embeddings while there are no more
images than channels, else the covariance's lower triangle. Either predicts exactly as
the fitted model did; folders of the earlier forms still load; an update from the
embeddings form equals a fit of the union."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from iadbench.api import FitContext, InputError
from iadbench.artifacts import load_detector
from iadbench.plugins import load_registry
from iadbench_padim.detector import Padim

from .conftest import synthetic_objects


def fitted(n_images: int, n_features: int) -> tuple[Padim, np.ndarray]:
    det = Padim(input_size=64, n_features=n_features)
    det.fit(synthetic_objects(n_images, 64), FitContext(seed=3))
    return det, synthetic_objects(4, 64, seed=9, defect=True)


def saved_keys(det: Padim, folder) -> set[str]:
    det.save(folder)
    return set(load_file(folder / "model.safetensors"))


@pytest.mark.parametrize(("n_images", "n_features", "form"), [(5, 24, "embeddings"), (30, 6, "cov_tril")])
def test_the_smaller_form_is_saved_and_predicts_bit_identically(tmp_path, n_images, n_features, form):
    det, test = fitted(n_images, n_features)
    before = det.predict(test)
    keys = saved_keys(det, tmp_path / "m")
    assert form in keys and not ({"embeddings", "cov_tril"} - {form}) & keys
    back = load_detector(tmp_path / "m", load_registry())
    after = back.predict(test)
    np.testing.assert_array_equal(before.scores, after.scores)
    np.testing.assert_array_equal(before.maps, after.maps)
    assert torch.equal(back.inv_cov, det.inv_cov)


def test_embeddings_are_smaller_than_the_triangle_they_replace(tmp_path):
    # 5 images x 24 channels float32 a position, against 24 x 25 / 2 float64
    det, _ = fitted(5, 24)
    tensors = det.state_tensors()
    per_position = tensors["embeddings"][0].numel() * 4
    assert per_position == 5 * 24 * 4 < 24 * 25 // 2 * 8
    det.train_emb = None  # the triangle form, as a fit with more images would save
    det.save(tmp_path / "tril")
    det2, _ = fitted(5, 24)
    det2.save(tmp_path / "emb")
    size = {f: (tmp_path / f / "model.safetensors").stat().st_size for f in ("tril", "emb")}
    assert size["emb"] < size["tril"]


def test_folders_of_the_earlier_forms_still_load(tmp_path):
    det, test = fitted(5, 24)
    expected = det.predict(test).scores
    det.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    # version 4 before this change: the covariance's triangle and the image count
    save_file({"channel_idx": det.channel_idx, "mean": det.mean64, "cov_tril": det.cov_tril,
               "n_images": torch.tensor([5])}, weights)
    np.testing.assert_array_equal(load_detector(tmp_path / "m", load_registry()).predict(test).scores, expected)
    # older still: the inverse covariance itself
    save_file({"channel_idx": det.channel_idx, "mean": det.mean, "inv_cov": det.inv_cov}, weights)
    np.testing.assert_array_equal(load_detector(tmp_path / "m", load_registry()).predict(test).scores, expected)


def test_a_folder_with_neither_form_is_one_clear_error(tmp_path):
    det, _ = fitted(5, 24)
    det.save(tmp_path / "m")
    save_file({"channel_idx": det.channel_idx, "mean": det.mean64}, tmp_path / "m" / "model.safetensors")
    with pytest.raises(InputError, match="lacks.*embeddings or cov_tril"):
        load_detector(tmp_path / "m", load_registry())
    save_file({"channel_idx": det.channel_idx, "mean": det.mean64, "embeddings": torch.zeros(3, 5, 24)},
              tmp_path / "m" / "model.safetensors")
    with pytest.raises(InputError, match="embeddings .* do not match"):
        load_detector(tmp_path / "m", load_registry())


def test_update_from_the_embeddings_form_equals_a_fit_of_the_union(tmp_path):
    a, b = synthetic_objects(5, 64, seed=1), synthetic_objects(3, 64, seed=2)
    test = synthetic_objects(4, 64, seed=9, defect=True)
    det = Padim(input_size=64, n_features=24)
    det.fit(a, FitContext(seed=3))
    det.save(tmp_path / "m")
    loaded = load_detector(tmp_path / "m", load_registry())
    loaded.update(b, FitContext(seed=3))
    union = Padim(input_size=64, n_features=24)
    union.fit(np.concatenate([a, b]), FitContext(seed=3))
    assert loaded.n_images == 8 and "embeddings" in loaded.state_tensors()
    np.testing.assert_allclose(loaded.predict(test).scores, union.predict(test).scores, rtol=1e-5)
    # and the updated model, saved and loaded, predicts as it did
    loaded.save(tmp_path / "u")
    np.testing.assert_array_equal(load_detector(tmp_path / "u", load_registry()).predict(test).scores,
                                  loaded.predict(test).scores)
