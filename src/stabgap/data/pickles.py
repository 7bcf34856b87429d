"""Unpickling the pickled sources (CIFAR, mini-ImageNet) safely.

Our own because torchvision unpickles with plain `pickle.load`, which may call any importable
function: a tampered or wrong file could run code. This unpickler builds only plain containers and
numpy arrays and refuses everything else.
"""

from __future__ import annotations

import pickle

from .base import DataError


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


# The only Python objects the data pickles contain besides dicts, lists, strings and numbers: numpy
# arrays (and numpy scalars). Pickles written by numpy 1.x name numpy.core, mapped to numpy._core.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
    ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol 2
    ("collections", "OrderedDict"),
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "numpy.core" or module.startswith("numpy.core."):
            module = "numpy._core" + module.removeprefix("numpy.core")
        if (module, name) not in _PICKLE_GLOBALS:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def unpickle(file, source: str, encoding: str):
    """Unpickle a data pickle from the open binary `file`; any failure is a DataError naming `source`.

    encoding: how Python 2 str objects are decoded ("bytes" keeps them as bytes, as CIFAR needs)."""
    try:
        return _DataUnpickler(file, encoding=encoding).load()
    except _ForbiddenGlobal as e:
        raise DataError(f"{source} is not a plain data pickle: it refers to the Python object {e}, which "
                        f"these data files never contain; refusing to load it (unpickling it could run "
                        f"code). Replace it with the original file.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{source} could not be unpickled ({type(e).__name__}: {e}): the file is truncated "
                        f"(an interrupted copy?) or damaged. Replace it with a complete copy.") from e
