"""Models and their config: the factory, the checkpoint format, the preprocessing recipe.

``factory`` builds architectures (timm / torchvision, small-input stems); ``checkpoint``
saves and loads the medaudit checkpoint (``weights_only`` loading only); ``preprocess`` is the
recipe that travels with a checkpoint. Import the submodule you need: importing this package
imports nothing heavy.
"""
