"""Tests for tac_jax/evaluate/reporting/staging.py: a folder replaced whole, or not at all."""

import doctest
import os
import subprocess
import sys

import pytest

from tac_jax.evaluate.reporting import staging
from tac_jax.evaluate.reporting.staging import recover, staged_dir, staging_path


def test_doctests():
    assert doctest.testmod(staging).failed == 0


def files(folder):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def siblings(final):
    return sorted(p.name for p in final.parent.iterdir() if p.name != final.name)


@pytest.fixture
def old_report(tmp_path):
    final = tmp_path / "report"
    final.mkdir()
    for name, text in {"metrics.json": "old", "report.md": "old", "fitted.npz": "cache"}.items():
        (final / name).write_text(text)
    return final


@pytest.fixture
def dead_pid():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


def test_the_new_folder_replaces_the_old_keeping_the_carried_files(old_report):
    with staged_dir(old_report, carry=("fitted.npz", "absent.npz")) as out:
        assert out == staging_path(old_report) and os.listdir(out) == []
        assert files(old_report)["metrics.json"] == "old"  # readers still see the old one
        (old_report.parent / out / "metrics.json").write_text("new")
    assert files(old_report) == {"fitted.npz": "cache", "metrics.json": "new"}
    assert siblings(old_report) == []


def test_a_written_file_wins_over_a_carried_one(old_report):
    with staged_dir(old_report, carry=("fitted.npz",)) as out:
        (old_report.parent / out / "fitted.npz").write_text("refitted")
    assert files(old_report) == {"fitted.npz": "refitted"}


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_leaves_the_old_folder_whole(old_report, interruption):
    before = files(old_report)
    with pytest.raises(interruption), staged_dir(old_report, carry=("fitted.npz",)) as out:
        (old_report.parent / out / "metrics.json").write_text("half")
        raise interruption("stopped")
    assert files(old_report) == before and siblings(old_report) == []


def test_a_failed_swap_puts_the_old_folder_back(old_report, monkeypatch):
    before = files(old_report)
    rename = os.rename

    def second_rename_fails(src, dst):
        if os.fspath(src).endswith(".partial-" + str(os.getpid())):
            raise OSError(28, "No space left on device", src)
        rename(src, dst)

    monkeypatch.setattr(staging.os, "rename", second_rename_fails)
    with pytest.raises(OSError), staged_dir(old_report) as out:
        (old_report.parent / out / "metrics.json").write_text("new")
    monkeypatch.undo()
    assert files(old_report) == before and siblings(old_report) == []


def test_a_killed_run_is_cleaned_up_next_time(old_report, dead_pid):
    for kind in ("partial", "old"):
        os.mkdir(staging_path(old_report, kind, dead_pid))
    live = staging_path(old_report, "partial", os.getppid())  # another live process's
    os.mkdir(live)
    with staged_dir(old_report) as out:
        assert siblings(old_report) == sorted(
            os.path.basename(p) for p in (live, out)
        )  # the dead process's folders are gone, the live one's left alone
        (old_report.parent / out / "metrics.json").write_text("new")
    assert files(old_report) == {"metrics.json": "new"}
    assert siblings(old_report) == [os.path.basename(live)]


def test_a_swap_cut_between_its_renames_is_undone(old_report, dead_pid):
    before = files(old_report)
    os.rename(old_report, staging_path(old_report, "old", dead_pid))
    os.mkdir(staging_path(old_report, "partial", dead_pid))
    recover(old_report)
    assert files(old_report) == before and siblings(old_report) == []


def test_the_parent_must_exist(tmp_path):
    with (
        pytest.raises(FileNotFoundError, match="expected an existing folder"),
        staged_dir(tmp_path / "none" / "report"),
    ):
        pass
    assert not (tmp_path / "none").exists()
