"""Export one graph to ONNX (plain ``torch.onnx.export``, TorchScript exporter, opset 17) and validate it.

The file is written next to its destination under a temporary name and renamed into place only after
validation passed, so a failing export never leaves a file that looks publishable.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .settings import GraphSetting


def export_graph(setting: GraphSetting, module, out_path: str | os.PathLike,
                 validation_inputs: list[dict[str, np.ndarray]] | None = None,
                 example: dict[str, np.ndarray] | None = None) -> dict:
    """Export ``module`` under ``setting`` to ``out_path``; validate on ``validation_inputs`` (default:
    synthetic inputs at two batch sizes and two sequence lengths, which also proves the dynamic axes).

    Returns the validation report. Raises ``ExportValidationError`` (and leaves no file) on failure.
    """
    import onnx
    import torch

    from .validate import dynamic_check_inputs, validate

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    example = example or setting.random_inputs(batch=2, seq=8)
    args = tuple(torch.from_numpy(example[name]) for name in setting.input_names)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        module = module.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation/tracer warnings
            torch.onnx.export(module, args, tmp, input_names=list(setting.input_names),
                              output_names=list(setting.outputs), dynamic_axes=setting.dynamic_axes,
                              opset_version=setting.opset, do_constant_folding=True, dynamo=False)
        model = onnx.load(tmp)
        onnx.checker.check_model(model)
        names = [o.name for o in model.graph.output]
        if names != list(setting.outputs):
            raise ValueError(f"{setting.name}: exported outputs {names} differ from {list(setting.outputs)}")
        report = validate(setting, module, tmp, validation_inputs or dynamic_check_inputs(setting))
        os.replace(tmp, out_path)
        return report
    finally:
        Path(tmp).unlink(missing_ok=True)
