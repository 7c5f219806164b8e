"""medaudit: audit medical image classifiers."""

__version__ = "0.1.0"
