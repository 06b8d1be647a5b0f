"""A pickle module for ``torch.load`` that only rebuilds tensors and plain data.

The paper's ``eqr.pth`` is a full training checkpoint: besides tensors it pickles dataclasses from
the training package (``models.eqr.ModelCarry``), numpy RNG state and optimizer state (eqr.md §2.5).
``weights_only=True`` rejects it and a plain ``torch.load`` needs the training package installed and
will run whatever callable the file names. This module sits in between: classes of the training
package become inert placeholders (we never need their contents), the globals a torch checkpoint
legitimately uses are allowed, and every other global — ``os.system``, ``builtins.eval``,
``subprocess.Popen`` … — is refused before it can be called.

Pass the module itself as ``torch.load(..., weights_only=False, pickle_module=restricted_pickle)``.
It is still pickle: use it only on files whose origin you trust.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import pickle
from typing import IO, Any

import torch

# first module segment of the paper's training code: models/, utils/, dataset/, config/, evaluators/
TRAINING_PACKAGES = frozenset({"models", "utils", "dataset", "config", "evaluators"})

# (module, name) pairs that rebuild tensors, containers and numpy RNG state; all are side-effect free
ALLOWED_GLOBALS = frozenset(
    {
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.serialization", "_get_layout"),
        ("torch", "Tensor"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch", "UntypedStorage"),
        ("torch.nn.parameter", "Parameter"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "dict"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("builtins", "complex"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "bool"),
        ("builtins", "str"),
        ("builtins", "object"),
        ("_codecs", "encode"),  # protocol-2 pickles spell bytes as _codecs.encode(str, "latin1")
        ("copyreg", "_reconstructor"),
        ("copyreg", "__newobj__"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib._local", "PosixPath"),
        ("pathlib._local", "PurePosixPath"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global that is neither tensor machinery nor a training-package class."""


class Placeholder:
    """Inert stand-in for a class of the paper's training package; keeps what it was given.

    It accepts any constructor arguments and any pickled state, so dataclasses, enums and plain
    objects of that package all unpickle without importing (or running) the package.
    """

    origin = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        # pickle's NEWOBJ calls only __new__, so the record is made here rather than in __init__
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # everything was kept by __new__

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<placeholder for {self.origin}>"


_placeholders: dict[str, type[Placeholder]] = {}


def placeholder_class(module: str, name: str) -> type[Placeholder]:
    """One placeholder subclass per original class, so isinstance checks and reprs stay meaningful."""
    origin = f"{module}.{name}"
    if origin not in _placeholders:
        _placeholders[origin] = type(name, (Placeholder,), {"origin": origin, "__module__": __name__})
    return _placeholders[origin]


def _modern_name(module: str, name: str) -> tuple[str, str]:
    """Undo protocol-2 Python-2 spellings (``__builtin__.set``) and numpy 1.x module paths."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    if module == "numpy.core" or module.startswith("numpy.core."):
        module = "numpy._core" + module[len("numpy.core") :]
    return module, name


def _is_torch_constant(module: str, name: str) -> bool:
    """``torch.float32``, ``torch.bfloat16``, ``torch.strided`` …: dtype and layout singletons."""
    if module != "torch" or name.startswith("_"):
        return False
    return isinstance(getattr(torch, name, None), (torch.dtype, torch.layout))


def _is_numpy_dtype_class(module: str, name: str) -> bool:
    """numpy 2 may pickle a dtype through its class, e.g. ``numpy.dtypes.UInt32DType``."""
    return module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier()


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` is an allow-list (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in TRAINING_PACKAGES:
            return placeholder_class(module, name)
        mod, attr = _modern_name(module, name)
        if (mod, attr) in ALLOWED_GLOBALS or _is_torch_constant(mod, attr) or _is_numpy_dtype_class(mod, attr):
            return getattr(importlib.import_module(mod), attr)
        raise UnsafePickleError(
            f"refusing to unpickle global {module}.{name}: a checkpoint only needs tensors, plain data and "
            f"classes of the training package ({', '.join(sorted(TRAINING_PACKAGES))}); "
            "this file may try to run code"
        )


def load(file: IO[bytes], **kwargs: Any) -> Any:
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    return Unpickler(io.BytesIO(data), **kwargs).load()


# torch.load treats its pickle_module like the stdlib one; these keep that duck type complete
Pickler = pickle.Pickler
UnpicklingError = pickle.UnpicklingError
dump = pickle.dump
dumps = pickle.dumps
