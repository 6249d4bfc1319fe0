"""Composes and resolves every model and experiment config and writes (or compares) a key-by-key snapshot.

The snapshot in ``tests/fixtures/config_snapshot.json`` pins what each ``conf/model/*`` and
``conf/experiment/*`` resolves to, so that a rewrite of the yaml files (shared blocks, templates,
interpolations) is proven to build the same models. ``tests/test_config_snapshot.py`` compares against it.

    python scripts/config_snapshot.py --write     # after a deliberate change of a published setting
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lightdet.composition import compose

SNAPSHOT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "config_snapshot.json"
CONF = Path(__file__).resolve().parents[1] / "conf"
FIXED = ["paths.data_dir=/DATA", "paths.output_root=/OUT"]


def config_names() -> list[tuple[str, str]]:
    """(group, name) for every model and experiment file."""
    return [(g, p.stem) for g in ("model", "experiment") for p in sorted((CONF / g).glob("*.yaml"))]


def resolved(group: str, name: str) -> dict[str, Any]:
    """The whole training config of ``group=name``, resolved, without the run-time paths."""
    cfg = compose(overrides=[f"{group}={name}", *FIXED], output_dir="/OUT/run")
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def snapshot() -> dict[str, Any]:
    return {f"{g}={n}": resolved(g, n) for g, n in config_names()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write the snapshot to {SNAPSHOT}")
    args = parser.parse_args()
    data = snapshot()
    if args.write:
        SNAPSHOT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(data)} configs to {SNAPSHOT}")
    else:
        print(json.dumps(data, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
