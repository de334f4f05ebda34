"""The shipped transformer and Xception configs have exactly the parameter
counts of the Keras example code they reproduce (written out here as the
examples write it). Each one's one-epoch training run is in
test_train_configs.py, on offline stand-in data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

keras = pytest.importorskip("keras")
from keras import layers, ops  # noqa: E402

from dlcli.config import load_config  # noqa: E402
from dlcli.model import build_model  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def xception_example(input_shape, num_classes):
    """make_model() of keras.io/examples/vision/image_classification_from_scratch
    as first published (2,782,649 parameters; its augmentation layers have
    no weights, and dlcli runs them in the data pipeline)."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(64, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous_block_activation = x
    for size in [128, 256, 512, 728]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])
        previous_block_activation = x
    x = layers.SeparableConv2D(1024, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    if num_classes == 2:
        activation, units = "sigmoid", 1
    else:
        activation, units = "softmax", num_classes
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(units, activation=activation)(x)
    return keras.Model(inputs, outputs)


class TransformerBlock(layers.Layer):
    """keras.io/examples/nlp/text_classification_with_transformer."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs):
        attn_output = self.dropout1(self.att(inputs, inputs))
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.dropout2(self.ffn(out1))
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))
        return self.token_emb(x) + positions


def text_transformer_example(vocab_size=20000, maxlen=200, embed_dim=32, num_heads=2, ff_dim=32):
    inputs = layers.Input(shape=(maxlen,))
    x = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(inputs)
    x = TransformerBlock(embed_dim, num_heads, ff_dim)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(20, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def transformer_encoder(inputs, head_size, num_heads, ff_dim, dropout=0):
    """keras.io/examples/timeseries/timeseries_classification_transformer."""
    x = layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads, dropout=dropout)(inputs, inputs)
    x = layers.Dropout(dropout)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    res = x + inputs
    x = layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    return x + res


def timeseries_transformer_example(input_shape, n_classes=2, data_format="channels_last"):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for _ in range(4):
        x = transformer_encoder(x, 256, 4, 4, 0.25)
    x = layers.GlobalAveragePooling1D(data_format=data_format)(x)
    for dim in [128]:
        x = layers.Dense(dim, activation="relu")(x)
        x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


CASES = [
    ("xception_cats_dogs", (180, 180, 3), 2, lambda: xception_example((180, 180, 3), 2), 2_782_649),
    ("transformer_text", (200,), 2, text_transformer_example, 657_758),
    ("transformer_timeseries", (500, 1), 2, lambda: timeseries_transformer_example((500, 1)), 29_258),
]


def test_timeseries_config_gives_the_example_pages_printed_summary_too():
    """The page's summary (93,130) came from a channels_first pooling."""
    cfg = load_config(CONFIGS / "transformer_timeseries.yaml",
                      ["model.layers.1.GlobalAveragePooling1D.data_format=channels_first"])
    example = timeseries_transformer_example((500, 1), data_format="channels_first")
    assert build_model(cfg, (500, 1), num_classes=2).count_params() == example.count_params() == 93_130


@pytest.mark.parametrize("name,shape,classes,example,count", CASES, ids=[c[0] for c in CASES])
def test_config_has_the_examples_parameter_count(name, shape, classes, example, count):
    path = CONFIGS / f"{name}.yaml"
    # The count is stated in the config's own comment.
    assert f"{count:,}" in path.read_text()
    cfg = load_config(path)
    keras.backend.clear_session()
    built = build_model(cfg, shape, num_classes=classes)
    assert built.count_params() == example().count_params() == count


def test_xception_config_is_short_and_names_every_layer_of_each_use():
    cfg = load_config(CONFIGS / "xception_cats_dogs.yaml")
    assert len(cfg.model.layers) + sum(len(b.layers) for b in cfg.model.blocks.values()) < 40
    model = build_model(cfg, (32, 32, 3), num_classes=2)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    for use in ("xception_step1", "xception_step2", "xception_step3", "xception_step4"):
        assert f"{use}_residual" in names and f"{use}_pooled" in names
    assert model.get_layer("xception_step4_residual").filters == 728


def test_timeseries_config_matches_the_example_output_for_output():
    """Same seed, same layer order: the config model is the example's model."""
    import numpy as np

    cfg = load_config(CONFIGS / "transformer_timeseries.yaml")
    keras.utils.set_random_seed(3)
    ours = build_model(cfg, (12, 1), num_classes=2)
    keras.utils.set_random_seed(3)
    theirs = timeseries_transformer_example((12, 1))
    x = np.random.RandomState(0).rand(4, 12, 1).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
