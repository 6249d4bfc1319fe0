"""lightdet.benchmark and lightdet-bench: parameters, FLOPs and timings of a detector."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from lightdet.benchmark import (
    BenchResult,
    StealMeter,
    benchmark,
    count_flops,
    count_parameters,
    steal_note,
    synthetic_batch,
)
from lightdet.cli import bench


def test_flops_of_a_convolution_match_the_hand_count():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.zeros(1, 3, 16, 16)
    assert count_flops(lambda: conv(x)) == 2 * 3 * 8 * 3 * 3 * 16 * 16
    assert count_parameters(conv) == 8 * 3 * 3 * 3


def test_synthetic_batch_is_uint8_of_the_asked_size():
    batch = synthetic_batch(2, 40, 56)
    assert batch.images.dtype == torch.uint8 and tuple(batch.images.shape) == (2, 3, 40, 56)


def test_benchmark_a_config_model():
    model = bench.load_model("retinanet_small", num_classes=3)
    trained_params = count_parameters(model)
    result = benchmark(model, size=(64, 96), batch=2, warmup=0, repeats=2)
    assert result.params_m == pytest.approx(trained_params / 1e6)  # counted as trained, before folding
    assert result.backend == "eager"
    assert result.gflops > 0 and result.median_s > 0 and result.images_per_s == pytest.approx(2 / result.median_s)


@pytest.mark.parametrize("optimize", [True, False])
def test_benchmark_times_the_inference_rewrite_unless_as_built(optimize):
    """The default times what Predictor and lightdet-test run: BatchNorm folded, channels-last weights."""
    model = bench.load_model("faster_rcnn_small", num_classes=3)
    benchmark(model, size=(64, 64), warmup=0, repeats=1, flops=False, optimize=optimize)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    nhwc = model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert (has_bn, nhwc) == ((False, True) if optimize else (True, False))


def test_benchmark_an_exported_file_with_its_runtime(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from lightdet.export import ExportOptions, export_detector

    torch.manual_seed(0)
    model = bench.load_model("retinanet_small", num_classes=3).eval()
    path = tmp_path / "m.onnx"
    export_detector(model, path, ExportOptions(format="onnx", dynamic=True), class_names=["a", "b", "c"])
    result = benchmark(bench.load_model(str(path), num_classes=3), size=(64, 96), warmup=0, repeats=1)
    assert result.backend == "onnxruntime" and result.params_m is None and result.gflops is None
    assert bench.main([str(path), "--size", "64", "96", "--warmup", "0", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "n/a parameters" in out and "cpu 32 onnxruntime" in out


def test_half_precision_on_the_cpu_is_refused():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        benchmark(nn.Identity(), precision="16-mixed")


def test_cli_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = bench.main(["fcos_small", "--size", "64", "64", "--warmup", "0", "--repeats", "1", "--json", str(out)])
    assert code == 0
    assert "M parameters" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["size"] == [64, 64]
    assert written["cpu_steal"] is None or 0 <= written["cpu_steal"] <= 1


def test_cli_names_an_unknown_target(capsys):
    assert bench.main(["no_such_model"]) == 2
    assert "neither a checkpoint file nor a model config" in capsys.readouterr().err


def write_stat(path, steal: int, idle: int) -> None:
    """A /proc/stat with the aggregate line (user nice system idle iowait irq softirq steal guest guest_nice)
    and one per-CPU line."""
    path.write_text(f"cpu  100 0 50 {idle} 0 0 0 {steal} 0 0\ncpu0 100 0 50 {idle} 0 0 0 {steal} 0 0\n")


def test_steal_meter_reads_the_share_taken_by_the_hypervisor(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, steal=10, idle=840)  # 1000 ticks so far
    meter = StealMeter(stat)
    write_stat(stat, steal=10 + 60, idle=840 + 140)  # 200 more ticks, 60 of them stolen
    assert meter.share() == pytest.approx(0.3)


def test_steal_meter_is_none_without_proc_stat(tmp_path):
    assert StealMeter(tmp_path / "absent").share() is None
    (tmp_path / "bad").write_text("intr 1 2 3\n")
    assert StealMeter(tmp_path / "bad").share() is None


def test_cli_warns_when_the_hypervisor_took_the_cpu():
    result = BenchResult(
        params_m=1.0, gflops=1.0, batch=1, size=(64, 64), device="cpu", precision="32", backend="eager",
        median_s=0.1, p90_s=0.1, runs=3, cpu_steal=0.3,
    )  # fmt: skip
    assert "hypervisor took 30%" in bench.format_result("m", result)
    for steal in (0.01, None):
        assert "hypervisor" not in bench.format_result("m", dataclasses.replace(result, cpu_steal=steal))


def test_steal_note_flags_a_busy_host():
    assert steal_note(None) == ""
    assert steal_note(0.02) == "steal 2%"
    assert steal_note(0.21) == "steal 21% (busy host: not comparable)"
