"""conf/model stays small and says each thing once: shared settings are blocks referenced from the
defaults lists or interpolated, never copied from file to file."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONF = ROOT / "conf" / "model"
WINDOW = 6  # consecutive settings lines; a block this long written twice is a copy
# The models of the config snapshot (the R-CNNs, RetinaNet, FCOS) were written in 793 lines of conf/model
# before the shared blocks and templates; with every file they compose they now fit in 65% of that.
SNAPSHOT_MODELS = sorted(
    key.split("=", 1)[1]
    for key in json.loads((ROOT / "tests" / "fixtures" / "config_snapshot.json").read_text())
    if key.startswith("model=")
)
MAX_LINES = 515


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


def composed_model_files(model: str) -> set[Path]:
    """Every conf/model file that ``model=<model>`` composes (its defaults tree)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from lightdet.cli._hydra import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        tree = loader.compute_defaults_list("train", [f"model={model}"], RunMode.RUN)
    paths = [d.config_path for d in tree.defaults if d.config_path and d.config_path.startswith("model/")]
    return {MODEL_CONF.parent / f"{path}.yaml" for path in paths}


def test_snapshot_models_line_budget():
    files = set().union(*(composed_model_files(m) for m in SNAPSHOT_MODELS))
    assert MODEL_CONF / "roi_head" / "stage" / "box.yaml" in files  # blocks are counted too
    total = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in files)
    assert total <= MAX_LINES, f"the snapshot models' configs have {total} lines (budget {MAX_LINES})"


@pytest.mark.parametrize("path", model_files(), ids=lambda p: str(p.relative_to(MODEL_CONF)))
def test_every_file_says_what_it_is(path: Path):
    """Each file starts with a comment: its source (published config) or why it exists."""
    assert path.read_text(encoding="utf-8").startswith("# "), f"{path} has no leading comment"
