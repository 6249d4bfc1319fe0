"""conf/model stays small and says each thing once: shared settings are blocks referenced from the
defaults lists or interpolated, never copied from file to file."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

MODEL_CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
WINDOW = 6  # consecutive settings lines; a block this long written twice is a copy
MAX_LINES = 515  # 65% of the 793 lines conf/model had before the shared blocks and templates


def settings_lines(path: Path) -> list[str]:
    """The file's lines without indentation, blank lines and comments."""
    stripped = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def repeated_windows(root: Path, size: int = WINDOW) -> dict[tuple[str, ...], list[str]]:
    """Every run of ``size`` settings lines found more than once in the yaml files under ``root``, with
    where it occurs (``file:index``), within a file or across files."""
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.yaml")):
        lines = settings_lines(path)
        for i in range(len(lines) - size + 1):
            seen[tuple(lines[i : i + size])].append(f"{path.relative_to(root)}:{i}")
    return {window: places for window, places in seen.items() if len(places) > 1}


def model_files() -> list[Path]:
    return sorted(MODEL_CONF.rglob("*.yaml"))


def test_repeated_windows_finds_a_copied_block(tmp_path: Path):
    block = "a: 1\nb: 2\nc:\n  d: 3\n  e: 4\nf: 5\n"
    (tmp_path / "x.yaml").write_text("# one\n" + block + "g: 6\n")
    (tmp_path / "y.yaml").write_text("h: 0\n" + block.replace("\n", "\n\n"))
    found = repeated_windows(tmp_path, size=6)
    assert list(found) == [("a: 1", "b: 2", "c:", "d: 3", "e: 4", "f: 5")]


def test_no_block_of_settings_appears_twice_under_conf_model():
    found = repeated_windows(MODEL_CONF)
    described = [f"{' | '.join(w)} at {', '.join(p)}" for w, p in found.items()]
    assert not found, "copied blocks (make them a block file or an interpolation):\n" + "\n".join(
        described[:10]
    )


def test_conf_model_line_budget():
    total = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in model_files())
    assert total <= MAX_LINES, f"conf/model has {total} lines (budget {MAX_LINES})"


@pytest.mark.parametrize("path", model_files(), ids=lambda p: str(p.relative_to(MODEL_CONF)))
def test_every_file_says_what_it_is(path: Path):
    """Each file starts with a comment: its source (published config) or why it exists."""
    assert path.read_text(encoding="utf-8").startswith("# "), f"{path} has no leading comment"
