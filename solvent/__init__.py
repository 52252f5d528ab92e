"""Solvent: self-hosted image generation that pays its own bills."""

__version__ = "0.1.0"
