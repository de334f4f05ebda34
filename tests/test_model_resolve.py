"""compile_model and (training's) build_callbacks: Keras objects by name, with located errors."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlcli.config.schema import Config  # noqa: E402
from dlcli.errors import ConfigError  # noqa: E402
from dlcli.model import build_model, compile_model  # noqa: E402
from dlcli.training.user_callbacks import build_callbacks  # noqa: E402
from dlcli.model.ctc import CTCSequenceAccuracy  # noqa: E402


def make_cfg(compile=None, callbacks=None, layers=None):
    """A Config checked by pydantic only, so the model stage's own checks run."""
    return Config.model_validate({
        "name": "t",
        "model": {"layers": layers or [{"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}]},
        "compile": compile or {},
        "train": {"callbacks": callbacks or []},
    })


def compiled(compile=None, input_shape=(4,), layers=None, **kwargs):
    cfg = make_cfg(compile, layers=layers)
    model = build_model(cfg, input_shape)
    compile_model(model, cfg, **kwargs)
    return model


def compile_error(compile, layers=None, input_shape=(4,)) -> ConfigError:
    cfg = make_cfg(compile, layers=layers)
    model = build_model(cfg, input_shape)
    with pytest.raises(ConfigError) as info:
        compile_model(model, cfg)
    return info.value


def test_sgd_with_an_exponential_decay_schedule_decays_while_training():
    model = compiled({"optimizer": {"class_name": "SGD", "config": {
        "momentum": 0.9, "nesterov": True,
        "learning_rate": {"class_name": "ExponentialDecay",
                          "config": {"initial_learning_rate": 0.1, "decay_steps": 4, "decay_rate": 0.5, "staircase": True}}}}})
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.SGD)
    assert opt.momentum == 0.9 and opt.nesterov is True
    assert float(opt.learning_rate) == pytest.approx(0.1)
    rng = np.random.RandomState(0)
    model.fit(rng.rand(32, 4).astype("float32"), rng.randint(0, 3, 32), batch_size=4, epochs=1, verbose=0)
    assert int(opt.iterations) == 8
    assert float(opt.learning_rate) == pytest.approx(0.1 * 0.5 ** 2)


def test_short_forms_for_optimizer_and_loss():
    model = compiled({"optimizer": {"RMSprop": {"learning_rate": 0.002}},
                      "loss": {"SparseCategoricalCrossentropy": {"from_logits": True}}})
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.002)
    assert model.loss.get_config()["from_logits"] is True


def test_optimizer_name_as_keras_spells_it():
    assert isinstance(compiled({"optimizer": "adamw"}).optimizer, keras.optimizers.AdamW)
    model = compiled({"optimizer": {"class_name": "adam", "config": {"learning_rate": 0.003}}})
    assert float(model.optimizer.learning_rate) == pytest.approx(0.003)


def test_unknown_optimizer_suggests_a_close_name():
    err = compile_error({"optimizer": "adamm"})
    assert err.key == "compile.optimizer"
    assert err.message == "unknown optimizer 'adamm'"
    assert err.hint.lower() == "did you mean 'adam'?"


def test_misspelled_optimizer_argument_is_named():
    err = compile_error({"optimizer": {"class_name": "SGD", "config": {"learnin_rate": 0.1}}})
    assert err.message == "SGD has no argument 'learnin_rate'"
    assert err.hint == "did you mean 'learning_rate'?"


def test_unknown_schedule_is_located_at_the_learning_rate():
    err = compile_error({"optimizer": {"class_name": "SGD", "config": {
        "learning_rate": {"class_name": "ExponentialDecy", "config": {"initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.9}}}}})
    assert err.key == "compile.optimizer.config.learning_rate"
    assert err.hint == "did you mean 'ExponentialDecay'?"


def test_unknown_loss_suggests_the_keras_name():
    err = compile_error({"loss": "sparse_categorical_crosentropy"})
    assert err.key == "compile.loss"
    assert err.message == "unknown loss 'sparse_categorical_crosentropy'"
    assert err.hint == "did you mean 'sparse_categorical_crossentropy'?"


def test_metrics_by_name_and_by_config():
    model = compiled({"metrics": ["accuracy", {"class_name": "SparseTopKCategoricalAccuracy", "config": {"k": 2}}]})
    rng = np.random.RandomState(0)
    history = model.fit(rng.rand(16, 4).astype("float32"), rng.randint(0, 3, 16), epochs=1, verbose=0).history
    # `accuracy` stays a string, so Keras picks the sparse accuracy as it does by hand.
    assert "accuracy" in history and "sparse_top_k_categorical_accuracy" in history
    assert 0.0 <= history["accuracy"][0] <= 1.0


def test_unknown_metric_is_located_at_its_index():
    err = compile_error({"metrics": ["accuracy", "acuracy"]})
    assert err.key == "compile.metrics.1"
    assert err.hint == "did you mean 'accuracy'?"


def test_steps_per_execution_auto_explicit_and_large_models():
    assert compiled().steps_per_execution == 32
    # About ten progress updates an epoch: 41 steps run 5 at a time.
    assert compiled(steps_per_epoch=41).steps_per_execution == 5
    assert compiled(steps_per_epoch=5).steps_per_execution == 1
    assert compiled(steps_per_epoch=5000).steps_per_execution == 32
    assert compiled({"steps_per_execution": 4}).steps_per_execution == 4
    big = compiled(layers=[{"Dense": {"units": 1100}}, {"Dense": {"units": 1100}}, {"Dense": {"units": 3}}])
    assert big.count_params() > 1_000_000
    assert big.steps_per_execution == 1


def test_jit_compile_is_passed_to_keras():
    assert compiled({"jit_compile": False}).jit_compile is False


def test_ctc_loss_and_metric_by_name():
    layers = [{"Dense": {"units": 5}}]
    model = compiled({"loss": "ctc", "metrics": ["ctc_sequence_accuracy"]}, input_shape=(6, 3), layers=layers)
    assert isinstance(model.loss, keras.losses.CTC)
    assert any(isinstance(m, CTCSequenceAccuracy) for m in model._compile_metrics._user_metrics)


def test_ctc_with_a_softmax_output_is_refused():
    err = compile_error({"loss": "ctc"}, layers=[{"Dense": {"units": 5, "activation": "softmax"}}], input_shape=(6, 3))
    assert err.key == "compile.loss"
    assert "takes logits" in err.message


def test_callbacks_by_name_with_their_arguments():
    cbs = build_callbacks(make_cfg(callbacks=[
        {"EarlyStopping": {"monitor": "val_loss", "patience": 3, "restore_best_weights": True}},
        {"ReduceLROnPlateau": {"factor": 0.5, "patience": 2}},
        "TerminateOnNaN",
    ]))
    assert [type(c).__name__ for c in cbs] == ["EarlyStopping", "ReduceLROnPlateau", "TerminateOnNaN"]
    assert cbs[0].patience == 3 and cbs[0].restore_best_weights is True
    assert cbs[1].factor == 0.5


def test_checkpoint_callbacks_are_allowed_with_a_note(tmp_path):
    with pytest.warns(UserWarning, match="already checkpoints"):
        (cb,) = build_callbacks(make_cfg(callbacks=[{"ModelCheckpoint": {"filepath": str(tmp_path / "m.keras")}}]))
    assert isinstance(cb, keras.callbacks.ModelCheckpoint)


@pytest.mark.parametrize(
    ("entry", "message", "hint"),
    [
        ({"EarlyStoping": {"patience": 2}}, "unknown callback 'EarlyStoping'", "did you mean 'EarlyStopping'?"),
        ({"EarlyStopping": {"patiense": 2}}, "EarlyStopping has no argument 'patiense'", "did you mean 'patience'?"),
        ("LearningRateScheduler", "LearningRateScheduler needs argument 'schedule'", None),
    ],
)
def test_callback_errors_are_located(entry, message, hint):
    with pytest.raises(ConfigError) as info:
        build_callbacks(make_cfg(callbacks=["TerminateOnNaN", entry]))
    assert info.value.key == "train.callbacks.1"
    assert info.value.message == message
    if hint:
        assert info.value.hint == hint


def test_callback_value_keras_rejects_is_located():
    with pytest.raises(ConfigError) as info:
        build_callbacks(make_cfg(callbacks=[{"ReduceLROnPlateau": {"factor": 2.0}}]))
    assert info.value.key == "train.callbacks.0"
    assert "ReduceLROnPlateau rejected its arguments" in info.value.message
