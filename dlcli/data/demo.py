"""A generated `cats_dogs/` image folder for demos and tests (no download).

"cats" are warm-coloured round blobs with a speckled (fur-like) texture,
"dogs" cool-coloured stripes and rectangles; both on noisy, greyish,
tinted backgrounds drawn from the same distribution, at random positions,
sizes and image shapes.
The classes are easy for a small CNN to tell apart but not by one pixel's
colour alone. A few broken files show how image_dir skips them.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Union

import numpy as np

CLASSES = ("cats", "dogs")


def _colour(rng: np.random.Generator, hues: tuple[float, float]) -> np.ndarray:
    h = rng.uniform(*hues) % 1.0
    s = rng.uniform(0.45, 0.95)
    v = rng.uniform(0.45, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # Greyish with a tint: the objects, not the backdrop, carry the class.
    base = rng.uniform(60, 190) + rng.uniform(-20, 20, size=3)
    # A soft diagonal gradient so the background is not flat.
    yy, xx = np.mgrid[0:h, 0:w]
    grad = ((yy / h + xx / w) - 1.0)[..., None] * rng.uniform(-40, 40, size=3)
    return base + grad


def _cat(rng: np.random.Generator, img: np.ndarray) -> None:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.12, 0.3) * w
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        mask = d < 1.0
        colour = _colour(rng, (-0.05, 0.14))  # reds, oranges, yellows
        fur = rng.normal(0, 28, size=(h, w, 1)) * (1.0 - 0.5 * d[..., None])
        img[mask] = (colour + fur)[mask]


def _dog(rng: np.random.Generator, img: np.ndarray) -> None:
    h, w = img.shape[:2]
    for _ in range(rng.integers(2, 6)):
        colour = _colour(rng, (0.45, 0.72))  # cyans, blues, violets
        if rng.random() < 0.5:  # a stripe across the image
            t = int(rng.uniform(0.05, 0.15) * min(h, w))
            if rng.random() < 0.5:
                y0 = rng.integers(0, max(1, h - t))
                img[y0 : y0 + t] = colour + rng.normal(0, 10, size=(min(t, h - y0), w, 3))
            else:
                x0 = rng.integers(0, max(1, w - t))
                img[:, x0 : x0 + t] = colour + rng.normal(0, 10, size=(h, min(t, w - x0), 3))
        else:  # a rectangle
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            y1 = y0 + int(rng.uniform(0.2, 0.5) * h)
            x1 = x0 + int(rng.uniform(0.2, 0.5) * w)
            block = img[y0:y1, x0:x1]
            block[...] = colour + rng.normal(0, 10, size=block.shape)


def make_demo_image_folder(
    path: Union[str, Path],
    n_per_class: int = 60,
    size: Union[int, tuple[int, int]] = 128,
    corrupt: bool = True,
    seed: int = 0,
) -> dict:
    """Write `path/cats/` and `path/dogs/` with generated images.

    Images alternate between JPEG and PNG; each one's height and width vary
    by up to 25% around `size` so resizing is exercised. With `corrupt`, a
    truncated JPEG, a text file named `.jpg` and an empty `.png` are added.

    Args:
        path: the folder to write (created; existing files are overwritten).
        n_per_class: images per class.
        size: the typical image size, an int or (height, width).
        corrupt: add the three broken files.
        seed: the random seed; the same seed writes the same images.

    Returns:
        {"path": str, "classes": {"cats": n, "dogs": n}, "corrupt": [paths]}.
    """
    from PIL import Image

    root = Path(path)
    rng = np.random.default_rng(seed)
    base_h, base_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    counts = {}
    for label, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            h = max(8, int(base_h * rng.uniform(0.75, 1.25)))
            w = max(8, int(base_w * rng.uniform(0.75, 1.25)))
            img = _background(rng, h, w) + rng.normal(0, 12, size=(h, w, 3))
            (_cat if label == 0 else _dog)(rng, img)
            pixels = np.clip(img, 0, 255).astype(np.uint8)
            if i % 2 == 0:
                Image.fromarray(pixels).save(folder / f"{name[:-1]}_{i:04d}.jpg", quality=90)
            else:
                Image.fromarray(pixels).save(folder / f"{name[:-1]}_{i:04d}.png", compress_level=1)
        counts[name] = n_per_class
    broken: list[str] = []
    if corrupt:
        good = next((root / "cats").glob("*.jpg"), None)
        truncated = root / "cats" / "broken_truncated.jpg"
        data = good.read_bytes() if good else b"\xff\xd8\xff\xe0" + bytes(200)
        truncated.write_bytes(data[: len(data) // 2])
        text = root / "dogs" / "notes_renamed.jpg"
        text.write_text("these are not the pixels you are looking for\n")
        empty = root / "cats" / "empty.png"
        empty.write_bytes(b"")
        broken = [str(truncated), str(text), str(empty)]
    return {"path": str(root), "classes": counts, "corrupt": broken}


# ------------------------------------------- stand-ins for the other kinds

def make_demo_shapes(path: Union[str, Path], n: int = 128, size: int = 32, seed: int = 0) -> dict:
    """`path/images/` and `path/masks/` for segmentation: each image holds
    a disc (class 1) and a square (class 2) on a noisy background (0); its
    mask PNG (same stem) holds those class indices; `masks/classes.txt`
    names them."""
    from PIL import Image

    root, rng = Path(path), np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = _background(rng, size, size) + rng.normal(0, 12, (size, size, 3))
        mask = np.zeros((size, size), np.uint8)
        r = rng.uniform(0.12, 0.22) * size
        cy, cx = rng.uniform(r, size - r, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        side = int(rng.uniform(0.2, 0.35) * size)
        y0, x0 = rng.integers(0, size - side, 2)
        square = np.zeros_like(disc)
        square[y0:y0 + side, x0:x0 + side] = True
        square &= ~disc
        img[disc] = _colour(rng, (0.95, 1.1))
        img[square] = _colour(rng, (0.5, 0.65))
        mask[disc], mask[square] = 1, 2
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"shape_{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"shape_{i:04d}.png")
    names = ["background", "disc", "square"]
    (root / "masks" / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return {"path": str(root), "images": n, "classes": names}


_WORDS = {
    "pos": "great lovely superb wonderful delight charming brilliant enjoyable",
    "neg": "awful boring dreadful terrible dull clumsy tedious painful",
}
_FILLER = "the film plot actors story was and a really quite very scenes music ending".split()


def make_demo_texts(path: Union[str, Path], n_per_class: int = 60, seed: int = 0) -> dict:
    """`path/pos/*.txt` and `path/neg/*.txt`: short reviews whose class
    shows only in a few sentiment words among shared filler words."""
    root, rng = Path(path), np.random.default_rng(seed)
    for label, words in _WORDS.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        vocab = words.split()
        for i in range(n_per_class):
            tokens = list(rng.choice(_FILLER, 10)) + list(rng.choice(vocab, 2))
            rng.shuffle(tokens)
            (root / label / f"{label}_{i:04d}.txt").write_text(" ".join(tokens).capitalize() + ".\n", encoding="utf-8")
    return {"path": str(root), "classes": {k: n_per_class for k in _WORDS}}


_TONES = {"low": 300.0, "mid": 700.0, "high": 1500.0}


def make_demo_tones(path: Union[str, Path], n_per_class: int = 30, rate: int = 4000, seconds: float = 0.25,
                    seed: int = 0) -> dict:
    """`path/<low|mid|high>/*.wav`: 16-bit mono sine tones (300, 700,
    1500 Hz, random phase and loudness) in noise."""
    import wave

    root, rng = Path(path), np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    for label, hz in _TONES.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            sig = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * hz * rng.uniform(0.95, 1.05) * t + rng.uniform(0, 6.3))
            sig = np.clip(sig + rng.normal(0, 0.1, t.shape), -1, 1)
            with wave.open(str(root / label / f"{label}_{i:04d}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes((sig * 32767).astype("<i2").tobytes())
    return {"path": str(root), "classes": {k: n_per_class for k in _TONES}, "sample_rate": rate}


def make_demo_denoise(path: Union[str, Path], noise: float = 0.3, seed: int = 0) -> dict:
    """`path` (.npz): scikit-learn's 8x8 digits in [0, 1] as `clean`, the
    same with Gaussian noise as `x` (and `x_test` / `clean_test`): a
    denoising autoencoder's data."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    clean = (load_digits().images / 16.0).astype(np.float32)[..., None]
    noisy = np.clip(clean + rng.normal(0, noise, clean.shape), 0, 1).astype(np.float32)
    cut = int(len(clean) * 0.8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=noisy[:cut], clean=clean[:cut], x_test=noisy[cut:], clean_test=clean[cut:])
    return {"path": str(path), "train": cut, "test": len(clean) - cut}


def make_demo_multi(path: Union[str, Path], n: int = 600, seed: int = 0) -> dict:
    """`path` (.npz): two inputs `a` (4 values) and `b` (3) and two
    targets, a class `kind` and a number `value`, with `*_test` arrays."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    kind = (a[:, 0] + b[:, 0] > 0).astype(np.int64)
    value = (2 * a[:, 1] - b[:, 2]).astype(np.float32)
    cut = int(n * 0.8)
    arrays = {"a": a, "b": b, "kind": kind, "value": value}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v[:cut] for k, v in arrays.items()}, **{f"{k}_test": v[cut:] for k, v in arrays.items()})
    return {"path": str(path), "train": cut, "test": n - cut}


# `dlcli demo-data --kind K PATH`: what each kind writes.
KINDS = {
    "cats_dogs": make_demo_image_folder,
    "shapes": make_demo_shapes,
    "texts": make_demo_texts,
    "tones": make_demo_tones,
    "denoise": make_demo_denoise,
    "multi": make_demo_multi,
}
