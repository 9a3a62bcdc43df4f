"""Stand-in for ``detectron2._C`` when Detectron2 is installed without its compiled ops.

reid2's set-up copies this file to ``detectron2/_C.py`` (and ``reid2`` installs it in
``sys.modules`` when no ``detectron2._C`` is importable). Everything reid2 uses is pure
PyTorch/torchvision; the few Detectron2 ops that exist only in C++/CUDA (rotated boxes,
deformable convolution, the fast COCO evaluator) raise an error that names the op.
"""

REID2_STUB = True

_HOW_TO_FIX = (
    "Detectron2 was installed from Python sources without its compiled extension, "
    "so the compiled-only op '{name}' is unavailable. Install an official build "
    "(`pip install 'git+https://github.com/facebookresearch/detectron2.git'`, see "
    "https://detectron2.readthedocs.io/en/latest/tutorials/install.html) to use it."
)


class CompiledOpUnavailable(RuntimeError):
    """Raised when a compiled-only Detectron2 op is called on a pure-Python install."""


def _missing(name):
    def op(*args, **kwargs):
        raise CompiledOpUnavailable(_HOW_TO_FIX.format(name=name))

    op.__name__ = name
    return op


def get_compiler_version():
    return "none (reid2 stub: Detectron2 compiled ops not built)"


def get_cuda_version():
    return "none"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing(name)
