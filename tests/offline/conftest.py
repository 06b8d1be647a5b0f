"""The tiny model and the tiny labelled Sudoku set that the offline tests evaluate."""

import pytest

from tests.offline.test_evaluate import SOLUTION, blanked, save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    path.write_text("".join(f"{blanked(k)},{SOLUTION}\n" for k in (2, 3, 5)))
    return path
