"""reid2.utils.compat: the Pillow names Detectron2 v0.6 needs, with any Pillow (>= 10 removed them)."""
import inspect
import types

import numpy as np
from PIL import Image

import reid2  # noqa: F401  (restores the names before Detectron2 is imported)
from reid2.utils.compat import patch_pillow


def test_aliases_are_the_kept_filters():
    assert int(Image.LINEAR) == int(Image.BILINEAR)
    assert int(Image.CUBIC) == int(Image.BICUBIC)
    assert int(Image.ANTIALIAS) == int(Image.LANCZOS)
    assert int(Image.NEAREST) == 0


def test_patch_adds_only_missing_names():
    fake = types.SimpleNamespace(BILINEAR=2, BICUBIC=3, LANCZOS=1, LINEAR=99)
    assert patch_pillow(fake) == ["CUBIC", "ANTIALIAS"]
    assert (fake.LINEAR, fake.CUBIC, fake.ANTIALIAS) == (99, 3, 1)  # a present name is kept
    assert patch_pillow(fake) == []


def _step_image(h, w):
    """uint8 image: the left half 0, the right half 200."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2:] = 200
    return img


def test_detectron2_transforms_with_default_interp():
    from detectron2.data.transforms import ExtentTransform, ResizeTransform

    # ExtentTransform's default is Image.LINEAR, evaluated when Detectron2 is imported
    assert int(inspect.signature(ExtentTransform.__init__).parameters["interp"].default) == int(Image.BILINEAR)
    out = ExtentTransform(src_rect=(0, 0, 4, 4), output_size=(2, 2)).apply_image(_step_image(4, 4))
    assert out.shape == (2, 2, 3) and out[..., 0].tolist() == [[0, 200], [0, 200]]

    # bilinear 4 -> 8: output column j samples x = (j + 0.5) / 2 - 0.5; the step lies between x=1 and x=2
    out = ResizeTransform(4, 4, 8, 8).apply_image(_step_image(4, 4))
    assert out.shape == (8, 8, 3)
    assert out[0, :, 0].tolist() == [0, 0, 0, 50, 150, 200, 200, 200]


def _framework_imports(path):
    """(the first of 'reid2' / 'detectron2' a module-level import names, whether any import names Detectron2)."""
    import ast

    def top_names(node):
        if isinstance(node, ast.Import):
            return [a.name.split(".")[0] for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            return [node.module.split(".")[0]]
        return []

    tree = ast.parse(path.read_text())
    first = next((n for node in tree.body for n in top_names(node) if n in ("reid2", "detectron2")), None)
    anywhere = any("detectron2" in top_names(node) for node in ast.walk(tree))
    return first, anywhere


def test_every_script_imports_reid2_before_detectron2():
    """A script run as `python tools/x.py` / `python -m bench.x` that imports Detectron2 (at the top or in a
    function) before reid2 fails on a fresh install (Pillow >= 10): detectron2.data reads Image.LINEAR at import,
    and only `import reid2` restores it. Every such script imports reid2 first, at module level."""
    from tests.helpers import REPO

    scripts = [p for pattern in ("tools/*.py", "bench/*.py", "projects/*/tools/*.py", "projects/*/bench/*.py",
                                 "tests/engine/dist_workers.py")
               for p in sorted(REPO.glob(pattern)) if "__main__" in p.read_text() or p.name == "dist_workers.py"]
    assert len(scripts) > 10
    late = []
    for p in scripts:
        first, anywhere = _framework_imports(p)
        if anywhere and first != "reid2":
            late.append(str(p.relative_to(REPO)))
    assert not late, f"import reid2 first (module level) in: {late}"
