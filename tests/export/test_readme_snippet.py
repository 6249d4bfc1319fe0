"""The README's ONNX snippet runs with only numpy, Pillow and onnxruntime importable, and prints the
detections lightdet.Predictor.from_export gives."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

import lightdet

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    section = README.read_text(encoding="utf-8").split("## Export", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    (snippet,) = [b for b in blocks if "onnxruntime" in b]
    return snippet


def isolated_site(folder: Path) -> Path:
    """A folder of symlinks to the allowed packages and the shared libraries their wheels bundle
    (``numpy.libs``, ``pillow.libs``), nothing else."""
    import onnxruntime

    folder.mkdir()
    site = Path(np.__file__).parents[1]
    for module in (np, PIL, onnxruntime):
        package = Path(module.__file__).parent
        (folder / package.name).symlink_to(package)
    for libs in ("numpy.libs", "pillow.libs", "onnxruntime.libs"):
        if (site / libs).exists():
            (folder / libs).symlink_to(site / libs)
    return folder


RUNNER = """
import importlib.util, sys
sys.path.insert(0, {site!r})
for name in ("torch", "lightdet", "torchvision", "onnx"):
    assert importlib.util.find_spec(name) is None, name + " is importable"
exec(compile(open("snippet.py").read(), "snippet.py", "exec"))
"""


def test_snippet_runs_with_numpy_pillow_onnxruntime_only(
    shapes_checkpoint: Path, shapes_data: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from lightdet.cli.export import main

    work = tmp_path / "work"
    work.mkdir()
    assert main([str(shapes_checkpoint), "--out", str(work / "model.onnx"), "--no-check"]) == 0
    image = np.asarray(Image.open(sorted((shapes_data / "shapes" / "val").iterdir())[0]).convert("RGB"))
    canvas = np.zeros((144, 144, 3), np.uint8)  # the pipeline's scale: the snippet and lightdet do not resize
    canvas[: image.shape[0], : image.shape[1]] = image
    Image.fromarray(canvas).save(work / "street.jpg", quality=95)
    (work / "snippet.py").write_text(readme_snippet())
    site = isolated_site(tmp_path / "site")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUNNER.format(site=str(site))],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line.split(" ", 2) for line in proc.stdout.strip().splitlines()]
    decoded = np.array(Image.open(work / "street.jpg").convert("RGB"))
    det = lightdet.Predictor.from_export(work / "model.onnx").predict(decoded)
    det = det[det.scores >= 0.5]
    assert len(printed) == len(det) > 0
    names = ["circle", "square", "triangle", "star", "hexagon"]
    for (name, score, box), label, s, b in zip(printed, det.labels, det.scores, det.boxes):
        assert name == names[int(label)] and abs(float(score) - float(s)) <= 1e-3
        assert np.allclose(eval(box), b.numpy(), atol=0.06)
