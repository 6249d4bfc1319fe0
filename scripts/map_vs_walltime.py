"""Run ``lightdet-train`` and record its validation bbox mAP against wall-clock time.

    python scripts/map_vs_walltime.py --run-dir /tmp/curves/quickstart
    python scripts/map_vs_walltime.py --run-dir /tmp/curves/rtdetr -- experiment=shapes_rtdetr

Everything after ``--`` goes to ``lightdet-train``. The run directory receives the training run itself
(``hydra.run.dir``), ``curve.csv`` (``wall_s,epoch,step,bbox_mAP,load1``: seconds since launch when the
validation row appeared in ``metrics.csv``, and the 1-minute load average then) and, when several runs are
given to ``--plot``, one PNG that overlays their curves:

    python scripts/map_vs_walltime.py --plot /tmp/curves/quickstart /tmp/curves/rtdetr --out curves.png

Runs are meant to go one after the other on the same machine; the load average is recorded because a
shared machine's other work changes the wall time.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 5.0
FIELDS = ["wall_s", "epoch", "step", "bbox_mAP", "load1"]


def read_val_rows(metrics_csv: Path) -> list[dict[str, str]]:
    """The rows of a Lightning ``metrics.csv`` that carry ``val/bbox_mAP``."""
    if not metrics_csv.is_file():
        return []
    with metrics_csv.open(newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("val/bbox_mAP")]


def record(run_dir: Path, train_args: list[str]) -> int:
    """Run ``lightdet-train`` into ``run_dir``, appending each new validation mAP to ``curve.csv``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("lightdet-train")
    cmd = [str(exe), *train_args, f"hydra.run.dir={run_dir}"]
    start = time.monotonic()
    with (run_dir / "train.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    seen = 0
    with (run_dir / "curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        while True:
            done = proc.poll() is not None
            rows = read_val_rows(run_dir / "metrics.csv")
            for row in rows[seen:]:
                writer.writerow({"wall_s": round(time.monotonic() - start, 1), "epoch": row.get("epoch"),
                                 "step": row.get("step"), "bbox_mAP": row["val/bbox_mAP"],
                                 "load1": round(os.getloadavg()[0], 2)})
                f.flush()
            seen = len(rows)
            if done:
                break
            time.sleep(POLL_S)
    print(f"{run_dir}: exit {proc.returncode}, {time.monotonic() - start:.0f} s, {seen} validations")
    return int(proc.returncode or 0)


def plot(run_dirs: list[Path], out: Path) -> None:
    """Overlay the ``curve.csv`` of each run directory: bbox mAP over wall-clock minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run_dir in run_dirs:
        with (run_dir / "curve.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        ax.plot([float(r["wall_s"]) / 60 for r in rows], [float(r["bbox_mAP"]) for r in rows], "o-",
                label=run_dir.name)
    ax.set_xlabel("wall clock (min)")
    ax.set_ylabel("val bbox mAP")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="where the run and its curve.csv go")
    parser.add_argument("--plot", type=Path, nargs="+", help="run directories whose curves to overlay")
    parser.add_argument("--out", type=Path, default=Path("map_vs_walltime.png"), help="PNG for --plot")
    args, train_args = parser.parse_known_args()
    train_args = [a for a in train_args if a != "--"]
    if args.plot:
        plot(args.plot, args.out)
        return 0
    if args.run_dir is None:
        parser.error("--run-dir is required unless --plot is given")
    return record(args.run_dir, train_args)


if __name__ == "__main__":
    raise SystemExit(main())
