"""Builds daydream's compiled inner loops (daydream/_core.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("daydream._core", ["daydream/_core.c"], extra_compile_args=["-O2"])])
