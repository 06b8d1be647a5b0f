"""Where the kernel tests run the Triton kernels: compiled on a GPU when there is one, else in the interpreter.

Without CUDA, Triton's interpreter runs the kernels on CPU tensors. Triton picks interpreter or
compiler when a kernel is defined, i.e. when eqr.kernels.triton_ops is first imported; nothing else
in the suite imports it (CPU tensors dispatch to the reference), so selecting the interpreter here,
before any kernel test module runs, holds for the whole session. The sm_90 compile check runs in
a subprocess without this variable.
"""

import os
import sys

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"
    _ops = sys.modules.get("eqr.kernels.triton_ops")
    if _ops is not None and not _ops.INTERPRETED:
        raise RuntimeError("eqr.kernels.triton_ops was imported before TRITON_INTERPRET=1 could be set")


@pytest.fixture
def device() -> torch.device:
    """The device the kernels run on in this session."""
    return torch.device(DEVICE)
