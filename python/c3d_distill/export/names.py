"""The export formats and outputs, without torch: the command line's choices come from here."""

from __future__ import annotations

FORMATS = ("onnx", "torchscript", "pt2")
OUTPUTS = ("logits", "features")
# What a deployment loads each format with (the check loads it the same way).
RUNTIMES = {
    "onnx": "onnxruntime CPUExecutionProvider",
    "torchscript": "torch.jit.load",
    "pt2": "torch.export.load",
}
EXPORT_EXTRA = 'pip install "c3d-distill[export]"'
