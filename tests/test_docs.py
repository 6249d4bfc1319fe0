"""Every lightdet command shown in the README and the tutorials composes (or runs).

``lightdet-train`` / ``lightdet-test`` lines are checked the way the CLIs check them before Hydra runs:
the full config is composed with the line's overrides (and ``--config-dir``), which catches renamed groups,
options and keys. Files a tutorial asks the reader to create (a code block whose first line is
``# my_configs/...`` or ``# my_project/...``,
after an optional ``# @package`` line) are written first. ``lightdet-data`` lines run for real.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lightdet.cli._hydra import _parse_args, check_overrides
from lightdet.cli.data import main as data_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _blocks(path: Path) -> list[tuple[str, str]]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def _commands(path: Path) -> list[str]:
    cmds = []
    for lang, body in _blocks(path):
        if lang not in ("bash", "sh", ""):
            continue
        for line in body.splitlines():
            line = line.split(" # ")[0].strip()
            if line.startswith(("lightdet-train", "lightdet-test", "lightdet-data")):
                cmds.append(line)
    return cmds


def _write_user_files(path: Path, where: Path) -> None:
    for _, body in _blocks(path):
        head = "\n".join(body.splitlines()[:2])  # a yaml "# @package" line may come first
        m = re.search(r"^#\s*((?:my_configs|my_project)/\S+)", head, re.M)
        if m:
            target = where / m.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")


def _first_of_sweep(override: str) -> str:
    """``a=1,2`` (a multirun sweep) -> ``a=1``; any other override unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (parsed,) = OverridesParser.create().parse_overrides([override])
    if not parsed.is_sweep_override():
        return override
    return f"{parsed.get_key_element()}={next(iter(parsed.sweep_string_iterator()))}"


# lightdet-data lines build on each other and run in order per document (test_documented_data_commands).
CASES = [(doc, cmd) for doc in DOCS for cmd in _commands(doc) if not cmd.startswith("lightdet-data")]


@pytest.mark.parametrize(("doc", "command"), CASES, ids=[f"{d.name}:{c[:60]}" for d, c in CASES])
def test_documented_command(doc: Path, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_user_files(doc, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = shlex.split(command)
    args = _parse_args([a for a in argv[1:] if a not in ("-m", "--multirun")])
    if args.help:
        return
    config_name = "train" if argv[0] == "lightdet-train" else "test"
    overrides = [o for o in args.overrides if not o.startswith("ckpt=")]
    if config_name == "test":
        overrides.append("ckpt=unused.ckpt")
    sweep_free = [_first_of_sweep(o) for o in overrides]
    config_dir = str(tmp_path / args.config_dir) if args.config_dir else None
    check_overrides(config_name, sweep_free, config_dir=config_dir)


DATA_DOCS = [doc for doc in DOCS if any(c.startswith("lightdet-data") for c in _commands(doc))]


@pytest.mark.parametrize("doc", DATA_DOCS, ids=[d.name for d in DATA_DOCS])
def test_documented_data_commands(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A document's ``lightdet-data`` lines build on each other (make-shapes first): run them in order."""
    monkeypatch.chdir(tmp_path)
    for line in (c for c in _commands(doc) if c.startswith("lightdet-data")):
        argv = shlex.split(line)
        small = argv[1] == "make-shapes" and "--num-train" not in argv
        assert data_main([*argv[1:], *(["--num-train", "4", "--num-val", "2"] if small else [])]) == 0, line


def test_docs_have_commands() -> None:
    assert len(CASES) >= 10
