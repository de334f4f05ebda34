"""Offline stand-in tables for the shipped csv configs.

`write_weather_csv`: a generated hourly-style weather series (pressure,
temperature, humidity with a daily cycle and noise), the shape of the
Jena climate data the Keras forecasting example uses.
`write_penguins_csv`: the Palmer penguins table (real, with strings and
gaps) from the `palmerpenguins` package when installed, else a generated
table with the same columns.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

PENGUIN_COLUMNS = ("species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year")


def write_weather_csv(path: Path, rows: int = 3000, seed: int = 0) -> Path:
    """A weather series with a 144-row daily cycle; temperature follows
    pressure with a lag, so the past predicts the future."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    day = np.sin(2 * np.pi * t / 144)
    pressure = 1000 + 3 * np.sin(2 * np.pi * (t + 36) / 144) + rng.normal(0, 0.2, rows)
    temp = 8 + 6 * day + 0.5 * (pressure - 1000) + rng.normal(0, 0.3, rows)
    humidity = 70 - 15 * day + rng.normal(0, 2, rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.column_stack([t, pressure, temp, humidity])
    np.savetxt(path, table, delimiter=",", header="step,p_mbar,t_degc,rh_pct", comments="", fmt=["%d", "%.3f", "%.3f", "%.2f"])
    return path


def write_penguins_csv(path: Path, seed: int = 0) -> Path:
    """The Palmer penguins CSV (344 rows, NA gaps)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import palmerpenguins
    except ImportError:
        return _generated_penguins(path, seed)
    shutil.copyfile(Path(palmerpenguins.__file__).parent / "data" / "penguins.csv", path)
    return path


def _generated_penguins(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    kinds = {"Adelie": (39, 18.5, 190, 3700, "Torgersen"), "Chinstrap": (49, 18.5, 196, 3730, "Dream"),
             "Gentoo": (47.5, 15, 217, 5080, "Biscoe")}
    lines = [",".join(PENGUIN_COLUMNS)]
    for i in range(344):
        name = list(kinds)[i % 3]
        bl, bd, fl, bm, island = kinds[name]
        sex = "NA" if i % 40 == 0 else ("male" if i % 2 else "female")
        lines.append(f"{name},{island},{bl + rng.normal(0, 2):.1f},{bd + rng.normal(0, 1):.1f},"
                     f"{fl + rng.normal(0, 6):.0f},{bm + rng.normal(0, 300):.0f},{sex},{2007 + i % 3}")
    path.write_text("\n".join(lines) + "\n")
    return path
