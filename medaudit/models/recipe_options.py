"""The choices and defaults of a preprocessing recipe, importable without numpy, PIL or torch.

:class:`medaudit.models.preprocess.Recipe` validates against them; command-line options and the
training configuration read them here, so ``medaudit --help`` stays free of the array libraries.
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# stretch = Resize((s, s)); pad = keep aspect, letterbox; crop = short side to s, centre crop.
RESIZE_POLICIES = ("stretch", "pad", "crop")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
# How images are resized. torch = F.interpolate on the float tensor (antialiased), medaudit's own
# default; pil = PIL's Image.resize on the 8-bit image, which is what torchvision's Resize does to
# PIL images, so a notebook's ``Resize`` + ``ToTensor`` + ``Normalize`` pipeline is matched exactly.
RESIZE_BACKENDS = ("torch", "pil")
DEFAULT_RESIZE_BACKEND = "torch"
