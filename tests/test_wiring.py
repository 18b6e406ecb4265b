"""Wiring: the DirectRunner's shuffle folder and its worker count."""

import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import parse_settings
from pipeline.wiring import (
    direct_workers,
    local_shuffle_folder,
    remove_shuffle_folders,
)
from transforms.read import is_hidden


def _settings(tmp_path, *extra):
    return parse_settings(
        ["--input", "in/*.log", "--output", str(tmp_path / "out"), *extra]
    )


def test_shuffle_folder_made_and_removed(tmp_path):
    settings = _settings(tmp_path, "--shuffle_dir", str(tmp_path))
    with local_shuffle_folder(PipelineOptions([]), settings) as folder:
        assert os.path.dirname(folder) == str(tmp_path)
        assert os.path.isdir(folder)
    assert not os.path.exists(folder)


def test_shuffle_folder_removed_after_failure(tmp_path):
    settings = _settings(tmp_path, "--shuffle_dir", str(tmp_path))
    with pytest.raises(RuntimeError):
        with local_shuffle_folder(PipelineOptions([]), settings) as folder:
            raise RuntimeError("the run failed")
    assert not os.path.exists(folder)


def test_no_shuffle_folder_on_dataflow(tmp_path):
    settings = _settings(tmp_path)
    options = PipelineOptions(["--runner=DataflowRunner"])
    with local_shuffle_folder(options, settings) as folder:
        assert folder is None


def test_in_memory_runs_one_worker():
    assert direct_workers(PipelineOptions([])) == 1


def test_multi_processing_counts_workers():
    options = PipelineOptions(
        ["--direct_running_mode=multi_processing", "--direct_num_workers=3"]
    )
    assert direct_workers(options) == 3


def test_zero_workers_means_every_core():
    options = PipelineOptions(
        ["--direct_running_mode=multi_processing", "--direct_num_workers=0"]
    )
    assert direct_workers(options) == (os.cpu_count() or 1)


def test_missing_shuffle_dir_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _settings(tmp_path, "--shuffle_dir", str(tmp_path / "missing"))
    assert "is not an existing folder" in capsys.readouterr().err


def test_file_as_shuffle_dir_rejected(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit):
        _settings(tmp_path, "--shuffle_dir", str(tmp_path / "a-file"))
    assert "is not an existing folder" in capsys.readouterr().err


def test_empty_shuffle_dir_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _settings(tmp_path, "--shuffle_dir", "")
    assert "an empty path is not a folder" in capsys.readouterr().err


def test_shuffle_dir_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = _settings(tmp_path, "--shuffle_dir", "~")
    assert settings.shuffle_dir == str(tmp_path)


def test_shuffle_folder_name_is_hidden_from_inputs(tmp_path):
    settings = _settings(tmp_path, "--shuffle_dir", str(tmp_path))
    with local_shuffle_folder(PipelineOptions([]), settings) as folder:
        assert is_hidden(folder + "/part.blobs", str(tmp_path) + "/**")


def test_remove_shuffle_folders_clears_active(tmp_path):
    settings = _settings(tmp_path, "--shuffle_dir", str(tmp_path))
    with local_shuffle_folder(PipelineOptions([]), settings) as folder:
        remove_shuffle_folders()
        assert not os.path.exists(folder)
