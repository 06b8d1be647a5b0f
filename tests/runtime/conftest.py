"""The steppers' tests run the Triton kernels where the kernel tests do (see tests/kernels/conftest.py)."""

from tests.kernels.conftest import device  # noqa: F401  # importing it also selects Triton's interpreter on CPU
