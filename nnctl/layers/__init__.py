"""Layers: each kind in its own module, all following the protocol in base.py."""
