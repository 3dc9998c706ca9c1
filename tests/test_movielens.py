from __future__ import annotations

import io
import socket
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from simenv.data import (
    DatasetNotFoundError,
    MovieLens,
    catalog_from_movielens,
    load_movielens,
)
from simenv.data import movielens as mlmod

GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


FAKE_FILES: dict[str, bytes] = {
    "u.genre": ("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n").encode(),
    "u.item": (
        f"1|Toy Story (1995)|01-Jan-1995||http://x/1|{_flags('Animation', 'Comedy')}\n"
        f"2|Café Noir (1949)|01-Jan-1949||http://x/2|{_flags('Film-Noir', 'Drama')}\n"
        f"4|unknown||||{_flags('unknown')}\n"
        f"7|Alien (1979)|01-Jan-1979||http://x/7|{_flags('Horror', 'Sci-Fi')}\n"
    ).encode("latin-1"),
    "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n5|33|F|writer|T8H1N\n",
    "u.data": (
        b"1\t1\t5\t881250949\n1\t7\t4\t881250950\n2\t1\t3\t881250951\n"
        b"2\t2\t1\t881250952\n5\t1\t4\t881250953\n5\t7\t2\t881250954\n"
    ),
}


def _write_fake(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in FAKE_FILES.items():
        (folder / name).write_bytes(data)
    return folder


def _fake_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/", b"")
        for name, data in FAKE_FILES.items():
            zf.writestr(f"ml-100k/{name}", data)
        zf.writestr("ml-100k/README", b"fake")
    return buf.getvalue()


class _Response(io.BytesIO):
    def __enter__(self) -> _Response:
        return self


def _patch_urlopen(monkeypatch: pytest.MonkeyPatch, payload: bytes) -> list[str]:
    calls: list[str] = []

    def fake_urlopen(url: str, timeout: float | None = None) -> _Response:
        calls.append(url)
        return _Response(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return calls


def _forbid_urlopen(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("no download was asked for")

    monkeypatch.setattr(urllib.request, "urlopen", boom)


# ------------------------------------------------------------------------------- fake dataset


def test_load_fake_dataset(tmp_path: Path) -> None:
    ml = load_movielens(_write_fake(tmp_path / "ml"))
    assert isinstance(ml, MovieLens)
    assert (ml.n_users, ml.n_items, len(ml.ratings)) == (3, 4, 6)
    assert ml.genre_names == GENRES
    assert list(ml.ratings.columns) == ["user", "item", "rating", "timestamp"]
    # raw ids 1, 2, 5 / 1, 2, 4, 7 become contiguous 0-based ids
    assert ml.ratings["user"].tolist() == [0, 0, 1, 1, 2, 2]
    assert ml.ratings["item"].tolist() == [0, 3, 0, 1, 0, 3]
    assert ml.users["raw_id"].tolist() == [1, 2, 5] and ml.users["zip"].tolist()[2] == "T8H1N"
    assert ml.items["title"].tolist()[1] == "Café Noir (1949)"
    assert ml.items["year"].tolist()[:2] == [1995.0, 1949.0] and np.isnan(ml.items["year"][2])
    assert ml.genre_matrix().shape == (4, 19)
    assert ml.items.loc[3, "Sci-Fi"] == 1 and ml.items.loc[3, "Comedy"] == 0


def test_catalog_from_fake(tmp_path: Path) -> None:
    ml = load_movielens(_write_fake(tmp_path / "ml"))
    c = catalog_from_movielens(ml, shrinkage=1.0)
    assert len(c) == 4 and c.topic_names == GENRES
    np.testing.assert_allclose(c.features.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(c.features[0, [3, 5]], 0.5)
    np.testing.assert_allclose(c.mean_rating[[0, 1, 3]], [4.0, 1.0, 3.0])
    assert np.isnan(c.mean_rating[2])
    # shrinkage 1 towards the global mean 19/6
    gm = 19 / 6
    np.testing.assert_allclose(c.quality[0], ((12 + gm) / 4 - 1) / 4, rtol=1e-5)
    np.testing.assert_allclose(c.quality[2], (gm - 1) / 4, rtol=1e-5)
    np.testing.assert_allclose(c.popularity_prior, np.array([4, 2, 1, 3]) / 10, rtol=1e-6)
    # creator = first listed real genre (unknown only if nothing else)
    assert c.creator.tolist() == [3, 8, 0, 11]
    assert c.titles[0] == "Toy Story (1995)"
    assert c.descriptions[0] == "An animation and comedy film from 1995."
    assert c.descriptions[2] == "A film of unknown year."
    assert (c.publish_tick == 0).all()


def test_missing_files_error_names_path_file_and_fix(tmp_path: Path) -> None:
    folder = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        load_movielens(folder)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(folder) in msg and "u.data" in msg
    assert "RECLOOP_DATA" in msg and "--download" in msg and "\n" not in msg
    # a partial folder names the first file that is missing
    _write_fake(folder)
    (folder / "u.user").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"u\.user"):
        load_movielens(folder)


def test_path_resolution_env_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_urlopen(monkeypatch)
    monkeypatch.setenv("RECLOOP_DATA", str(_write_fake(tmp_path / "env")))
    assert load_movielens().n_items == 4

    monkeypatch.delenv("RECLOOP_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetNotFoundError) as err:
        load_movielens()
    assert str(tmp_path / "home" / ".cache" / "recloop" / "ml-100k") in str(err.value)
    _write_fake(tmp_path / "home" / ".cache" / "recloop" / "ml-100k")
    assert load_movielens().n_users == 3


def test_download_from_fake_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _patch_urlopen(monkeypatch, _fake_zip())
    monkeypatch.delenv("RECLOOP_DATA", raising=False)
    monkeypatch.delenv(mlmod.URL_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ml = load_movielens(download=True)
    assert calls == [mlmod.ML100K_URL]
    cache = tmp_path / "home" / ".cache" / "recloop" / "ml-100k"
    assert ml.path == cache and (cache / "u.data").is_file() and (cache / "README").is_file()
    assert (ml.n_users, ml.n_items, len(ml.ratings)) == (3, 4, 6)
    # files present now: download=True does not fetch again
    load_movielens(download=True)
    assert len(calls) == 1
    # no temp folders left behind
    assert sorted(p.name for p in cache.parent.iterdir()) == ["ml-100k"]


def test_download_to_explicit_path_and_bad_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_urlopen(monkeypatch, _fake_zip())
    assert load_movielens(tmp_path / "x" / "ml", download=True).n_items == 4

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("other/readme.txt", b"not movielens")
    _patch_urlopen(monkeypatch, buf.getvalue())
    with pytest.raises(DatasetNotFoundError, match=r"u\.data"):
        load_movielens(tmp_path / "y", download=True)
    assert not (tmp_path / "y" / "readme.txt").exists()


def test_download_without_network_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed port on 127.0.0.1 (never the internet): the error names the URL, the reason
    and how to place the files by hand, and nothing is created."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/ml-100k.zip"
    monkeypatch.setenv(mlmod.URL_ENV_VAR, url)
    assert mlmod.download_url() == url
    target = tmp_path / "data" / "ml"
    with pytest.raises(DatasetNotFoundError) as err:
        load_movielens(target, download=True)
    msg = str(err.value)
    assert f"could not download MovieLens-100k from {url}:" in msg
    assert "refused" in msg.lower() and "\n" not in msg
    assert mlmod.ML100K_URL in msg and str(target) in msg and "RECLOOP_DATA" in msg
    assert not (tmp_path / "data").exists()


def test_download_of_something_else_than_a_zip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_urlopen(monkeypatch, b"<html>moved</html>")
    with pytest.raises(DatasetNotFoundError, match="did not return a zip archive"):
        mlmod.download_movielens(tmp_path / "ml", url="http://mirror.invalid/ml.zip")


# ------------------------------------------------------------------------------- real dataset


@pytest.mark.movielens
def test_real_movielens(movielens_path: Path) -> None:
    ml = load_movielens(movielens_path)
    assert (ml.n_users, ml.n_items, len(ml.ratings)) == (943, 1682, 100_000)
    r = ml.ratings
    assert r["user"].min() == 0 and r["user"].max() == 942 and r["user"].nunique() == 943
    assert r["item"].min() == 0 and r["item"].max() == 1681
    assert set(r["rating"].unique()) == {1, 2, 3, 4, 5}
    assert ml.genre_names[0] == "unknown" and ml.genre_names[-1] == "Western"
    assert ml.items.loc[0, "title"] == "Toy Story (1995)"
    assert ml.users["raw_id"].tolist() == list(range(1, 944))


@pytest.mark.movielens
def test_real_catalog(movielens_path: Path) -> None:
    c = catalog_from_movielens(load_movielens(movielens_path))
    assert len(c) == 1682 and c.n_topics == 19
    np.testing.assert_allclose(c.features.sum(axis=1), 1.0, atol=1e-5)
    assert ((c.quality >= 0) & (c.quality <= 1)).all()
    assert c.popularity_prior.sum() == pytest.approx(1.0, abs=1e-5)
    p = np.sort(c.popularity_prior)[::-1]
    assert p[:168].sum() > 0.4
    star_wars = c.titles.index("Star Wars (1977)")
    assert int(np.argmax(c.popularity_prior)) == star_wars
    assert c.mean_rating[star_wars] == pytest.approx(4.3585, abs=1e-3)
    # shrinkage pulls rarely rated extremes towards the middle
    assert c.quality.max() < 1.0 and c.quality.min() > 0.0
    assert np.isfinite(c.mean_rating).all()
    assert c.creator.min() >= 0 and c.creator.max() < 19
    assert c.creator_topics is not None and c.creator_topics.shape == (19, 19)
    assert all(d.endswith(".") for d in c.descriptions)
