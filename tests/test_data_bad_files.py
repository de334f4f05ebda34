"""Images whose header claims huge dimensions, or whose pixel data is
garbage behind valid checksums: the pre-flight check names and skips them,
`data.strict` makes them a one-line error (exit 2, nothing written), and
predict reports them per input, all through the real CLI."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import yaml


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _garbage_jpeg(rng: np.random.Generator, progressive: bool) -> bytes:
    """A JPEG with valid headers and tables whose pixel data is random bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, format="JPEG", progressive=progressive)
    data = buf.getvalue()
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    # 0xFF 0xBA: a marker libjpeg does not know, as random bytes soon hold.
    body = rng.integers(0, 255, len(data) - start - 2, dtype=np.uint8).tobytes()
    return data[:start] + body[:20] + b"\xff\xba" + body[20:] + b"\xff\xd9"


def _folder(root: Path) -> dict[str, Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, value in (("dark", 40), ("light", 210)):
        (root / label).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(value + rng.normal(0, 10, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label}_{i}.png")
    bad = {
        # A valid PNG structure (CRCs right) whose header claims 100000x100000.
        "huge": root / "dark" / "huge.png",
        # Valid header and CRCs, random bytes where the compressed pixels go.
        "garbage": root / "light" / "garbage.png",
        # A JPEG whose headers and tables are right, with random pixel data.
        "garbage_jpeg": root / "dark" / "noise.jpg",
    }
    bad["huge"].write_bytes(_png(100_000, 100_000, zlib.compress(b"\x00" * 64)))
    bad["garbage"].write_bytes(_png(8, 8, rng.integers(0, 256, 300, dtype=np.uint8).tobytes()))
    bad["garbage_jpeg"].write_bytes(_garbage_jpeg(rng, progressive=False))
    return bad


def _config(tmp: Path, root: Path, strict: bool) -> Path:
    cfg = {"name": "bad", "data": {"source": "image_dir", "path": str(root), "image_size": [8, 8], "strict": strict,
                                   "validation_split": 0.0, "test_split": 0.0, "batch_size": 4},
           "model": {"layers": ["Flatten", {"Dense": {"units": 2, "activation": "softmax"}}]},
           "train": {"epochs": 1}}
    path = tmp / f"bad_{strict}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_bad_images_are_named_and_skipped_or_refused(runner, app, tmp_path):
    bad = _folder(tmp_path / "imgs")
    out = tmp_path / "runs"
    strict = runner.invoke(app, ["train", str(_config(tmp_path, tmp_path / "imgs", True)), "--output", str(out)])
    assert strict.exit_code == 2, strict.output
    lines = [line for line in strict.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), strict.stderr
    assert "huge.png" in lines[0] and "100000x100000" in lines[0] and "garbage.png" in lines[0]
    assert "3 unreadable files" in lines[0]  # the line is shortened in the middle: noise.jpg is in the notes below
    assert "Traceback" not in strict.output and not out.exists()

    result = runner.invoke(app, ["train", str(_config(tmp_path, tmp_path / "imgs", False)), "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout.splitlines()[-1])["data"]["notes"]
    skipped = next(n for n in notes if n.startswith("skipped"))
    assert "3 unreadable files" in skipped and "huge.png" in skipped and "not valid compressed data" in skipped

    run = out / "bad" / "1"
    predicted = runner.invoke(app, ["predict", str(run), str(bad["huge"]), str(bad["garbage"]), str(bad["garbage_jpeg"]),
                                    str(tmp_path / "imgs" / "dark" / "dark_0.png"), "--json"])
    assert predicted.exit_code == 0, predicted.output
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    errors = {Path(r["input"]).name: r["error"] for r in records if "error" in r}
    assert set(errors) == {"huge.png", "garbage.png", "noise.jpg"}
    assert "100000x100000" in errors["huge.png"] and "pixel data is garbage" in errors["noise.jpg"]
    good = [r for r in records if "error" not in r]
    assert len(good) == 1 and good[0]["input"].endswith("dark_0.png") and good[0]["class"] in ("dark", "light")


def test_a_garbage_jpeg_is_named_by_train_and_predict(runner, app, tmp_path):
    """A folder with a garbage progressive JPEG among good images:
    `data.strict` names it in one line (exit 2, nothing written), else it is
    skipped and noted; predict names it in its own row (no traceback),
    `--strict` makes the exit 1, and the good images' rows are written."""
    bad = _folder(tmp_path / "imgs")
    for name in ("huge", "garbage"):
        bad[name].unlink()
    bad["garbage_jpeg"].write_bytes(_garbage_jpeg(np.random.default_rng(3), progressive=True))
    out = tmp_path / "runs"
    strict = runner.invoke(app, ["train", str(_config(tmp_path, tmp_path / "imgs", True)), "--output", str(out)])
    assert strict.exit_code == 2 and not out.exists(), strict.output
    lines = [line for line in strict.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "1 unreadable file" in lines[0] and "Traceback" not in strict.output
    assert "noise.jpg: corrupt JPEG (its pixel data is garbage" in lines[0]
    trained = runner.invoke(app, ["train", str(_config(tmp_path, tmp_path / "imgs", False)), "--output", str(out)])
    assert trained.exit_code == 0, trained.output
    rows = tmp_path / "preds.csv"
    predicted = runner.invoke(app, ["predict", str(out / "bad" / "1"), str(tmp_path / "imgs"), "--strict", "-o", str(rows)])
    assert predicted.exit_code == 1, predicted.output
    assert "Traceback" not in predicted.output
    import csv

    table = list(csv.DictReader(rows.open()))
    assert len(table) == 17 and sum(1 for r in table if r["error"]) == 1
    noise = next(r for r in table if r["error"])
    assert noise["input"].endswith("noise.jpg") and "pixel data is garbage" in noise["error"] and not noise["class"]
