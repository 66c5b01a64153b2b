"""Synthetic 48x48 faces with UTKFace-like labels, the default data set; ``FaceStyle`` sets
age signal against nuisance (the seed's best MLP gets ~0.70 age accuracy)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from agehpo.data.faces import AGE_BIN_EDGES, IMAGE_SIDE, DataError, FaceTable, table_digest

AGE_BIN_SHARES: tuple[float, ...] = (0.129, 0.065, 0.501, 0.192, 0.113)
ETHNICITY_SHARES: tuple[float, ...] = (0.425, 0.191, 0.145, 0.168, 0.071)
MALE_SHARE = 0.523  # gender 0 is male, as in UTKFace
SKIN_TONE: tuple[float, ...] = (0.80, 0.36, 0.70, 0.52, 0.64)  # mean skin level per ethnicity
_Arr = np.ndarray
_Params = dict[str, np.ndarray]
_Rng = np.random.Generator
_CHUNK = 128  # images drawn together; each float32 work array stays near 1 MB (cache)


@dataclass(frozen=True)
class FaceStyle:
    """Strength of the age signal against the nuisance (the difficulty knobs)."""

    age_jitter: float = 0.20  # sd of log(apparent age / true age)
    feature_jitter: float = 1.0  # scales the per-feature random variation
    shift: float = 0.07  # sd of the face centre, in half-image units
    scale: float = 0.06  # sd of log face scale
    rotation: float = 0.08  # sd of the in-plane rotation, radians
    lighting: float = 0.30  # largest left-right/top-bottom lighting gradient
    noise: float = 0.05  # sd of the per-pixel noise (intensity in [0, 1])


def make_synthetic(
    n_samples: int = 23705, seed: int = 13, style: FaceStyle | None = None
) -> FaceTable:
    """``n_samples`` labelled faces (the real set has 23,705), deterministic for ``seed``; the
    source is ``"synthetic:seed=<seed>,n=<n_samples>"``, ``style`` the tuned one when None."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise DataError(f"n_samples: {n_samples!r} is not accepted (accepted: integers >= 1)")
    style, rng = style or FaceStyle(), np.random.default_rng(seed)
    age, ethnicity, gender = _sample_labels(n_samples, rng)
    params = _face_params((age, ethnicity, gender), style, rng)
    pixels = np.empty((n_samples, IMAGE_SIDE * IMAGE_SIDE), np.uint8)
    for i0 in range(0, n_samples, _CHUNK):
        chunk = {k: v[i0 : i0 + _CHUNK, None, None] for k, v in params.items()}
        pixels[i0 : i0 + _CHUNK] = _draw(chunk, style, rng).reshape(-1, IMAGE_SIDE * IMAGE_SIDE)
    digest = table_digest(pixels, age, ethnicity, gender)
    return FaceTable(pixels, age, ethnicity, gender, f"synthetic:seed={seed},n={n_samples}", digest)


def _age_weights() -> np.ndarray:
    """Relative frequency of each age 1..116 inside its bin, shaped like UTKFace's."""
    a = np.arange(1, 117, dtype=np.float64)
    heaping = np.where(a % 5 == 0, 1.5, 1.0)  # real ages cluster on round numbers after 30
    return np.select(
        [a < 10, a < 20, a < 40, a < 60],
        [
            1.0 / a,  # many infants, fewer older children
            0.6 + (a - 10) / 9,  # rising through the teens
            np.exp(-0.5 * ((a - 27) / 6.0) ** 2) + 0.25,  # peak in the mid-twenties
            np.exp(-(a - 40) / 25) * heaping,
        ],
        np.exp(-(a - 60) / 12 - np.maximum(a - 90, 0) / 10) * heaping,  # few centenarians
    )


def _sample_labels(n: int, rng: _Rng) -> tuple[_Arr, _Arr, _Arr]:
    """int64 ages, ethnicities and genders with the real set's marginals."""
    bins = rng.choice(len(AGE_BIN_SHARES), size=n, p=np.array(AGE_BIN_SHARES) / sum(AGE_BIN_SHARES))
    ages, weights = np.arange(1, 117), _age_weights()
    age = np.empty(n, np.int64)
    for b, (lo, hi) in enumerate(zip((1, *AGE_BIN_EDGES), (*AGE_BIN_EDGES, 117), strict=True)):
        rows = np.flatnonzero(bins == b)
        inside = (ages >= lo) & (ages < hi)
        p = weights[inside] / weights[inside].sum()
        age[rows] = rng.choice(ages[inside], size=rows.size, p=p)
    shares = np.array(ETHNICITY_SHARES) / sum(ETHNICITY_SHARES)
    ethnicity = rng.choice(len(shares), size=n, p=shares).astype(np.int64)
    gender = (rng.random(n) >= MALE_SHARE).astype(np.int64)
    return age, ethnicity, gender


def _face_params(labels: tuple[_Arr, _Arr, _Arr], style: FaceStyle, rng: _Rng) -> _Params:
    """Per-image drawing parameters (float32, shape (N,)) from the labels and the style."""
    age, ethnicity, gender = labels
    j = style.feature_jitter
    normal = functools.partial(rng.normal, 0.0, size=age.size)
    uniform = functools.partial(rng.uniform, size=age.size)
    app = np.clip(age * np.exp(normal(style.age_jitter)), 0.5, 120.0)  # apparent age
    male = (gender == 0).astype(np.float64)
    child = np.clip((15.0 - app) / 13.0, 0.0, 1.0)  # 1 for infants, 0 from the mid-teens
    old = np.clip((app - 28.0) / 47.0, 0.0, 1.0)  # wrinkles start in the late twenties
    gray = np.clip((app - 32.0 + normal(9.0 * j)) / 38.0, 0.0, 1.0)
    bald = male * np.clip((app - 35.0) / 40.0, 0.0, 1.0) * uniform(0.0, 1.0)
    # white hair tends towards 0.88 whatever the base colour (blond to black for ethnicity 0)
    base = np.where(ethnicity == 0, uniform(0.08, 0.55), uniform(0.04, 0.18))
    light_dir = uniform(0.0, 2 * np.pi)
    light = style.lighting * uniform(0.0, 1.0)
    ey = -0.10 + 0.20 * child + normal(0.03 * j)
    stubble = male * np.clip((app - 16.0) / 8.0, 0.0, 1.0)
    params = {
        "cx": normal(style.shift),
        "cy": 0.03 + normal(style.shift),
        "scale": 0.86 * np.exp(normal(style.scale)),
        "rot": normal(style.rotation),
        "hw": 0.57 + 0.07 * child + 0.03 * male + normal(0.02 * j),
        "hh": 0.80 - 0.07 * child + normal(0.02 * j),
        "taper": 0.32 - 0.16 * child - 0.10 * male + normal(0.04 * j),
        "ey": ey,
        "ex": 0.25 + 0.01 * child + normal(0.015 * j),
        "erx": 0.085 + 0.05 * child + normal(0.01 * j),
        "ery": (0.05 + 0.045 * child) * (1.0 - 0.3 * old) + normal(0.006 * j),
        "brow": ey - 0.13 - 0.03 * child + normal(0.02 * j),
        "brow_t": 0.028 + 0.02 * male,
        "ny": ey + 0.25 - 0.06 * child,
        "my": ey + 0.47 - 0.15 * child + normal(0.025 * j),
        "mw": 0.17 - 0.04 * child + normal(0.015 * j),
        "mh": 0.040 - 0.015 * old + normal(0.004 * j),
        "hairline": -0.50 + 0.40 * bald + normal(0.04 * j),
        "hair_len": np.where(male > 0, -0.6, uniform(0.1, 1.0)),
        "hair": base + (0.88 - base) * gray,
        "tone": np.asarray(SKIN_TONE)[ethnicity] + normal(0.05 * j),
        "wrinkle": old**1.2 * uniform(0.6, 1.0),
        "beard": stubble * uniform(0.0, 1.0) * (uniform(0.0, 1.0) < 0.55),
        "phase": uniform(0.0, 2 * np.pi),
        "bg": uniform(0.15, 0.9),
        "bgx": uniform(-0.15, 0.15),
        "bgy": uniform(-0.15, 0.15),
        "lx": light * np.cos(light_dir),
        "ly": light * np.sin(light_dir),
        "gain": np.exp(normal(0.12)),
        "offset": normal(0.05),
    }
    return {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}


def _ramp(x: np.ndarray, slope: float | np.ndarray, offset: float | np.ndarray) -> np.ndarray:
    """A soft step ``clip(x * slope + offset, 0, 1)`` as a new array (antialiased edges)."""
    t = np.multiply(x, slope, dtype=np.float32)
    t += offset
    return np.clip(t, 0.0, 1.0, out=t)


def _spot(
    ux: _Arr, vy: _Arr, centre: tuple[_Arr, _Arr], rx: _Arr | float, ry: _Arr | float
) -> _Arr:
    """Soft ellipse mask at ``centre``, half-axes (rx, ry), from (B,1,W) and (B,H,1) grids."""
    mask = (4.5 - np.square((ux - centre[0]) * (2.0 / rx))) - np.square(
        (vy - centre[1]) * (2.0 / ry)
    )
    return np.clip(mask, 0.0, 1.0, out=mask)


def _blend(img: np.ndarray, value: np.ndarray | float, mask: np.ndarray) -> None:
    """Paint ``value`` over ``img`` with opacity ``mask``, in place."""
    img += np.subtract(value, img, dtype=np.float32) * mask


def _draw(p: dict[str, np.ndarray], style: FaceStyle, rng: np.random.Generator) -> np.ndarray:
    """Draw one chunk of faces from (B, 1, 1) parameters; returns uint8 (B, 48, 48)."""
    g = (np.arange(IMAGE_SIDE, dtype=np.float32) + 0.5) / (IMAGE_SIDE / 2) - 1.0
    gx, gy = g[None, None, :], g[None, :, None]
    inv, cos, sin = 1.0 / p["scale"], np.cos(p["rot"]), np.sin(p["rot"])
    ux, vy = (gx - p["cx"]) * inv, (gy - p["cy"]) * inv  # (B,1,48), (B,48,1), face units
    img = (p["bg"] + p["bgx"] * gx) + p["bgy"] * gy
    # outline and hair cap turn with the head; the small features sit at rotated centres but
    # are drawn axis-aligned (several times cheaper, and invisible at these angles)
    _features(img, p, ux, vy, _head(img, p, ux, vy, cos, sin), cos, sin)
    # nuisance: lighting gradient, contrast, sensor noise. The noise is the sum of two random
    # bytes (triangular: mean 255, sd 104.5), far cheaper to draw than normal variates.
    k = style.noise * 255.0 / 104.5
    img *= (1.0 + p["lx"] * gx) + p["ly"] * gy
    img *= p["gain"] * 255.0
    img += p["offset"] * 255.0 + (0.5 - 255.0 * k)
    raw = np.frombuffer(rng.bytes(2 * img.size), np.uint8).reshape(2, *img.shape)
    img += (raw[0].astype(np.float32) + raw[1]) * k
    return np.clip(img, 0.0, 255.0, out=img).astype(np.uint8)


def _head(img: _Arr, p: _Params, ux: _Arr, vy: _Arr, cos: _Arr, sin: _Arr) -> _Arr:
    """Paint hair and head outline into ``img``; returns the skin mask."""
    u, v = cos * ux + sin * vy, cos * vy - sin * ux  # rotated frame: u right, v down
    hair, hw, hh, tone = p["hair"], p["hw"], p["hh"], p["tone"]
    # long hair hangs behind the head; the cap covers the crown above the hairline
    back = _ramp(np.abs(ux), -12.0, (hw + 0.20) * 12.0 + 0.5)
    back = back * (_ramp(vy, -12.0, p["hair_len"] * 12.0 + 0.5) * _ramp(vy, 12.0, hh * 10.2 + 0.5))
    _blend(img, hair, back)
    # the jaw narrows below the centre
    width = (1.0 - p["taper"] * np.square(np.maximum(v, 0.0))) * hw
    q = np.divide(u, width, out=width)
    np.square(q, out=q)
    q += np.square(v * (1.0 / hh))
    head = _ramp(q, -5.0, 5.5)
    _blend(img, q * (-0.3 * tone) + 1.08 * tone, head)  # rounded shading to the outline
    cap = _ramp(q, -5.0, 1.18 * 5.0 + 0.5)
    cap *= np.clip(np.square(u) * 6.3 - v * 14.0 + (p["hairline"] * 14.0 + 0.5), 0.0, 1.0)
    _blend(img, hair, cap)
    return head - head * cap


def _features(img: _Arr, p: _Params, ux: _Arr, vy: _Arr, face: _Arr, cos: _Arr, sin: _Arr) -> None:
    """Paint age marks (lines, shadows, folds, stubble), then eyes, brows, nose and mouth."""

    def at(fu: _Arr | float, fv: _Arr | float) -> tuple[_Arr, _Arr]:
        return cos * fu - sin * fv, sin * fu + cos * fv

    rows = np.cos(vy * 55.0 + p["phase"]) - 0.3
    rows = np.maximum(rows, 0.0) * _ramp(vy, -14.0, (p["brow"] - 0.05) * 14.0 + 0.5)
    marks = (0.35 * rows) * _ramp(np.abs(ux), -14.0, 0.42 * 14.0 + 0.5)
    bag_v = p["ey"] + p["ery"] + 0.05
    for side in (-1.0, 1.0):
        marks += 0.25 * _spot(ux, vy, at(side * p["ex"], bag_v), p["erx"] * 1.2, 0.05)
    fold = np.abs(ux) - (0.10 + 0.45 * (vy - p["ny"]))
    fold = _ramp(np.abs(fold, out=fold), -30.0, 0.035 * 30.0 + 0.5)
    fold *= (0.35 * _ramp(vy, 20.0, 0.5 - 20.0 * p["ny"])) * _ramp(
        vy, -20.0, (p["my"] + 0.07) * 20.0 + 0.5
    )
    marks += fold
    marks *= p["wrinkle"] * face
    marks += face * ((0.45 * p["beard"]) * _ramp(vy, 10.0, 0.5 - 10.0 * (p["ny"] + 0.08)))
    img *= 1.0 - marks
    # features: eyes, brows, nostrils, mouth
    eyes = _spot(ux, vy, at(-p["ex"], p["ey"]), p["erx"], p["ery"])
    eyes += _spot(ux, vy, at(p["ex"], p["ey"]), p["erx"], p["ery"])
    _blend(img, 0.08, eyes)
    brow_rx = p["erx"] * 1.5 + 0.02
    brows = _spot(ux, vy, at(-p["ex"], p["brow"]), brow_rx, p["brow_t"])
    brows += _spot(ux, vy, at(p["ex"], p["brow"]), brow_rx, p["brow_t"])
    brows *= 0.8
    _blend(img, 0.7 * p["hair"], brows)
    img *= 1.0 - 0.3 * _spot(ux, vy, at(0.0, p["ny"]), 0.07, 0.035)
    _blend(img, 0.45 * p["tone"], _spot(ux, vy, at(0.0, p["my"]), p["mw"], p["mh"]))
