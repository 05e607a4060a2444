"""Precision selection (detector/precision.py) and a tiny bf16 training run on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from detector import DetectorConfigError
from detector import precision as precision_module
from detector.precision import cpu_has_native_bf16, resolve_precision
from shared_data import shared_data_config
from training.cli import train_parser
from training.config import TrainConfig
from training.errors import ConfigError
from training.trainer import Trainer

CPU = torch.device("cpu")
CUDA = torch.device("cuda:0")


@pytest.fixture()
def native_bf16(monkeypatch):
    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: value)
    return set_native


def test_auto_picks_bf16_only_on_cpus_with_native_bf16(native_bf16):
    native_bf16(True)
    assert resolve_precision("auto", CPU) == "bf16"
    native_bf16(False)
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("auto", CUDA) == "fp16"          # no CUDA call is needed to decide


def test_explicit_precisions_the_device_cannot_run_are_refused(native_bf16):
    native_bf16(False)
    with pytest.raises(DetectorConfigError, match="no native bf16"):
        resolve_precision("bf16", CPU)
    with pytest.raises(DetectorConfigError, match="'fp16' needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(DetectorConfigError, match="precision must be one of"):
        resolve_precision("int8", CPU)
    assert resolve_precision("fp32", CPU) == "fp32"
    native_bf16(True)
    assert resolve_precision("bf16", CPU) == "bf16"


def test_native_bf16_detection_reads_the_cpu_flags():
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    cpu_has_native_bf16.cache_clear()
    assert cpu_has_native_bf16() == expected


def test_training_options_validate_precision():
    with pytest.raises(ConfigError, match="precision must be auto, fp32, bf16 or fp16"):
        TrainConfig(data="x.yaml", precision="half")
    args = train_parser().parse_args(["--data", "x.yaml", "--precision", "bf16"])
    assert args.precision == "bf16"
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--data", "x.yaml", "--precision", "int8"])


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_tiny_bf16_training_run_on_cpu(tmp_path):
    config = TrainConfig(data=shared_data_config("traffic.yaml"), arch="yolov7-tiny", out_dir=tmp_path,
                         epochs=1, img_size=96, batch_size=4, device="cpu", workers=0, threads=1,
                         seed=0, precision="bf16", max_batches_per_epoch=3, close_mosaic_epochs=0,
                         progress=False, val_period_epochs=1)
    trainer = Trainer(config, command="test")
    result = trainer.run()
    assert trainer.precision == "bf16" and trainer.channels_last
    assert trainer.model.model[0].conv.weight.dtype == torch.float32          # master weights fp32
    assert trainer.model.model[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    row = result.history[0]
    assert all(torch.isfinite(torch.tensor(row[k])) for k in ("train_box", "train_obj", "train_cls"))
    assert row["train_loss"] > 0 and row["map50"] is not None
    with safe_open(str(result.last_weights), framework="pt") as reader:
        provenance = json.loads(reader.metadata()["yolov7_track"])["provenance"]
    assert provenance["precision"] == "bf16" and provenance["hardware"]
    assert provenance["data"]["format"] == "merge"
