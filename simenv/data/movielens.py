"""MovieLens-100k: loading the GroupLens files and turning them into a `Catalog`.

The folder holds ``u.data`` (tab-separated user, item, rating, timestamp), ``u.item``
(pipe-separated, latin-1, 19 genre flags), ``u.user`` (pipe-separated) and ``u.genre``. It is
found at an explicit path, else ``$RECLOOP_DATA``, else ``~/.cache/recloop/ml-100k``; nothing is
downloaded unless asked for (``download=True``, the CLI's ``--download``).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simenv.catalog import Catalog

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ENV_VAR = "RECLOOP_DATA"
#: Where ``download=True`` fetches the zip from instead of `ML100K_URL` (a mirror; the tests
#: point it at a closed local port).
URL_ENV_VAR = "RECLOOP_MOVIELENS_URL"
REQUIRED_FILES = ("u.data", "u.item", "u.user", "u.genre")
N_GENRES = 19


class DatasetNotFoundError(FileNotFoundError):
    """The MovieLens files are not where we looked."""


@dataclass
class MovieLens:
    """MovieLens-100k with 0-based contiguous ids (``raw_id`` columns keep the file's ids)."""

    ratings: pd.DataFrame  # user, item, rating, timestamp
    items: pd.DataFrame  # item, raw_id, title, year, release_date, url, one column per genre
    users: pd.DataFrame  # user, raw_id, age, gender, occupation, zip
    genre_names: list[str]
    path: Path

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def genre_matrix(self) -> np.ndarray:
        """(n_items, 19) float32 0/1 genre flags."""
        return self.items[self.genre_names].to_numpy(dtype=np.float32)


def default_data_path() -> Path:
    """``$RECLOOP_DATA`` if set, else ``~/.cache/recloop/ml-100k``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "recloop" / "ml-100k"


def _resolve(path: str | os.PathLike[str] | None) -> tuple[Path, str]:
    if path is not None:
        return Path(path).expanduser(), "the path passed in"
    if os.environ.get(ENV_VAR):
        return default_data_path(), f"${ENV_VAR}"
    return default_data_path(), "the default cache folder"


def missing_files(path: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (path / name).is_file()]


def download_url() -> str:
    """``$RECLOOP_MOVIELENS_URL`` if set, else GroupLens' `ML100K_URL`."""
    return os.environ.get(URL_ENV_VAR) or ML100K_URL


def download_movielens(
    dest: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    timeout: float = 120.0,
) -> Path:
    """Fetch the ml-100k zip (``url``, default `download_url`) and extract its files flat into
    ``dest`` (default: the data path). A failed download is a `DatasetNotFoundError` naming the
    URL, the reason and how to place the files by hand."""
    url = url or download_url()
    target = Path(dest).expanduser() if dest is not None else default_data_path()
    payload = _fetch(url, target, timeout)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Extract into a sibling temp folder, then move the files in: no half-written dataset.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_dir = Path(tmp)
        try:
            archive = zipfile.ZipFile(io.BytesIO(payload))
        except zipfile.BadZipFile:
            raise DatasetNotFoundError(
                f"{url} did not return a zip archive; {_by_hand(target)}"
            ) from None
        with archive as zf:
            for info in zf.infolist():
                name = Path(info.filename).name  # flatten; never trust paths in the archive
                if info.is_dir() or not name or name.startswith("."):
                    continue
                with zf.open(info) as src, open(tmp_dir / name, "wb") as out:
                    shutil.copyfileobj(src, out)
        missing = missing_files(tmp_dir)
        if missing:
            raise DatasetNotFoundError(
                f"the archive from {url} has no {', '.join(missing)}; is it MovieLens-100k?"
            )
        target.mkdir(parents=True, exist_ok=True)
        for f in tmp_dir.iterdir():
            os.replace(f, target / f.name)
    return target


def _fetch(url: str, target: Path, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read())
    except (urllib.error.URLError, OSError) as exc:  # no network, refused, timed out, HTTP 404
        reason = getattr(exc, "reason", None) or exc
        raise DatasetNotFoundError(
            f"could not download MovieLens-100k from {url}: {reason}; {_by_hand(target)}"
        ) from exc


def _by_hand(target: Path) -> str:
    return (
        f"download ml-100k.zip yourself ({ML100K_URL}), unzip it and put u.data, u.item, "
        f"u.user and u.genre in {target}, or set {ENV_VAR} to the folder holding them"
    )


def movielens_folder(path: str | os.PathLike[str] | None = None, *, download: bool = False) -> Path:
    """The folder holding the MovieLens-100k files: ``path`` / ``$RECLOOP_DATA`` / the cache.

    Raises `DatasetNotFoundError` naming the folder and the missing file when the files are not
    there, unless ``download`` is true, in which case they are fetched into that folder first.
    """
    root, source = _resolve(path)
    missing = missing_files(root)
    if missing and download:
        download_movielens(root)
        missing = missing_files(root)
    if missing:
        raise DatasetNotFoundError(
            f"MovieLens-100k not found: {root / missing[0]} is missing (folder from {source}); "
            f"set {ENV_VAR} to an ml-100k folder or pass --download (download=True) to fetch it"
        )
    return root


def load_movielens(
    path: str | os.PathLike[str] | None = None, *, download: bool = False
) -> MovieLens:
    """Load MovieLens-100k from ``path`` / ``$RECLOOP_DATA`` / ``~/.cache/recloop/ml-100k``.

    Raises `DatasetNotFoundError` naming the folder and the missing file when the files are not
    there, unless ``download`` is true, in which case they are fetched into that folder first.
    """
    root = movielens_folder(path, download=download)
    genres = pd.read_csv(
        root / "u.genre", sep="|", header=None, names=["name", "id"], encoding="latin-1"
    ).dropna()
    genre_names = [str(g) for g in genres.sort_values("id")["name"]]
    if len(genre_names) != N_GENRES:
        raise ValueError(f"{root / 'u.genre'} lists {len(genre_names)} genres, expected 19")

    item_cols = ["raw_id", "title", "release_date", "video_release_date", "url", *genre_names]
    items = pd.read_csv(
        root / "u.item",
        sep="|",
        header=None,
        names=item_cols,
        encoding="latin-1",
        dtype={"title": str, "release_date": str, "url": str},
        keep_default_na=False,
    )
    items = items.drop(columns=["video_release_date"]).sort_values("raw_id", kind="stable")
    items = items.reset_index(drop=True)
    items.insert(0, "item", np.arange(len(items), dtype=np.int64))
    items[genre_names] = items[genre_names].astype(np.int8)
    items["release_date"] = pd.to_datetime(
        items["release_date"], format="%d-%b-%Y", errors="coerce"
    )
    year = items["title"].map(_year_from_title).astype("float64")
    items.insert(3, "year", year.fillna(items["release_date"].dt.year.astype("float64")))

    users = pd.read_csv(
        root / "u.user",
        sep="|",
        header=None,
        names=["raw_id", "age", "gender", "occupation", "zip"],
        encoding="latin-1",
        dtype={"zip": str},
    )
    users = users.sort_values("raw_id", kind="stable").reset_index(drop=True)
    users.insert(0, "user", np.arange(len(users), dtype=np.int64))

    raw = pd.read_csv(
        root / "u.data",
        sep="\t",
        header=None,
        names=["user", "item", "rating", "timestamp"],
        dtype=np.int64,
    )
    user_idx = _map_ids(raw["user"].to_numpy(), users["raw_id"].to_numpy(), "user", root)
    item_idx = _map_ids(raw["item"].to_numpy(), items["raw_id"].to_numpy(), "item", root)
    ratings = pd.DataFrame(
        {
            "user": user_idx,
            "item": item_idx,
            "rating": raw["rating"].to_numpy(dtype=np.int64),
            "timestamp": raw["timestamp"].to_numpy(dtype=np.int64),
        }
    )
    return MovieLens(ratings=ratings, items=items, users=users, genre_names=genre_names, path=root)


def catalog_from_movielens(ml: MovieLens, *, shrinkage: float = 10.0) -> Catalog:
    """A `Catalog` of the MovieLens movies.

    features: genre flags normalised per row; quality: mean rating shrunk towards the global mean
    with ``shrinkage`` pseudo-ratings, scaled from 1..5 stars to [0, 1]; popularity prior: rating
    counts (+1) normalised; creator: the primary (first listed) genre, so creators are stable
    genre "studios"; descriptions from the genres and the year.
    """
    n = ml.n_items
    flags = ml.genre_matrix()
    row_sum = flags.sum(axis=1, keepdims=True)
    features = np.where(row_sum > 0, flags / np.where(row_sum > 0, row_sum, 1.0), 1.0 / N_GENRES)

    item = ml.ratings["item"].to_numpy()
    stars = ml.ratings["rating"].to_numpy(dtype=np.float64)
    counts = np.bincount(item, minlength=n).astype(np.float64)
    sums = np.bincount(item, weights=stars, minlength=n)
    global_mean = float(stars.mean()) if stars.size else 3.0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rating = np.where(counts > 0, sums / counts, np.nan)
    shrunk = (sums + shrinkage * global_mean) / (counts + shrinkage)
    quality = np.clip((shrunk - 1.0) / 4.0, 0.0, 1.0)
    prior = (counts + 1.0) / (counts + 1.0).sum()

    # Primary genre: the first flagged real genre ("unknown" only if nothing else is set).
    real = flags[:, 1:] > 0
    creator = np.where(real.any(axis=1), np.argmax(real, axis=1) + 1, 0).astype(np.int64)
    creator_topics = np.zeros((N_GENRES, N_GENRES), dtype=np.float64)
    np.add.at(creator_topics, creator, features)
    ct_sum = creator_topics.sum(axis=1, keepdims=True)
    creator_topics = np.where(ct_sum > 0, creator_topics / np.where(ct_sum > 0, ct_sum, 1), 0.0)
    creator_topics[ct_sum[:, 0] == 0, np.flatnonzero(ct_sum[:, 0] == 0)] = 1.0

    titles = [str(t) for t in ml.items["title"]]
    years = ml.items["year"].to_numpy()
    descriptions = [_describe(flags[i], ml.genre_names, years[i]) for i in range(n)]
    return Catalog(
        features=features.astype(np.float32),
        quality=quality.astype(np.float32),
        popularity_prior=prior.astype(np.float32),
        creator=creator,
        publish_tick=np.zeros(n, dtype=np.int64),
        titles=titles,
        descriptions=descriptions,
        topic_names=list(ml.genre_names),
        mean_rating=mean_rating.astype(np.float32),
        creator_topics=creator_topics.astype(np.float32),
    )


def _year_from_title(title: str) -> float:
    m = re.search(r"\((\d{4})\)\s*$", title)
    return float(m.group(1)) if m else np.nan


def _map_ids(raw: np.ndarray, known: np.ndarray, what: str, root: Path) -> np.ndarray:
    idx = np.searchsorted(known, raw)
    idx_c = np.minimum(idx, max(len(known) - 1, 0))
    ok = (idx < len(known)) & (known[idx_c] == raw) if len(known) else np.zeros(len(raw), bool)
    if not ok.all():
        bad = raw[~ok][0]
        raise ValueError(f"{root / 'u.data'} rates {what} id {bad}, which is not in its table")
    return idx.astype(np.int64)


def _describe(flags: np.ndarray, genre_names: list[str], year: float) -> str:
    genres = [
        g.lower() for g, f in zip(genre_names, flags, strict=True) if f > 0 and g != "unknown"
    ]
    if not genres:
        kind = "film"
    elif len(genres) == 1:
        kind = f"{genres[0]} film"
    else:
        kind = f"{', '.join(genres[:-1])} and {genres[-1]} film"
    when = f"from {int(year)}" if np.isfinite(year) else "of unknown year"
    article = "An" if kind[0] in "aeiou" else "A"
    return f"{article} {kind} {when}."
