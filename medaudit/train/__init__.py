"""Optional training (``medaudit train``): nothing on the audit path imports this package.

``loop`` runs training; ``config`` is the typed configuration the CLI options are made from;
``state`` holds resumable state; ``losses`` and ``augment`` are the recipe's pieces.
"""
