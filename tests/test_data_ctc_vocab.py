"""CTC targets written as strings (`data.vocabulary`): npz string arrays
and csv columns of transcriptions train, evaluate and predict decoded
strings through the real CLI; padded integer arrays in a plain npz too;
a bad vocabulary is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

SYMBOLS = "abc"


def frames(n: int, seed: int, steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Noisy one-hot frames of symbols a, b, c (channels 1..3; channel 0 is
    silence), each held 2-3 steps with gaps; the label is the string of
    symbols ("ab", "cab"), 1 to 3 long."""
    rng = np.random.RandomState(seed)
    x = rng.normal(0.0, 0.1, (n, steps, 4)).astype("float32")
    labels = []
    for i in range(n):
        symbols = rng.randint(1, 4, rng.randint(1, 4))
        t = rng.randint(0, 2)
        for s in symbols:
            span = rng.randint(2, 4)
            x[i, t:t + span, s] += 1.0
            t += span + rng.randint(1, 3)
        labels.append("".join(SYMBOLS[s - 1] for s in symbols))
    x[:, :, 0] += x[:, :, 1:].max(axis=-1) < 0.5
    return x, np.array(labels)


def frame_strings(n: int, seed: int) -> list[tuple[str, str]]:
    """(16 characters, one per time step, e.g. "-111--33--------"; its
    digits as words "x1 x3") rows for a csv text column."""
    rng = np.random.RandomState(seed)
    rows = []
    for _ in range(n):
        symbols = rng.randint(1, 6, rng.randint(1, 4))
        s = "-" * rng.randint(0, 2)
        for v in symbols:
            s += str(v) * rng.randint(2, 4) + "-" * rng.randint(1, 3)
        rows.append((s.ljust(16, "-")[:16], " ".join(f"x{v}" for v in symbols)))
    return rows


RECURRENT = {"layers": [
    {"Conv1D": {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    {"Bidirectional": {"layer": {"GRU": {"units": 16, "return_sequences": True}}}},
    {"Dense": {"units": "num_classes"}},  # the blank + one logit per token
]}
CTC = {"loss": "ctc", "optimizer": {"class_name": "adam", "config": {"learning_rate": 0.01}},
       "metrics": ["ctc_sequence_accuracy"]}


def write_config(tmp: Path, name: str, data: dict, model: dict = RECURRENT, epochs: int = 10) -> Path:
    cfg = {"name": name, "seed": 1, "data": {"batch_size": 32, **data}, "model": model, "compile": CTC,
           "train": {"epochs": epochs}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def cli_json(runner, app, args: list[str]) -> list[dict]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def string_run(tmp_path_factory):
    """A run trained on an npz of frames whose labels are strings, the
    vocabulary learned from the training split: (tmp, run, train JSON)."""
    from typer.testing import CliRunner

    from dlcli.cli import app

    tmp = tmp_path_factory.mktemp("vocab")
    x, y = frames(640, 0)
    xt, yt = frames(100, 1)
    np.savez(tmp / "strings.npz", x=x, y=y, x_test=xt, y_test=yt)
    np.savez(tmp / "new.npz", x=xt[:40])
    np.save(tmp / "truth.npy", yt[:40])
    cfg = write_config(tmp, "strings", {"source": "npz", "path": str(tmp / "strings.npz")})
    info = cli_json(CliRunner(), app, ["train", str(cfg), "--output", str(tmp / "runs")])[-1]
    return tmp, tmp / "runs" / "strings" / "1", info


@pytest.mark.slow
def test_string_labels_train_well_and_the_vocabulary_is_saved(string_run):
    _, run, info = string_run
    spec = json.loads((run / "data_spec.json").read_text())
    assert spec["task"] == "ctc" and spec["class_names"] == ["<blank>", "a", "b", "c"]
    assert spec["num_classes"] == 4 and spec["token_separator"] == ""
    assert spec["outputs"][0]["shape"] == [3]  # padded to the longest label
    # Chance is about 1/40 (3 + 9 + 27 strings); measured 0.85-0.95.
    assert info["test"]["ctc_sequence_accuracy"] > 0.6, info


@pytest.mark.slow
def test_predict_prints_decoded_strings_and_evaluate_reports_ctc(string_run, runner, app):
    tmp, run, _ = string_run
    records = cli_json(runner, app, ["predict", str(run), str(tmp / "new.npz")])
    texts = [r["text"] for r in records]
    truth = np.load(tmp / "truth.npy").tolist()
    assert len(texts) == 40 and all(set(t) <= set(SYMBOLS) for t in texts)
    assert np.mean([p == t for p, t in zip(texts, truth)]) > 0.6, list(zip(texts, truth))
    result = runner.invoke(app, ["predict", str(run), str(tmp / "new.npz")])
    assert result.exit_code == 0 and truth[0] in result.stdout.split()  # the table shows the strings
    report = cli_json(runner, app, ["evaluate", str(run)])[-1]
    assert report["ctc"]["sequence_accuracy"] > 0.6 and report["ctc"]["character_error_rate"] < 0.3, report


@pytest.mark.slow
def test_csv_word_transcripts_with_a_given_vocabulary(runner, app, tmp_path):
    """A csv text column read character by character (a TextVectorization
    adapted on the training rows) and a target of words, split on
    whitespace, through a vocabulary given in the config."""
    rows = frame_strings(500, 0)
    lines = ["frames,words"] + [f"{f},{w}" for f, w in rows]
    (tmp_path / "frames.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "new.csv").write_text("frames\n" + "\n".join(f for f, _ in frame_strings(30, 1)) + "\n")
    tokens = [f"x{v}" for v in range(1, 6)]
    model = {"layers": [
        {"TextVectorization": {"split": "character", "standardize": None, "output_sequence_length": 16}},
        {"Embedding": {"input_dim": 10, "output_dim": 8}},
        {"Conv1D": {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"}},
        {"Dense": {"units": "num_classes"}},
    ]}
    cfg = write_config(tmp_path, "words", {
        "source": "csv", "path": str(tmp_path / "frames.csv"), "target": "words", "column_types": {"frames": "text"},
        "vocabulary": {"tokens": tokens, "split": "whitespace"}}, model=model, epochs=6)
    info = cli_json(runner, app, ["train", str(cfg), "--output", str(tmp_path / "runs")])[-1]
    assert info["test"]["ctc_sequence_accuracy"] > 0.8, info  # measured 1.0
    run = tmp_path / "runs" / "words" / "1"
    assert json.loads((run / "data_spec.json").read_text())["class_names"] == ["<blank>", *tokens]
    records = cli_json(runner, app, ["predict", str(run), str(tmp_path / "new.csv")])
    truth = [w for _, w in frame_strings(30, 1)]
    assert len(records) == 30 and records[0]["input"].endswith("new.csv:2")  # the file's line
    assert np.mean([r["text"] == t for r, t in zip(records, truth)]) > 0.8


def test_padded_integer_labels_in_a_plain_npz(tmp_path):
    """`x` and `y` of 0-padded class sequences: CTC labels as they are
    (decoded as class indices, there being no vocabulary)."""
    from dlcli.config import load_config
    from dlcli.data import load_data
    from dlcli.data.vocab import decode_sequences

    x, _ = frames(60, 0)
    y = np.array([[1, 2, 0], [3, 0, 0]] * 30, np.int64)
    np.savez(tmp_path / "ints.npz", x=x, y=y)
    b = load_data(load_config(write_config(tmp_path, "ints", {"source": "npz", "path": str(tmp_path / "ints.npz")})))
    assert b.spec.task == "ctc" and b.spec.class_names is None and b.spec.token_separator is None
    labels = np.concatenate([yb.numpy() for _, yb in b.train])
    assert labels.dtype == np.int32 and labels.shape[1] == 3 and set(np.unique(labels)) == {0, 1, 2, 3}
    assert decode_sequences([[1, 2], [3]], None, None) == ["1 2", "3"]
    assert decode_sequences([[1, 2], [3]], ["<blank>", "x1", "x2", "x3"], " ") == ["x1 x2", "x3"]


BAD = [
    ({"vocabulary": {"tokens": "abca"}}, "data.vocabulary.tokens: token 'a' is listed twice"),
    ({"vocabulary": {"tokens": ["ab", "c"]}}, "token 'ab' is not one character"),
    ({"vocabulary": {"tokens": []}}, "data.vocabulary.tokens: is empty"),
    ({"vocabulary": {"tokns": "abc"}}, "unknown vocabulary option 'tokns' (did you mean"),
    ({"vocabulary": {"split": "words"}}, "data.vocabulary.split: must be character or whitespace"),
    ({"vocabulary": "abc"}, "data.vocabulary: "),
    ({"vocabulary": {"tokens": "ab"}}, "has the token 'c', which is not in the vocabulary"),
]


def test_a_bad_vocabulary_is_one_line_and_exit_2(runner, app, tmp_path):
    x, y = frames(40, 0)
    np.savez(tmp_path / "s.npz", x=x, y=y)
    np.savez(tmp_path / "n.npz", x=x, y=np.arange(40) % 2)
    (tmp_path / "n.csv").write_text("f,t\n" + "\n".join(f"{i}.5,{i % 3}" for i in range(30)) + "\n")
    cases = [(write_config(tmp_path, f"bad{i}", {"source": "npz", "path": str(tmp_path / "s.npz"), **d}), needle)
             for i, (d, needle) in enumerate(BAD)]
    unused = write_config(tmp_path, "unused", {"source": "npz", "path": str(tmp_path / "n.npz"), "vocabulary": {"split": "whitespace"}})
    unused.write_text(unused.read_text().replace("loss: ctc", "loss: sparse_categorical_crossentropy"))
    cases.append((unused, "data.vocabulary: applies to string targets of the ctc loss"))
    cases.append((write_config(tmp_path, "numbers", {"source": "csv", "path": str(tmp_path / "n.csv"), "target": "t"}),
                  "compile.loss: the CTC loss needs label sequences, but t has one number per row"))
    for cfg, needle in cases:
        result = runner.invoke(app, ["train", str(cfg), "--output", str(tmp_path / "runs")])
        assert result.exit_code == 2, (cfg.name, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (cfg.name, result.stderr)
        assert f"{cfg.name}:" in lines[0] and "Traceback" not in result.output  # file and line
    assert not (tmp_path / "runs").exists()
