"""Training, evaluation and export of the station's U-Net (run as ``python -m training``).

Importing this package (or :mod:`training.data`) never imports TensorFlow: the station and its
tests use the synthetic generator and the dataset loaders without it. TensorFlow is imported only
inside the modules that build, train or export a network.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
