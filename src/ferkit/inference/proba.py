"""Class probabilities for uint8 faces, with optional test-time augmentation.

`fer evaluate` and `fer predict` both go through `predict_proba`, so a face is normalised and
augmented the same way wherever it is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ferkit.choices import TTA_MODES, check_choice
from ferkit.emotions import IMAGE_SIZE
from ferkit.models.inputs import normalize

TENCROP_SIZE = 44  # crops keep ~92% of the side, then are resized back to 48


def _tencrop(x: torch.Tensor) -> list[torch.Tensor]:
    offsets = [(0, 0), (0, IMAGE_SIZE - TENCROP_SIZE), (IMAGE_SIZE - TENCROP_SIZE, 0),
               (IMAGE_SIZE - TENCROP_SIZE,) * 2, ((IMAGE_SIZE - TENCROP_SIZE) // 2,) * 2]
    crops = []
    for top, left in offsets:
        crop = x[:, :, top:top + TENCROP_SIZE, left:left + TENCROP_SIZE]
        crop = F.interpolate(crop, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        crops += [crop, crop.flip(-1)]
    return crops


# In TTA_MODES order: none, flip, tencrop.
_VIEWS: dict[str, Callable[[torch.Tensor], list[torch.Tensor]]] = dict(zip(
    TTA_MODES, (lambda x: [x], lambda x: [x, x.flip(-1)], _tencrop), strict=True))


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views of a normalised (B,1,48,48) batch whose softmax outputs are averaged."""
    return _VIEWS[check_choice("TTA mode", tta, TTA_MODES)](x)


def predict_proba(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], images: np.ndarray,
                  mean: float, std: float, *, tta: str = "none", batch_size: int = 1024,
                  device: torch.device | None = None, precision: str = "fp32",
                  channels_last: bool = True, temperature: float = 1.0) -> np.ndarray:
    """Softmax probabilities (N, classes) for uint8 images (N, 48, 48), averaged over the TTA views;
    logits are divided by `temperature` first (see ferkit.evaluation.calibration).

    `model` is a torch network or any callable from a float (B,1,48,48) batch to (B,classes) logits,
    such as an ONNX Runtime session wrapper; a callable gets plain contiguous NCHW input.
    """
    return predict_proba_at(model, images, mean, std, (temperature,), tta=tta, batch_size=batch_size, device=device,
                            precision=precision, channels_last=channels_last)[0]


@torch.no_grad()
def predict_proba_at(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], images: np.ndarray,
                     mean: float, std: float, temperatures: Sequence[float], *, tta: str = "none",
                     batch_size: int = 1024, device: torch.device | None = None, precision: str = "fp32",
                     channels_last: bool = True) -> list[np.ndarray]:
    """`predict_proba` at each of `temperatures`, from one pass of the network: one array per temperature."""
    device = device or torch.device("cpu")
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
    else:
        channels_last = False
    outputs: list[list[torch.Tensor]] = [[] for _ in temperatures]
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
        x = normalize(batch, mean, std, channels_last=False)
        views = tta_views(x, tta)
        totals: list[torch.Tensor | int] = [0 for _ in temperatures]
        for view in views:
            if channels_last:
                view = view.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
                logits = model(view).float()
            totals = [total + (logits / temperature).softmax(dim=1) for total, temperature in zip(totals, temperatures)]
        for output, total in zip(outputs, totals):
            output.append(total / len(views))
    if not len(images):  # no images: the model's answer to an empty batch has the right number of classes
        empty = model(torch.zeros((0, 1, IMAGE_SIZE, IMAGE_SIZE), device=device)).float().cpu().numpy()
        return [empty for _ in temperatures]
    return [torch.cat(output).cpu().numpy() for output in outputs]
