"""MovieLens-100k, read at run time from the ``recbole==1.2.1`` wheel on PyPI.

The dataset's licence forbids redistribution, so it is never committed or extracted
into the repository: ``pip download --no-deps recbole==1.2.1`` fetches the 2 MB wheel
into a cache directory (``$PERSONALIZE_DATA_DIR``, else ``~/.cache/rasa-personalize``),
its SHA-256 is checked, and the three tab-separated files under
``recbole/dataset_example/ml-100k/`` are read straight from the zip.

943 users, 1,682 movies, 100,000 ratings (1-5) with timestamps; users have age, gender,
occupation and zip code; movies have a title, a release year and genres. Ids are kept
as the dataset's strings ("1" .. "943", "1" .. "1682").
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.recommend.errors import DatasetUnavailableError

DATA_DIR_VARIABLE: Final = "PERSONALIZE_DATA_DIR"
RECBOLE_REQUIREMENT: Final = "recbole==1.2.1"
RECBOLE_WHEEL: Final = "recbole-1.2.1-py3-none-any.whl"
# The wheel's SHA-256 as published on PyPI; a different file is refused.
RECBOLE_WHEEL_SHA256: Final = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MOVIELENS_PREFIX: Final = "recbole/dataset_example/ml-100k/ml-100k"
DOWNLOAD_TIMEOUT_S: Final = 180


@dataclass(frozen=True, eq=False)
class Ratings:
    """One row per rating: parallel arrays."""

    user_ids: NDArray[np.str_]
    item_ids: NDArray[np.str_]
    ratings: NDArray[np.float64]
    timestamps: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ratings)


@dataclass(frozen=True, eq=False)
class Users:
    """One row per user: parallel arrays."""

    user_ids: NDArray[np.str_]
    ages: NDArray[np.int64]
    genders: NDArray[np.str_]
    occupations: NDArray[np.str_]
    zip_codes: NDArray[np.str_]


@dataclass(frozen=True, eq=False)
class Items:
    """One row per movie; ``release_years`` is 0 where the dataset has none."""

    item_ids: NDArray[np.str_]
    titles: NDArray[np.str_]
    release_years: NDArray[np.int64]
    genres: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, eq=False)
class MovieLens100k:
    """The whole dataset."""

    ratings: Ratings
    users: Users
    items: Items


def data_dir() -> Path:
    """Where downloaded datasets are cached (read from the environment on each call)."""
    configured = os.environ.get(DATA_DIR_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "rasa-personalize"


def fetch_recbole_wheel(cache_dir: Path | None = None, *, download: bool = True) -> Path:
    """The cached recbole wheel, downloading it with pip when absent.

    Raises:
        DatasetUnavailableError: not cached and ``download`` is off, pip failed (e.g. no
            network), or the file's checksum is wrong.
    """
    directory = cache_dir if cache_dir is not None else data_dir()
    wheel = directory / RECBOLE_WHEEL
    if wheel.is_file():
        _check_sha256(wheel)
        return wheel
    if not download:
        raise DatasetUnavailableError(f"{wheel} is not cached and downloading is off")
    directory.mkdir(parents=True, exist_ok=True)
    # pip writes into a private directory first, so a concurrent reader never sees a
    # half-downloaded wheel under the final name.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            # Fail in seconds, not minutes, when there is no network.
            "--timeout",
            "15",
            "--retries",
            "1",
            "--dest",
            scratch,
            RECBOLE_REQUIREMENT,
        ]
        try:
            completed = subprocess.run(  # noqa: S603  # fixed argv, no shell
                command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DatasetUnavailableError(
                f"could not run pip to download {RECBOLE_REQUIREMENT}: {error}"
            ) from error
        downloaded = Path(scratch) / RECBOLE_WHEEL
        if completed.returncode != 0 or not downloaded.is_file():
            detail = (completed.stderr or completed.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit code {completed.returncode}"
            raise DatasetUnavailableError(
                f"pip could not download {RECBOLE_REQUIREMENT} (MovieLens-100k): {reason}"
            )
        _check_sha256(downloaded)
        shutil.move(downloaded, wheel)
    return wheel


def load_movielens_100k(cache_dir: Path | None = None, *, download: bool = True) -> MovieLens100k:
    """MovieLens-100k from the (cached or downloaded) recbole wheel.

    Raises:
        DatasetUnavailableError: the wheel cannot be fetched or its files are not as expected.
    """
    wheel = fetch_recbole_wheel(cache_dir, download=download)
    try:
        with zipfile.ZipFile(wheel) as archive:
            ratings = _read_table(archive, "inter")
            users = _read_table(archive, "user")
            items = _read_table(archive, "item")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as error:
        raise DatasetUnavailableError(
            f"cannot read MovieLens-100k from {wheel}: {error}"
        ) from error
    try:
        return MovieLens100k(
            ratings=Ratings(
                user_ids=np.asarray(ratings["user_id"], dtype=np.str_),
                item_ids=np.asarray(ratings["item_id"], dtype=np.str_),
                ratings=np.asarray(ratings["rating"], dtype=np.float64),
                timestamps=np.asarray(ratings["timestamp"], dtype=np.float64).astype(np.int64),
            ),
            users=Users(
                user_ids=np.asarray(users["user_id"], dtype=np.str_),
                ages=np.asarray(users["age"], dtype=np.int64),
                genders=np.asarray(users["gender"], dtype=np.str_),
                occupations=np.asarray(users["occupation"], dtype=np.str_),
                zip_codes=np.asarray(users["zip_code"], dtype=np.str_),
            ),
            items=Items(
                item_ids=np.asarray(items["item_id"], dtype=np.str_),
                titles=np.asarray(items["movie_title"], dtype=np.str_),
                release_years=np.asarray(
                    [int(year) if year.isdigit() else 0 for year in items["release_year"]],
                    dtype=np.int64,
                ),
                genres=tuple(tuple(value.split()) for value in items["class"]),
            ),
        )
    except (KeyError, ValueError) as error:
        raise DatasetUnavailableError(
            f"MovieLens-100k in {wheel} is not in the expected format: {error}"
        ) from error


def _read_table(archive: zipfile.ZipFile, suffix: str) -> dict[str, list[str]]:
    """A recbole atomic file (``name:type`` header, tab-separated) as columns of strings."""
    with archive.open(f"{MOVIELENS_PREFIX}.{suffix}") as raw:
        lines = io.TextIOWrapper(raw, encoding="utf-8").read().splitlines()
    header = [column.split(":", 1)[0] for column in lines[0].split("\t")]
    columns: dict[str, list[str]] = {name: [] for name in header}
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DatasetUnavailableError(
                f"ml-100k.{suffix} line {number}: {len(fields)} fields, expected {len(header)}"
            )
        for name, value in zip(header, fields, strict=True):
            columns[name].append(value)
    return columns


def _check_sha256(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != RECBOLE_WHEEL_SHA256:
        raise DatasetUnavailableError(
            f"{path} has SHA-256 {digest}, expected {RECBOLE_WHEEL_SHA256}: delete it and retry"
        )
