import pytest

from bench.config import validate_dataset
from bench.data.cli import main
from tests.support.data import CONF, FIXTURES, dataset_cfg

NAMES = ("mnist", "imdb", "jena", "sbux", "samsung", "csv")


@pytest.mark.parametrize("name", NAMES)
def test_dataset_configs_are_complete_and_valid(name):
    cfg = dataset_cfg(name)
    validate_dataset(cfg)
    assert cfg.kind in ("mnist", "imdb", "series")
    for line in (CONF / f"{name}.yaml").read_text().splitlines()[:1]:
        assert line.startswith("#")  # every config says what it is


def test_jena_and_mnist_reference_settings():
    j, m = dataset_cfg("jena"), dataset_cfg("mnist")
    assert (j.batch_size, j.loss, j.lookback, j.step, j.delay) == (128, "mae", 1440, 6, 144)
    assert (m.batch_size, m.loss, m.val_size) == (100, "cross_entropy", 5000)


def test_list_and_check_on_fixtures(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)   # a piped table is 200 wide unless told
    assert main(["--data-dir", str(FIXTURES), "list"]) == 0
    out = capsys.readouterr().out
    assert "SBUX.csv" in out and "sha256 ok" in out and "missing" in out
    assert main(["--data-dir", str(FIXTURES), "check", "sbux"]) == 0
    out = capsys.readouterr().out
    assert "179" in out and "53" in out
    assert main(["--data-dir", str(FIXTURES), "check", "jena"]) == 1
    assert "jena_climate_2009_2016.csv" in capsys.readouterr().out


def test_fetch_offline_explains_where_to_put_files(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "fetch", "jena"]) == 1
    out = capsys.readouterr().out
    assert "storage.googleapis.com" in out and "BENCH_OFFLINE" in out
