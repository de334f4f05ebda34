"""Call-argument mappings, `name.N` and blocks, built into Keras models that
match the same model written by hand (same seed, same weights, same outputs)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dlcli.config import config_from_dict  # noqa: E402
from dlcli.model import build_model  # noqa: E402

TOKENS_AND_MASK = '''
import keras


class TokensAndMask(keras.layers.Layer):
    """Returns (tokens, mask): the mask marks steps whose features are not all 0."""

    def call(self, x):
        return x * 2.0, keras.ops.any(keras.ops.not_equal(x, 0.0), axis=-1)
'''


def cfg_of(layers, **model):
    return config_from_dict({"data": {"source": "digits"}, "model": {"layers": layers, **model}})


def same_outputs(ours, theirs, *xs):
    for a, b in zip(keras.tree.flatten(ours.predict(list(xs) if len(xs) > 1 else xs[0], verbose=0)),
                    keras.tree.flatten(theirs.predict(list(xs) if len(xs) > 1 else xs[0], verbose=0))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_self_attention_from_a_mapping_is_the_hand_written_model():
    cfg = cfg_of([
        {"MultiHeadAttention": {"num_heads": 2, "key_dim": 4}, "name": "att", "inputs": {"query": "input", "value": "input"}},
        {"Add": None, "inputs": ["input", "att"]},
        "GlobalAveragePooling1D",
        {"Dense": {"units": 3}},
    ], input_shape=[5, 8])
    keras.utils.set_random_seed(1)
    ours = build_model(cfg)
    keras.utils.set_random_seed(1)
    x = keras.Input((5, 8))
    y = keras.layers.Add()([x, keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)])
    theirs = keras.Model(x, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(y)))
    assert ours.count_params() == theirs.count_params()
    same_outputs(ours, theirs, np.random.RandomState(0).rand(2, 5, 8).astype("float32"))


def test_cross_attention_scores_and_name_dot_n():
    cfg = cfg_of([
        {"MultiHeadAttention": {"num_heads": 2, "key_dim": 4}, "name": "att",
         "inputs": {"query": "q", "value": "ctx", "key": "ctx", "return_attention_scores": True}},
        {"Flatten": None, "name": "scores", "inputs": "att.1"},
    ], inputs={"q": [3, 8], "ctx": [3, 8]}, outputs=["att.0", "scores"])
    model = build_model(cfg)
    # (Keras's symbolic shape of the scores takes the query's length for
    # both axes, so the context here is as long as the query.)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 3, 8), (None, 2 * 3 * 3)]
    q, ctx = np.random.RandomState(0).rand(2, 2, 3, 8).astype("float32")
    out, scores = model.predict({"q": q, "ctx": ctx}, verbose=0)
    att = model.get_layer("att")
    want, want_scores = att(q, ctx, ctx, return_attention_scores=True)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, np.reshape(want_scores, (2, -1)), rtol=1e-5, atol=1e-6)


def test_a_layer_returning_tokens_and_mask_feeds_attention(tmp_path, monkeypatch):
    (tmp_path / "graph_user_layers.py").write_text(TOKENS_AND_MASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = cfg_of([
        {"graph_user_layers.TokensAndMask": None, "name": "tm"},
        {"MultiHeadAttention": {"num_heads": 2, "key_dim": 4},
         "inputs": {"query": "tm.0", "value": "tm.0", "query_mask": "tm.1", "value_mask": "tm.1"}},
    ], input_shape=[5, 8])
    keras.utils.set_random_seed(2)
    ours = build_model(cfg)
    import graph_user_layers

    keras.utils.set_random_seed(2)
    x = keras.Input((5, 8))
    tokens, mask = graph_user_layers.TokensAndMask()(x)
    out = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(tokens, tokens, query_mask=mask, value_mask=mask)
    theirs = keras.Model(x, out)
    data = np.random.RandomState(0).rand(2, 5, 8).astype("float32")
    data[:, 3:] = 0.0  # padded steps
    same_outputs(ours, theirs, data)


BLOCKS = {
    "encoder": {
        "params": {"heads": 2, "ff": None},
        "layers": [
            {"MultiHeadAttention": {"num_heads": "$heads", "key_dim": 4}, "name": "att", "inputs": {"query": "input", "value": "input"}},
            {"Add": None, "name": "res", "inputs": ["input", "att"]},
            {"LayerNormalization": {"epsilon": 1e-6}},
            {"Dense": {"units": "$ff", "activation": "relu"}},
            {"Dense": {"units": 8}},
        ],
    },
}


def test_a_repeated_block_is_the_keras_loop():
    cfg = cfg_of([{"encoder": {"ff": 16}, "repeat": 3, "name": "enc"},
                  {"Add": None, "inputs": ["enc", "enc_1"]}], input_shape=[5, 8], blocks=BLOCKS)
    keras.utils.set_random_seed(4)
    ours = build_model(cfg)
    keras.utils.set_random_seed(4)
    x = inp = keras.Input((5, 8))
    firsts = []
    for _ in range(3):
        att = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
        y = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([x, att]))
        y = keras.layers.Dense(16, activation="relu")(y)
        x = keras.layers.Dense(8)(y)
        firsts.append(x)
    theirs = keras.Model(inp, keras.layers.Add()([x, firsts[0]]))
    same_outputs(ours, theirs, np.random.RandomState(0).rand(2, 5, 8).astype("float32"))
    names = [layer.name for layer in ours.layers]
    assert {"enc_1_att", "enc_2_att", "enc_3_att", "enc_3_res", "enc_2_dense", "enc_2_dense_2"} <= set(names)
    assert ours.get_layer("enc_2_dense").units == 16


def test_per_use_arguments_and_default_use_names():
    cfg = cfg_of([{"encoder": {"ff": 16}}, {"encoder": {"ff": 32, "heads": 4}}], input_shape=[5, 8], blocks=BLOCKS)
    model = build_model(cfg)
    assert model.get_layer("encoder1_dense").units == 16 and model.get_layer("encoder2_dense").units == 32
    assert model.get_layer("encoder2_att").num_heads == 4


def build_error(layers, **model):
    from dlcli.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        build_model(cfg_of(layers, **model))
    return info.value


def test_build_time_mistakes_in_call_arguments_and_elements():
    err = build_error([{"MultiHeadAttention": {"num_heads": 2, "key_dim": 4}, "inputs": {"query": "input", "valeu": "input"}}],
                      input_shape=[5, 8])
    assert err.key == "model.layers.0.inputs.valeu"
    assert err.message == "MultiHeadAttention.call() has no argument 'valeu'" and err.hint == "did you mean 'value'?"
    err = build_error([{"Dense": {"units": 4}, "name": "d"}, {"Flatten": None, "inputs": "d.1"}], input_shape=[8])
    assert err.message == "'d.1': layer 'd' has one output, not several"
    err = build_error([{"MultiHeadAttention": {"num_heads": 2, "key_dim": 4}, "name": "att",
                        "inputs": {"query": "input", "value": "input", "return_attention_scores": True}},
                       {"Flatten": None, "inputs": "att.2"}], input_shape=[5, 8])
    assert err.message == "'att.2': layer 'att' has 2 outputs (0 to 1)" and err.key == "model.layers.1.inputs"


def test_a_call_argument_mistake_through_the_cli(runner, app, tmp_cwd):
    (tmp_cwd / "c.yaml").write_text(
        "model:\n  input_shape: [5, 8]\n  layers:\n    - MultiHeadAttention: {num_heads: 2, key_dim: 4}\n"
        "      inputs: {query: input, valeu: input}\n")
    result = runner.invoke(app, ["summary", "c.yaml"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "c.yaml:5: model.layers.0.inputs.valeu: MultiHeadAttention.call() has no argument 'valeu'" in lines[0]
    assert sorted(p.name for p in tmp_cwd.iterdir()) == ["c.yaml"]


def test_keras_serialized_layers_nested_in_a_wrapper():
    """`{class_name, config}` as Keras's get_config writes it, anywhere a layer goes."""
    cfg = cfg_of([
        {"class_name": "Bidirectional", "config": {"layer": {"class_name": "LSTM", "config": {"units": 4}}}, "name": "bi"},
        {"module": "keras.layers", "class_name": "Dense", "config": {"units": 3, "name": "out"}, "registered_name": None},
    ], input_shape=[5, 2])
    keras.utils.set_random_seed(5)
    ours = build_model(cfg)
    keras.utils.set_random_seed(5)
    x = keras.Input((5, 2))
    y = keras.layers.Bidirectional(keras.layers.LSTM(4))(x)
    theirs = keras.Model(x, keras.layers.Dense(3)(y))
    assert [layer.name for layer in ours.layers[1:]] == ["bi", "out"]
    same_outputs(ours, theirs, np.random.RandomState(0).rand(2, 5, 2).astype("float32"))


def test_unet_steps_two_input_blocks_and_inner_layers_by_their_names():
    """A U-Net: `down` steps, `up` steps taking (x, skip); a skip is the
    inner layer `<use>_conv` of a down step."""
    blocks = {
        "down": {"params": {"filters": None}, "layers": [
            {"Conv2D": {"filters": "$filters", "kernel_size": 3, "padding": "same", "activation": "relu"}, "name": "conv"},
            {"MaxPooling2D": {"pool_size": 2}},
        ]},
        "up": {"params": {"filters": None}, "inputs": ["x", "skip"], "layers": [
            {"UpSampling2D": {"size": 2}, "name": "grow", "inputs": "x"},
            {"Concatenate": None, "inputs": ["grow", "skip"]},
            {"Conv2D": {"filters": "$filters", "kernel_size": 3, "padding": "same", "activation": "relu"}},
        ]},
    }
    cfg = cfg_of([
        {"down": {"filters": 4}, "name": "d1"},
        {"down": {"filters": 8}, "name": "d2"},
        {"up": {"filters": 8}, "inputs": ["d2", "d2_conv"]},
        {"up": {"filters": 4}, "inputs": ["up1", "d1_conv"]},
        {"Conv2D": {"filters": 2, "kernel_size": 1}},
    ], input_shape=[8, 8, 1], blocks=blocks)
    keras.utils.set_random_seed(6)
    ours = build_model(cfg)
    keras.utils.set_random_seed(6)
    x = inp = keras.Input((8, 8, 1))
    skips = []
    for filters in (4, 8):
        conv = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        skips.append(conv)
        x = keras.layers.MaxPooling2D(2)(conv)
    for filters, skip in zip((8, 4), reversed(skips)):
        x = keras.layers.UpSampling2D(2)(x)
        x = keras.layers.Concatenate()([x, skip])
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    theirs = keras.Model(inp, keras.layers.Conv2D(2, 1)(x))
    assert tuple(ours.output.shape) == (None, 8, 8, 2)
    same_outputs(ours, theirs, np.random.RandomState(0).rand(2, 8, 8, 1).astype("float32"))
