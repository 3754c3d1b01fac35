"""A small synthetic FER-2013 stand-in: procedurally drawn 48x48 faces with seven expressions.

It lets the whole pipeline run, and its tests pass, without the Kaggle download. Each face is
drawn from a handful of expression parameters (brows, eyes, nose wrinkle, mouth) whose
per-class distributions overlap, on top of nuisance variation (face shape, pose, lighting,
noise, occluders) that every class shares, so a model has to read the expression itself.
Everything is vectorised over the batch: one numpy expression draws a feature on every face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ferkit.atomic import atomic_path
from ferkit.emotions import FER2013_CLASSES, IMAGE_SIZE
from ferkit.errors import FerError
from ferkit.layout import SYNTHETIC_CSV, SYNTHETIC_VOTES
from ferkit.params import DEFAULT_PARAMS, stage_params

CSV_HEADER = "emotion,pixels,Usage"
# Kaggle `Usage` value and the params key giving its size, in file order.
SPLIT_USAGES: tuple[tuple[str, str], ...] = (
    ("Training", "train_per_class"), ("PublicTest", "valid_per_class"), ("PrivateTest", "test_per_class"),
)
GRID_SAMPLES_PER_CLASS = 8

# Small render batches keep the float32 temporaries in cache: 64 faces ran faster than 1,024.
_RENDER_BATCH = 64
# CSV text is built this many rows at a time, bounding its memory whatever N is.
_CSV_BATCH = 1024

Array = np.ndarray
Value = Array | float  # a per-image column (n, 1, 1) or one number for every face
Face = dict[str, Array]
Draw = Callable[[Array, Array, Array, Face, Array], Array]

# What each expression does to the face, as offsets from Neutral (the last row). Columns:
# brow_raise, brow_tilt (+ lifts the inner ends), brow_furrow, eye_open, nose_wrinkle,
# cheek_fold, mouth_curve (+ smiles), mouth_open, mouth_width, lip_press, lip_lift.
_EXPRESSION_KEYS = (
    "brow_raise", "brow_tilt", "brow_furrow", "eye_open", "nose_wrinkle", "cheek_fold",
    "mouth_curve", "mouth_open", "mouth_width", "lip_press", "lip_lift",
)
_EXPRESSIONS = np.array([
    # raise  tilt  furrow  eye  wrinkle cheek curve  open  width press lift
    [-0.60, -1.00, 1.00, 0.55, 0.30, 0.00, -0.15, 0.00, 0.85, 1.00, 0.00],  # Angry
    [-0.40, -0.30, 0.40, 0.70, 1.00, 0.40, -0.40, 0.08, 0.95, 0.20, 1.00],  # Disgust
    [0.70, 0.80, 0.40, 1.45, 0.00, 0.00, -0.30, 0.45, 1.20, 0.00, 0.00],    # Fear
    [0.10, 0.00, 0.00, 0.80, 0.00, 1.00, 1.00, 0.20, 1.15, 0.00, 0.00],     # Happy
    [0.15, 0.90, 0.30, 0.80, 0.00, 0.00, -0.90, 0.00, 0.95, 0.30, 0.00],    # Sad
    [1.00, 0.10, 0.00, 1.50, 0.00, 0.00, 0.00, 1.00, 0.60, 0.00, 0.00],     # Surprise
    [0.00, 0.00, 0.00, 1.00, 0.00, 0.00, 0.00, 0.00, 1.00, 0.00, 0.00],     # Neutral
], dtype=np.float32)
# Per-image jitter of each parameter: wide enough that weak expressions blur into Neutral.
_EXPRESSION_JITTER = np.array(
    [0.20, 0.20, 0.15, 0.12, 0.15, 0.15, 0.15, 0.08, 0.08, 0.15, 0.15], dtype=np.float32)
# Bounds that keep the drawing sane and each feature inside its drawing window.
_EXPRESSION_LIMITS = {
    "brow_raise": (-1.0, 1.5), "brow_tilt": (-1.5, 1.5), "brow_furrow": (0.0, 1.2),
    "eye_open": (0.25, 1.9), "nose_wrinkle": (0.0, 1.2), "cheek_fold": (0.0, 1.2),
    "mouth_curve": (-1.4, 1.4), "mouth_open": (0.0, 1.3), "mouth_width": (0.5, 1.4),
    "lip_press": (0.0, 1.0), "lip_lift": (0.0, 1.3),
}
# Chance of visible teeth when the mouth is open (a bared-teeth cue, never decisive on its own).
_TEETH_CHANCE = np.array([0.4, 0.5, 0.3, 0.6, 0.0, 0.1, 0.0], dtype=np.float32)


def generate(n_per_class: int, seed: int) -> tuple[Array, Array]:
    """`n_per_class` faces of each emotion, shuffled: images uint8 (N, 48, 48), labels int64 (N,)."""
    if not _is_integer(n_per_class) or n_per_class < 1:
        raise FerError(f"synthetic images per class must be an integer >= 1, got {n_per_class!r}")
    if not _is_integer(seed) or seed < 0:
        raise FerError(f"synthetic seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(FER2013_CLASSES), dtype=np.int64), n_per_class))
    face = _sample_faces(labels, rng)
    chunks = [_render({key: values[start:start + _RENDER_BATCH] for key, values in face.items()}, rng)
              for start in range(0, len(labels), _RENDER_BATCH)]
    return np.concatenate(chunks), labels


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def split_seed(seed: int, split_index: int) -> int:
    """An independent seed per split, so train, valid and test never share a face."""
    return int(np.random.SeedSequence([seed, split_index]).generate_state(1)[0])


def run(params_path: Path = DEFAULT_PARAMS, out: Path | None = None, grid: Path | None = None) -> None:
    params = stage_params("synth", params_path)
    out = SYNTHETIC_CSV if out is None else Path(out)
    if grid is not None and Path(grid).suffix.lower() != ".png":
        raise FerError(f"{grid}: the sample grid is written as PNG, so its name must end in .png")
    splits = [(usage, *generate(params[key], split_seed(params["seed"], index)))
              for index, (usage, key) in enumerate(SPLIT_USAGES)]
    _write_csv(out, splits)
    # The votes go beside the CSV, under the name FER+ gives them.
    _write_votes(out.with_name(SYNTHETIC_VOTES.name), splits, split_seed(params["seed"], len(SPLIT_USAGES)))
    if grid is not None:
        _, images, labels = splits[0]
        save_grid(Path(grid), images, labels)


# --- sampling ---------------------------------------------------------------------------------

def _sample_faces(labels: Array, rng: np.random.Generator) -> Face:
    return {**_sample_expression(labels, rng), **_sample_appearance(len(labels), rng)}


def _sample_expression(labels: Array, rng: np.random.Generator) -> Face:
    n = len(labels)
    neutral = _EXPRESSIONS[-1]
    # Real expressions range from faint to exaggerated; faint ones overlap Neutral on purpose.
    intensity = rng.uniform(0.45, 1.15, size=(n, 1)).astype(np.float32)
    jitter = rng.standard_normal((n, len(_EXPRESSION_KEYS))).astype(np.float32) * _EXPRESSION_JITTER
    values = neutral + intensity * (_EXPRESSIONS[labels] - neutral) + jitter
    expression = {key: values[:, column] for column, key in enumerate(_EXPRESSION_KEYS)}
    for key, (low, high) in _EXPRESSION_LIMITS.items():
        expression[key] = np.clip(expression[key], low, high)
    expression["teeth"] = (rng.random(n) < _TEETH_CHANCE[labels]).astype(np.float32)
    # Disgust lifts one side of the upper lip; which side is a coin toss.
    expression["lip_side"] = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)
    return expression


def _sample_appearance(n: int, rng: np.random.Generator) -> Face:
    def uniform(low: float, high: float) -> Array:
        return rng.uniform(low, high, size=n).astype(np.float32)

    return {
        "center_x": uniform(21.0, 27.0), "center_y": uniform(22.5, 28.5),
        "scale": uniform(16.5, 21.0), "angle": np.radians(uniform(-12.0, 12.0)),
        "face_width": uniform(0.82, 1.0), "face_height": uniform(1.12, 1.32),
        "eye_spacing": uniform(0.32, 0.40), "eye_height": uniform(-0.17, -0.09),
        "mouth_height": uniform(0.50, 0.62), "brow_thickness": uniform(0.035, 0.065),
        "skin": uniform(0.35, 0.85), "background": uniform(0.0, 1.0),
        "hair": uniform(0.03, 0.5), **_sample_hair(n, rng),
        "feature_dark": uniform(0.45, 0.8), "light_gain": uniform(0.0, 0.35),
        "light_angle": uniform(0.0, 2 * np.pi), "noise": uniform(0.01, 0.05),
        "occluder": (rng.random(n) < 0.3).astype(np.float32), "occluder_tone": uniform(0.0, 1.0),
        "occluder_x": uniform(4.0, 44.0), "occluder_y": uniform(4.0, 44.0),
        "occluder_w": uniform(2.5, 7.0), "occluder_h": uniform(2.5, 7.0),
    }


def _sample_hair(n: int, rng: np.random.Generator) -> Face:
    """Hair covers the top of the head down to `hairline` and frames the face down to `hair_length`."""
    bald = rng.random(n) < 0.15
    hairline = rng.uniform(-0.88, -0.55, size=n)
    length = rng.uniform(-0.5, 0.9, size=n)
    return {"hairline": np.where(bald, -9.0, hairline).astype(np.float32),
            "hair_length": np.where(bald, -9.0, length).astype(np.float32)}


# --- drawing primitives: signed distances in face units, turned into soft pixel coverage -----

def _column(values: Array) -> Array:
    """Per-image values shaped to broadcast against (n, 48, 48) pixel arrays."""
    return values[:, None, None]


def _coverage(signed_distance: Array, scale: Array) -> Array:
    """How much of each pixel a shape covers: a one-pixel ramp across its edge, for antialiasing."""
    return np.clip(0.5 - signed_distance * scale, 0.0, 1.0)


def _ellipse(u: Array, v: Array, cu: Value, cv: Value, half_width: Value, half_height: Value) -> Array:
    """Approximate signed distance to an ellipse, scaled by the gradient so thin ones stay thin."""
    du, dv = u - cu, v - cv
    radius = np.sqrt((du / half_width) ** 2 + (dv / half_height) ** 2)
    gradient = np.sqrt((du / half_width**2) ** 2 + (dv / half_height**2) ** 2) + 1e-6
    return radius * (radius - 1.0) / gradient


def _circle(u: Array, v: Array, cu: Value, cv: Value, radius: Value) -> Array:
    return np.hypot(u - cu, v - cv) - radius


def _segment(u: Array, v: Array, start: tuple[Value, Value], end: tuple[Value, Value],
             half_thickness: Value) -> Array:
    du, dv = end[0] - start[0], end[1] - start[1]
    along = np.clip(((u - start[0]) * du + (v - start[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - start[0] - along * du, v - start[1] - along * dv) - half_thickness


def _paint(image: Array, coverage: Array, tone: Value) -> Array:
    return image + coverage * (tone - image)


def _darken(image: Array, coverage: Array, amount: Value) -> Array:
    return image * (1.0 - coverage * amount)


# --- rendering --------------------------------------------------------------------------------

def _render(face: Face, rng: np.random.Generator) -> Array:
    f = {key: _column(values) for key, values in face.items()}
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5
    u, v = _to_face_frame(f, xs, ys)
    image = np.broadcast_to(f["background"], u.shape).astype(np.float32)
    image = _draw_head(image, u, v, f, f["scale"])
    for anchor, shape, draws in _FEATURE_WINDOWS:
        image = _draw_in_window(image, f, anchor(f), shape, draws)
    image = _draw_occluder(image, xs, ys, f)
    image = _light_and_noise(image, xs, ys, f, rng)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _to_face_frame(f: Face, xs: Array, ys: Array) -> tuple[Array, Array]:
    """Pixel centres in each face's own frame: origin mid-face, v pointing chin-wards, unit ~ half-width."""
    dx, dy = xs - f["center_x"], ys - f["center_y"]
    cos, sin = np.cos(f["angle"]), np.sin(f["angle"])
    return (cos * dx + sin * dy) / f["scale"], (cos * dy - sin * dx) / f["scale"]


def _draw_in_window(image: Array, f: Face, anchor: tuple[Value, Value], shape: tuple[int, int],
                    draws: tuple[Draw, ...]) -> Array:
    """Run `draws` only on a window of pixels around `anchor` (face units) in each image.

    Small features drawn over the whole 48x48 frame would waste most of the arithmetic on pixels
    they cannot touch; the windows are sized to hold each feature at the largest scale and tilt.
    """
    cos, sin = np.cos(f["angle"]), np.sin(f["angle"])
    anchor_x = f["center_x"] + f["scale"] * (cos * anchor[0] - sin * anchor[1])
    anchor_y = f["center_y"] + f["scale"] * (sin * anchor[0] + cos * anchor[1])
    height, width = shape
    top = np.clip(np.round(anchor_y - height / 2), 0, IMAGE_SIZE - height).astype(np.intp)
    left = np.clip(np.round(anchor_x - width / 2), 0, IMAGE_SIZE - width).astype(np.intp)
    rows = top + np.arange(height)[None, :, None]
    cols = left + np.arange(width)[None, None, :]
    batch = np.arange(len(image))[:, None, None]
    u, v = _to_face_frame(f, (cols + 0.5).astype(np.float32), (rows + 0.5).astype(np.float32))
    patch = image[batch, rows, cols]
    for draw in draws:
        patch = draw(patch, u, v, f, f["scale"])
    image[batch, rows, cols] = patch
    return image


def _draw_head(image: Array, u: Array, v: Array, f: Face, s: Array) -> Array:
    width, height = f["face_width"], f["face_height"]
    neck = np.maximum(np.abs(u) - 0.5 * width, 0.9 - v)
    image = _paint(image, _coverage(neck, s), f["skin"] * 0.75)
    head = _ellipse(u, v, 0.0, -0.05, width * 1.1, height * 1.08)
    # Hair behind the face shows as a rim down to the hair length, then the face covers the rest.
    image = _paint(image, _coverage(np.maximum(head, v - f["hair_length"]), s), f["hair"])
    # The jaw narrows towards the chin, giving an egg rather than an ellipse.
    jaw = width * (1.0 - 0.2 * np.clip(v / height, 0.0, 1.0))
    image = _paint(image, _coverage(_ellipse(u, v, 0.0, 0.0, jaw, height), s), f["skin"])
    fringe = np.maximum(head, v - (f["hairline"] + 0.45 * u * u))
    return _paint(image, _coverage(fringe, s), f["hair"])


def _draw_eyes(image: Array, u: Array, v: Array, f: Face, s: Array) -> Array:
    half_height = 0.075 * f["eye_open"]
    for side in (-1.0, 1.0):
        cu, cv = side * f["eye_spacing"], f["eye_height"]
        socket = _ellipse(u, v, cu, cv - 0.02, 0.22, 0.15)
        image = _darken(image, _coverage(socket, s * 0.25), 0.18)  # soft: a shadow, not a shape
        opening = _ellipse(u, v, cu, cv, 0.15, half_height)
        image = _paint(image, _coverage(opening, s), np.minimum(f["skin"] + 0.25, 0.95))
        iris = _coverage(_circle(u, v, cu, cv, 0.065), s) * _coverage(opening, s)
        image = _paint(image, iris, 0.08)
        # Lid outline, heavier on the upper lid where the lashes are.
        lid = np.abs(opening) - np.where(v < cv, 0.035, 0.015)
        image = _darken(image, _coverage(lid, s), f["feature_dark"])
    return image


def _draw_brows(image: Array, u: Array, v: Array, f: Face, s: Array) -> Array:
    base = f["eye_height"] - 0.24 - 0.10 * f["brow_raise"]
    inner = base - 0.12 * f["brow_tilt"]
    outer = base + 0.05 * f["brow_tilt"]
    for side in (-1.0, 1.0):
        brow = _segment(u, v, (side * 0.12, inner), (side * 0.56, outer), f["brow_thickness"])
        image = _darken(image, _coverage(brow, s), f["feature_dark"])
        # Vertical furrows between the brows when they are pulled together.
        furrow = _segment(u, v, (side * 0.05, inner + 0.02), (side * 0.06, inner + 0.16), 0.012)
        image = _darken(image, _coverage(furrow, s), 0.45 * np.minimum(f["brow_furrow"], 1.0))
    return image


def _draw_nose(image: Array, u: Array, v: Array, f: Face, s: Array) -> Array:
    wrinkle = f["nose_wrinkle"]
    for row in range(3):
        line = _segment(u, v, (-0.11, -0.04 + 0.07 * row), (0.11, -0.02 + 0.07 * row), 0.014)
        image = _darken(image, _coverage(line, s), 0.5 * wrinkle)
    nostril_v = 0.30 - 0.05 * wrinkle  # a wrinkled nose pulls the nostrils up
    under_nose = _ellipse(u, v, 0.0, nostril_v + 0.04, 0.16, 0.05)
    image = _darken(image, _coverage(under_nose, s * 0.5), 0.15)  # a soft shadow
    for side in (-1.0, 1.0):
        nostril = _ellipse(u, v, side * 0.075, nostril_v, 0.05, 0.028)
        image = _darken(image, _coverage(nostril, s), 0.55)
        # Smile lines from the nose wings towards the mouth corners.
        fold_end = (side * 0.40, f["mouth_height"] + 0.02)
        fold = _segment(u, v, (side * 0.17, nostril_v - 0.02), fold_end, 0.02)
        image = _darken(image, _coverage(fold, s), 0.35 * f["cheek_fold"])
    return image


def _draw_mouth(image: Array, u: Array, v: Array, f: Face, s: Array) -> Array:
    half_width = 0.30 * f["mouth_width"]
    t = np.clip(u / half_width, -1.0, 1.0)
    across = np.sqrt(1.0 - t * t)  # the opening is widest mid-mouth and closes at the corners
    centre = f["mouth_height"] - 0.15 * f["mouth_curve"] * t * t
    lift = 0.10 * f["lip_lift"] * np.exp(-(((t - 0.45 * f["lip_side"]) / 0.35) ** 2))
    top = centre - 0.10 * f["mouth_open"] * across - lift
    bottom = centre + 0.16 * f["mouth_open"] * across
    lip = 0.045 * (1.0 - 0.45 * f["lip_press"])
    beyond_corners = np.abs(u) - half_width
    lips = np.maximum(np.maximum(top - lip - v, v - bottom - lip), beyond_corners)
    image = _darken(image, _coverage(lips, s), 0.7 * f["feature_dark"])
    cavity = np.maximum(np.maximum(top - v, v - bottom), beyond_corners)
    image = _paint(image, _coverage(cavity, s), 0.06)
    teeth = np.maximum(np.maximum(top - v, v - (top + 0.5 * (bottom - top))), beyond_corners)
    shown = f["teeth"] * np.clip(f["mouth_open"] / 0.15, 0.0, 1.0)  # no teeth on a closed lip line
    return _paint(image, _coverage(teeth, s) * shown, 0.85)


def _draw_occluder(image: Array, x: Array, y: Array, f: Face) -> Array:
    """A hand, strand of hair or object over part of some faces, as in real photos."""
    box = np.maximum(np.abs(x - f["occluder_x"]) - f["occluder_w"],
                     np.abs(y - f["occluder_y"]) - f["occluder_h"])
    return _paint(image, _coverage(box, 1.0) * f["occluder"], f["occluder_tone"])  # x, y are in pixels


def _light_and_noise(image: Array, x: Array, y: Array, f: Face, rng: np.random.Generator) -> Array:
    half = IMAGE_SIZE / 2
    ramp = ((x - half) * np.cos(f["light_angle"]) + (y - half) * np.sin(f["light_angle"])) / half
    image = image * (1.0 + f["light_gain"] * ramp)
    return image + f["noise"] * rng.standard_normal(image.shape, dtype=np.float32)


def _upper_face_anchor(f: Face) -> tuple[Value, Value]:
    return 0.0, f["eye_height"] - 0.24


def _nose_anchor(f: Face) -> tuple[Value, Value]:
    return 0.0, 0.30


def _mouth_anchor(f: Face) -> tuple[Value, Value]:
    return 0.0, f["mouth_height"]


# (anchor, (height, width) in pixels, draw functions): sized for scale 21 and a 12 degree tilt.
_FEATURE_WINDOWS = (
    (_upper_face_anchor, (28, 36), (_draw_eyes, _draw_brows)),
    (_nose_anchor, (24, 26), (_draw_nose,)),
    (_mouth_anchor, (28, 28), (_draw_mouth,)),
)


# --- output -----------------------------------------------------------------------------------

def _pixel_codes(separator: str) -> Array:
    """Each byte value's decimal text plus `separator`, NUL-padded to 4 bytes and read as one uint32."""
    records = np.zeros((256, 4), dtype=np.uint8)
    for value in range(256):
        text = f"{value}{separator}".encode()
        records[value, :len(text)] = np.frombuffer(text, dtype=np.uint8)
    return records.view(np.uint32).ravel()


def _csv_rows(usage: str, images: Array, labels: Array) -> Iterator[bytes]:
    """Format rows with array lookups: a Python join over 2,304 numbers a row would dominate the run time.

    Every pixel becomes a fixed 4-byte code, the last of a row ending in a newline instead of a
    space; dropping the NUL padding then leaves the rows' pixel text, one per line. Rows come
    a batch at a time so a large set never holds all its text in memory.
    """
    spaced, last = _pixel_codes(" "), _pixel_codes("\n")
    suffix = f",{usage}\n".encode()
    for start in range(0, len(images), _CSV_BATCH):
        flat = images[start:start + _CSV_BATCH].reshape(-1, IMAGE_SIZE * IMAGE_SIZE)
        codes = spaced[flat]
        codes[:, -1] = last[flat[:, -1]]
        lines = codes.tobytes().replace(b"\0", b"").split(b"\n")  # the last, empty piece is never zipped
        batch_labels = labels[start:start + _CSV_BATCH]
        yield from (b"%d," % label + pixels + suffix for label, pixels in zip(batch_labels, lines))


def _write_csv(out: Path, splits: list[tuple[str, Array, Array]]) -> None:
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        handle.write(CSV_HEADER.encode() + b"\n")
        for usage, images, labels in splits:
            handle.writelines(_csv_rows(usage, images, labels))


# The FER+ votes file's columns; ours are its first eight in FER-2013's order, plus contempt.
VOTES_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
_VOTE_COLUMN_OF_CLASS = np.array([4, 5, 6, 1, 3, 2, 0])  # FER-2013 label -> its column among the ten
_CONTEMPT, _ANNOTATORS = 7, 10


def synthetic_votes(labels: Array, rng: np.random.Generator) -> Array:
    """Ten FER+-style votes per image (int, N x 10 in the votes file's column order): 4-10 for its
    own class and the rest spread over all ten columns, so the majority rule keeps most images,
    drops some and, for a few neutral faces, finds contempt."""
    agreeing = rng.integers(4, _ANNOTATORS + 1, len(labels))
    votes = np.stack([rng.multinomial(_ANNOTATORS - agree, np.full(10, 0.1)) for agree in agreeing])
    own = _VOTE_COLUMN_OF_CLASS[labels]
    own[(labels == FER2013_CLASSES.index("Neutral")) & (rng.random(len(labels)) < 0.1)] = _CONTEMPT
    votes[np.arange(len(labels)), own] += agreeing
    return votes


def _write_votes(out: Path, splits: list[tuple[str, Array, Array]], seed: int) -> None:
    """The FER+ votes for the synthetic CSV, row for row; one row in a hundred names no image."""
    rng = np.random.default_rng(seed)
    with atomic_path(out) as tmp, open(tmp, "w") as handle:
        handle.write(VOTES_HEADER + "\n")
        row = 0
        for usage, _, labels in splits:
            for votes in synthetic_votes(labels, rng):
                name = "" if rng.random() < 0.01 else f"fer{row:07d}.png"
                handle.write(f"{usage},{name},{','.join(map(str, votes))}\n")
                row += 1


def save_grid(path: Path, images: Array, labels: Array, per_class: int = GRID_SAMPLES_PER_CLASS) -> None:
    """A PNG with one row per emotion holding its first `per_class` images."""
    # A bare Figure renders with Agg and leaves pyplot's global state and backend alone.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(per_class * 0.9 + 0.9, len(FER2013_CLASSES) * 0.95))
    axes = figure.subplots(len(FER2013_CLASSES), per_class, squeeze=False)
    for label, row in enumerate(axes):
        picks = np.flatnonzero(labels == label)[:per_class]
        for axis, index in zip(row, picks):
            axis.imshow(images[index], cmap="gray", vmin=0, vmax=255)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
            axis.spines[:].set_visible(False)
        row[0].set_ylabel(FER2013_CLASSES[label], rotation=0, ha="right", va="center", fontsize=9)
    figure.tight_layout(pad=0.3)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
