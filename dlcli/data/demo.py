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
