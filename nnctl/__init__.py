"""nnctl: train, evaluate and use neural networks on MNIST, written from scratch in NumPy.

The package root stays import-light so that `nnctl --help` answers quickly; the library
lives in the submodules (network, activations, losses, optimizers, trainer, data, weights).
"""

__version__ = "0.1.0"
