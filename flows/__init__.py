"""Prefect flows of powercast: thin orchestration over the ``powercast`` library.

Deployments load them by file from the repository root (``flows/nightly.py:nightly``); the
modules import each other as ``flows.*``, so the repository root is the working directory.
"""
