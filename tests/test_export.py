"""`fer export --onnx`: same logits as torch for any batch size, metadata for predict, .onnx in predict."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from ferkit.choices import SHIPPED_MODELS
from ferkit.cli import main
from ferkit.emotions import FER2013_CLASSES
from ferkit.inference.models import INPUT_NAME, OUTPUT_NAME
from ferkit.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from ferkit.models.networks import build_model


def _randomise_batch_norm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Fresh BN layers are identities in eval mode; real running statistics test their export."""
    for layer in model.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.running_mean.normal_(0, 0.5, generator=generator)
            layer.running_var.uniform_(0.5, 2.0, generator=generator)


# (architecture, members): each network, and an ensemble of two (the log of their mean probability).
EXPORTED = [("basic", 1), ("vgg", 1), ("basic", 2)]


@pytest.fixture(scope="module", params=EXPORTED, ids=lambda shape: f"{shape[0]}x{shape[1]}")
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, its ONNX export), made through the CLI."""
    name, members = request.param
    folder = tmp_path_factory.mktemp(name)
    torch.manual_seed(0)
    model = build_model(name, len(FER2013_CLASSES), members=members)
    _randomise_batch_norm(model, torch.Generator().manual_seed(1))
    checkpoint = folder / "best.pt"
    save_checkpoint(checkpoint, {"model": name, "dropout": 0.0, "state_dict": model.state_dict(),
                                 "mean": 0.51, "std": 0.26, "members": members})
    onnx_path = folder / "model.onnx"
    assert main(["export", "--model", str(checkpoint), "--onnx", str(onnx_path)]) == 0
    return checkpoint, onnx_path


def test_onnx_logits_match_torch_for_several_batch_sizes(exported):
    checkpoint, onnx_path = exported
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(2)
    for batch in (1, 4, 9):
        x = torch.randn(batch, 1, 48, 48, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        logits = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        assert logits.shape == (batch, len(FER2013_CLASSES))
        assert np.abs(logits - expected).max() < 1e-5


def test_onnx_file_carries_normalisation_and_classes(exported):
    checkpoint, onnx_path = exported
    proto = onnx.load(str(onnx_path))
    props = {prop.key: prop.value for prop in proto.metadata_props}
    assert float(props["mean"]) == 0.51 and float(props["std"]) == 0.26
    assert props["model"] == load_checkpoint(checkpoint)["model"]
    assert json.loads(props["classes"]) == list(FER2013_CLASSES)
    batch_axis = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param and not batch_axis.dim_value


def test_predict_with_onnx_gives_the_same_emotions_as_the_checkpoint(exported, tmp_path, capfd):
    checkpoint, onnx_path = exported
    rng = np.random.default_rng(3)
    for index in range(12):
        face = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (0, 0), 1 + index % 3)
        cv2.imwrite(str(tmp_path / f"face{index:02d}.png"), face)
    outputs = []
    for model in (checkpoint, onnx_path):
        assert main(["predict", str(tmp_path), "--model", str(model), "--detector", "none", "--json", "-",
                     "--batch-size", "5"]) == 0
        outputs.append(json.loads(capfd.readouterr().out)["images"])
    for from_torch, from_onnx in zip(*outputs):
        torch_face, onnx_face = from_torch["faces"][0], from_onnx["faces"][0]
        assert onnx_face["emotion"] == torch_face["emotion"]
        assert onnx_face["probabilities"] == pytest.approx(torch_face["probabilities"], abs=1e-5)


def test_onnx_without_fer_metadata_is_refused(exported, tmp_path, capfd):
    _, onnx_path = exported
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf")
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((48, 48), 128, np.uint8))
    for model, problem in ((bare, "lacks fer metadata"), (garbage, "not a readable ONNX model")):
        assert main(["predict", str(image), "--model", str(model)]) == 2
        err = capfd.readouterr().err
        assert err.startswith(f"fer: error: {model}: ") and problem in err and err.count("\n") == 1


def test_export_of_a_missing_checkpoint_is_a_usage_error(tmp_path, capfd):
    assert main(["export", "--model", str(tmp_path / "nope.pt"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    missing = tmp_path / "nope.pt"
    expected = f"no such model file, and not a shipped model ({', '.join(SHIPPED_MODELS)})"
    assert capfd.readouterr().err == f"fer: error: {missing}: {expected}\n"
    assert not (tmp_path / "x.onnx").exists()
