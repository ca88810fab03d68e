"""The MNIST data layer: IDX parsing, verified downloads, the on-disk cache and scaling."""
