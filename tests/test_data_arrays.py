"""Built-in scikit-learn sets: shapes, splits, labels fitted to the loss,
filters, recorded preprocessing, and the errors a user can hit."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.config import config_from_dict
from dlcli.config.schema import Config
from dlcli.data import load_data
from dlcli.errors import ConfigError

MODEL = {"layers": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]}


def cfg_of(data: dict, loss=None, seed: int = 42, **extra) -> Config:
    d = {"seed": seed, "data": data, "model": MODEL, **extra}
    if loss is not None:
        d["compile"] = {"loss": loss}
    return config_from_dict(d)


def raw_cfg(data: dict, loss=None) -> Config:
    """A Config built by the schema alone, to reach load_data's own checks
    behind the config validator's."""
    d = {"data": data, "model": MODEL}
    if loss is not None:
        d["compile"] = {"loss": loss}
    return Config.model_validate(d)


def all_labels(ds) -> np.ndarray:
    return np.concatenate([y.numpy() for _, y in ds])


def all_inputs(ds) -> np.ndarray:
    return np.concatenate([x.numpy() for x, _ in ds])


def test_digits_images_raw_pixels_and_stratified_splits():
    b = load_data(cfg_of({"source": "digits", "batch_size": 64}))
    assert b.input_shape == (8, 8, 1)
    assert b.spec.pixel_range == [0.0, 16.0]
    assert b.class_names == [str(i) for i in range(10)]
    assert (b.num_train, b.num_val, b.num_test) == (1293, 144, 360)
    assert b.num_train + b.num_val + b.num_test == 1797
    x, y = next(iter(b.train))
    assert x.dtype.name == "float32" and y.dtype.name == "int32"
    assert x.shape == (64, 8, 8, 1)
    test_x = all_inputs(b.test)
    assert test_x.min() == 0.0 and test_x.max() == 16.0  # raw, not rescaled
    # Stratified: every digit is in the test split in about its share.
    counts = np.bincount(all_labels(b.test), minlength=10)
    assert counts.min() >= 33 and counts.max() <= 38


def test_splits_repeat_with_the_seed_and_differ_with_another():
    a = load_data(cfg_of({"source": "digits"}, seed=1))
    b = load_data(cfg_of({"source": "digits"}, seed=1))
    c = load_data(cfg_of({"source": "digits"}, seed=2))
    np.testing.assert_array_equal(all_inputs(a.test), all_inputs(b.test))
    assert not np.array_equal(all_inputs(a.test), all_inputs(c.test))
    # Training batches are reshuffled each epoch (an order per (seed,
    # epoch), the epoch set by the trainer), from the same seed.
    from dlcli.data.pipeline import set_epoch

    set_epoch(0)
    first = all_labels(a.train)
    set_epoch(1)
    second = all_labels(a.train)
    set_epoch(0)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.sort(second))
    np.testing.assert_array_equal(first, all_labels(b.train))


def test_val_and_test_are_disjoint_from_train():
    b = load_data(cfg_of({"source": "iris", "validation_split": 0.2, "test_split": 0.2}))
    rows = lambda ds: {tuple(np.round(r, 5).tolist()) for r in all_inputs(ds)}  # noqa: E731
    train, val, test = rows(b.train), rows(b.val), rows(b.test)
    # iris has a few duplicate flowers; splits share at most those.
    assert len(train & test) <= 2 and len(train & val) <= 2
    assert b.num_train + b.num_val + b.num_test == 150


def test_vectors_standardised_with_training_stats_recorded():
    b = load_data(cfg_of({"source": "wine", "validation_split": 0.0}))
    x = all_inputs(b.train)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-4)
    stats = b.spec.standardize
    assert len(stats.mean) == len(stats.std) == 13
    assert b.spec.features[0] == "alcohol"
    # The recorded stats turn the raw wine data into what training saw.
    from sklearn.datasets import load_wine

    raw = load_wine().data
    scaled = (raw - np.asarray(stats.mean)) / np.asarray(stats.std)
    nearest = np.abs(x[:, None, :] - scaled[None]).max(axis=-1).min(axis=1)
    assert nearest.max() < 1e-5  # every training row is a scaled raw row


@pytest.mark.parametrize(
    "loss, mode, y_shape, y_dtype",
    [
        ("sparse_categorical_crossentropy", "int", (16,), "int32"),
        ({"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}}, "int", (16,), "int32"),
        ("categorical_crossentropy", "onehot", (16, 3), "float32"),
        ("CategoricalFocalCrossentropy", "onehot", (16, 3), "float32"),
        ("mse", "float", (16,), "float32"),
    ],
)
def test_labels_fit_the_loss(loss, mode, y_shape, y_dtype):
    b = load_data(cfg_of({"source": "iris", "batch_size": 16}, loss=loss))
    _, y = next(iter(b.train))
    assert b.spec.label_mode == mode
    assert tuple(y.shape) == y_shape and y.dtype.name == y_dtype
    if mode == "onehot":
        np.testing.assert_array_equal(y.numpy().sum(axis=1), 1.0)


def test_binary_loss_gives_01_column():
    b = load_data(cfg_of({"source": "breast_cancer", "batch_size": 8}, loss="binary_crossentropy"))
    y = all_labels(b.train)
    assert y.shape == (b.num_train, 1) and y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    assert b.spec.task == "binary" and b.class_names == ["malignant", "benign"]


def test_binary_loss_on_three_classes_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"source": "iris"}, loss="binary_crossentropy"))
    assert err.value.key == "compile.loss"
    assert "3" in str(err.value) and err.value.exit_code == 2


def test_diabetes_is_regression_and_refuses_a_classification_loss():
    b = load_data(cfg_of({"source": "diabetes"}, loss="mae"))
    assert b.spec.task == "regression" and b.class_names is None
    assert b.spec.target_width == 1
    y = all_labels(b.train)
    assert y.dtype == np.float32 and y.max() > 100  # disease progression, not classes
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"source": "diabetes"}))  # default sparse CE
    assert err.value.key == "compile.loss" and "mse" in str(err.value)


def test_classes_filter_reindexes_in_the_given_order():
    b = load_data(cfg_of({"source": "digits", "classes": [7, "3"]}))
    assert b.class_names == ["7", "3"] and b.num_classes == 2
    x, y = all_inputs(b.test), all_labels(b.test)
    from sklearn.datasets import load_digits

    d = load_digits()
    sevens = {tuple(i.ravel()) for i in d.images[d.target == 7]}
    assert all(tuple(img.ravel()) in sevens for img in x[y == 0])
    assert set(np.unique(y)) == {0, 1}


def test_samples_per_class_for_few_shot_fine_tuning():
    b = load_data(cfg_of({"source": "digits", "classes": [5, 6, 7, 8, 9], "samples_per_class": 20}))
    y = all_labels(b.train)
    assert b.num_train == 100
    np.testing.assert_array_equal(np.bincount(y), [20] * 5)
    assert b.spec.class_counts == [20] * 5
    # Validation and test keep their full size: an honest few-shot score.
    assert b.num_test > 150


def test_limit_caps_training_samples_only():
    b = load_data(cfg_of({"source": "digits", "limit": 50}))
    assert b.num_train == 50 and b.num_test == 360


def test_sequence_gives_rows_of_pixels():
    b = load_data(cfg_of({"source": "digits", "sequence": True}))
    assert b.input_shape == (8, 8) and b.spec.sequence is True
    x, _ = next(iter(b.train))
    assert x.shape[1:] == (8, 8)
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"source": "iris", "sequence": True}))
    assert err.value.key == "data.sequence"


def test_representative_gives_training_inputs():
    b = load_data(cfg_of({"source": "digits"}))
    r = b.representative(10)
    assert r.shape == (10, 8, 8, 1) and r.dtype == np.float32


def test_unknown_class_names_the_entry_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"source": "iris", "classes": ["setosa", "versicolr"]}))
    assert err.value.key == "data.classes.1"
    assert "versicolor" in str(err.value)


def test_unknown_source_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        load_data(raw_cfg({"source": "digts"}))
    assert err.value.key == "data.source" and "digits" in str(err.value)


def test_augmentation_applies_to_training_batches_only():
    aug = [{"RandomFlip": {"mode": "horizontal"}}]
    plain = load_data(cfg_of({"source": "digits", "validation_split": 0.0, "shuffle_buffer": 0}))
    flipped = load_data(cfg_of({"source": "digits", "validation_split": 0.0, "shuffle_buffer": 0, "augment": aug}))
    a, b = all_inputs(plain.train), all_inputs(flipped.train)
    changed = [not np.array_equal(x, y) for x, y in zip(a, b)]
    assert 0.2 < np.mean(changed) < 0.8  # about half the images flipped
    np.testing.assert_array_equal(all_inputs(plain.test), all_inputs(flipped.test))


def test_unknown_augmentation_layer_is_located():
    with pytest.raises(ConfigError) as err:
        load_data(raw_cfg({"source": "digits", "augment": ["RandomFlip", "RandomFlp"]}))
    assert err.value.key == "data.augment.1" and "RandomFlip" in str(err.value)


def test_image_size_of_a_built_in_image_set_must_match_it():
    b = load_data(cfg_of({"source": "digits", "image_size": [8, 8], "color_mode": "grayscale"}))
    assert b.input_shape == (8, 8, 1)
    with pytest.raises(ConfigError) as err:
        load_data(cfg_of({"source": "digits", "image_size": [32, 32]}))
    assert err.value.key == "data.image_size" and "8x8" in str(err.value)
