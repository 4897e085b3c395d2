# The cffi build hook is the only thing pyproject.toml cannot express.
from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder"])
