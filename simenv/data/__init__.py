"""Datasets: MovieLens-100k loading and conversion to catalogs."""

from simenv.data.movielens import (
    DatasetNotFoundError,
    MovieLens,
    catalog_from_movielens,
    default_data_path,
    download_movielens,
    load_movielens,
)

__all__ = [
    "DatasetNotFoundError",
    "MovieLens",
    "catalog_from_movielens",
    "default_data_path",
    "download_movielens",
    "load_movielens",
]
