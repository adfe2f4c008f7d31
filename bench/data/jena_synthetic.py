"""A synthetic series with the genuine Jena file's schema and text format.

The genuine file cannot be shipped with the project, so the Jena loader's parsing,
validation, download and windowing are exercised on this stand-in: the same 15 columns
in the same order, the same ``dd.mm.yyyy HH:MM:SS`` timestamps every 10 minutes from
01.01.2009 00:10:00, and a temperature with daily and yearly cycles so that the
persistence baseline and the models have something real to find.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = [
    "Date Time", "p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)",
    "VPact (mbar)", "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)", "wv (m/s)",
    "max. wv (m/s)", "wd (deg)",
]
ROWS = 420_551
MEMBER = "jena_climate_2009_2016.csv"


def frame(n_rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows, dtype=np.float64)
    day, year = 144.0, 144.0 * 365.25
    temp = (9 - 10 * np.cos(2 * np.pi * t / year) - 4 * np.cos(2 * np.pi * t / day)
            + np.cumsum(rng.normal(0, 0.05, n_rows)) * 0.1 + rng.normal(0, 0.3, n_rows))
    p = 989 + 8 * np.sin(2 * np.pi * t / (day * 5)) + rng.normal(0, 0.5, n_rows)
    rh = np.clip(75 + 15 * np.cos(2 * np.pi * t / day) + rng.normal(0, 5, n_rows), 10, 100)
    vpmax = 6.1078 * np.exp(17.27 * temp / (temp + 237.3))
    vpact = vpmax * rh / 100
    dew = 237.3 * np.log(vpact / 6.1078) / (17.27 - np.log(vpact / 6.1078))
    wv = np.abs(rng.gamma(2.0, 1.0, n_rows))
    dates = pd.Timestamp("2009-01-01 00:10:00") + pd.to_timedelta(t * 10, unit="min")
    cols = {
        "Date Time": dates.strftime("%d.%m.%Y %H:%M:%S"),
        "p (mbar)": p, "T (degC)": temp, "Tpot (K)": temp + 273.15 + (1000 - p) * 0.0085,
        "Tdew (degC)": dew, "rh (%)": rh, "VPmax (mbar)": vpmax, "VPact (mbar)": vpact,
        "VPdef (mbar)": vpmax - vpact, "sh (g/kg)": 622 * vpact / p, "H2OC (mmol/mol)": 1000 * vpact / p,
        "rho (g/m**3)": 100 * p / (2.87 * (temp + 273.15)) * 10, "wv (m/s)": wv,
        "max. wv (m/s)": wv * 1.6, "wd (deg)": rng.uniform(0, 360, n_rows),
    }
    df = pd.DataFrame(cols)[COLUMNS]
    return df.round(2)


def write_csv(path: Path, n_rows: int = ROWS, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame(n_rows, seed).to_csv(path, index=False)
    return path


def zip_bytes(n_rows: int = ROWS, seed: int = 0) -> bytes:
    """The canonical download's layout: one CSV member in a deflated zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MEMBER, frame(n_rows, seed).to_csv(index=False))
    return buf.getvalue()
