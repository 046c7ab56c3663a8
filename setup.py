"""Shim for `pip install --editable .` habits; all metadata lives in pyproject.toml."""

from setuptools import setup

setup()
