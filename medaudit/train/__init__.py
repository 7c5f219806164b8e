"""Optional training (``medaudit train``): nothing on the audit path imports this package.

``loop`` runs training (:func:`~medaudit.train.loop.train` on a dataset, ``train_from_config``
from a dataset spec, ``resume_training`` from ``NAME.last.pt``); ``config`` is the typed
configuration, and the source of the CLI's options; ``state`` holds splits, freezing and
selection; ``losses`` and ``augment`` are the recipe's pieces.
"""
