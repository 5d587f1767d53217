"""A tiny segmentation net with U²-Net's input/output contract, exported to ONNX in the test (no
downloads), for tests and benchmarks.

The net takes a normalised ``(B, 3, S, S)`` image and answers a sigmoid map ``(B, 1, S, S)`` first (U²-Net's
fused ``d0``) and a side map second, as U²-Net's graph does. Its first path is the mean of the
normalised channels, so bright things come out as foreground, which makes the mattes easy to
reason about; a few seeded random convolutions and a down/up-sampling add texture. The export has a
dynamic batch axis unless ``fixed_batch``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

INPUT_SIZE = 32


def build_tiny_matting(folder: Path, size: int = INPUT_SIZE, fixed_batch: bool = False,
                       config: dict | None = None, seed: int = 0) -> Path:
    """Write ``model.onnx`` (and ``matte.json``: ``config``, default ``{"input_size": size}``) into
    ``folder``; return the folder."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TinySegNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=2, dilation=2),
                nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1),
            )
            self.lum = nn.Conv2d(3, 1, 1)
            with torch.no_grad():
                self.lum.weight.fill_(4.0 / 3)
                self.lum.bias.fill_(0.0)

        def forward(self, x):
            detail = self.body(x)
            coarse = F.interpolate(F.avg_pool2d(detail, 2), scale_factor=2.0, mode="bilinear")
            d0 = torch.sigmoid(self.lum(x) + 0.1 * detail + 0.1 * coarse)
            return d0, torch.sigmoid(detail)

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    net = TinySegNet().eval()
    axes = None if fixed_batch else {"input": {0: "batch"}, "d0": {0: "batch"}, "side": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net, (torch.zeros(1, 3, size, size),), str(folder / "model.onnx"), input_names=["input"],
            output_names=["d0", "side"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    (folder / "matte.json").write_text(json.dumps(config if config is not None else {"input_size": size}))
    return folder
