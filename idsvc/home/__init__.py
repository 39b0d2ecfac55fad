"""A home and what it holds: the registry, the vector store, the crops, the write lock, and the active model with its
face pipeline — the composition every job works on (``idsvc.jobs``), over the independent layers below it."""

from idsvc.home.home import Home

__all__ = ["Home"]
