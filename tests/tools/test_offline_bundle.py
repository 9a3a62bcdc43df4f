"""tools/make_offline_bundle.py and `tools/setup.sh --offline DIR`: arguments, bundle checks, and (slow)
a bundle built here installed with --no-index next to the running torch, then a few training steps."""
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "make_offline_bundle.py"
HERE = "{}.{}".format(*sys.version_info[:2])


def _bundle_module():
    spec = importlib.util.spec_from_file_location("make_offline_bundle", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def _setup(*args, env_extra=None):
    env = {**os.environ, "REID2_PYTHON": sys.executable, **(env_extra or {})}
    return subprocess.run(["bash", str(REPO / "tools" / "setup.sh"), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


# --- the bundle script: arguments (checked before anything is fetched) -----------------------------

def test_help_names_the_options():
    res = _script("--help")
    assert res.returncode == 0
    for option in ("--python", "--platform", "--max-glibc", "--skip", "--skip-from", "--with-optional"):
        assert option in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--python", "3.9"], "--python must be one of 3.10, 3.11, 3.12, 3.13, got '3.9'"),
    (["--platform", "Bad Tag"], "--platform must be 'native', 'manylinux' or a wheel platform tag"),
    (["--platform", "manylinux", "--max-glibc", "2.5"], "--max-glibc must be 2.17 or newer, got 2.5"),
    (["--skip-from", "/nonexistent/list.txt"], "--skip-from /nonexistent/list.txt: no such file"),
])
def test_bad_arguments_are_named(tmp_path, args, message):
    res = _script(tmp_path / "bundle", *args)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "bundle").exists()


def test_another_python_needs_a_builder_of_that_version(tmp_path):
    other = "3.12" if HERE != "3.12" else "3.13"
    res = _script(tmp_path / "bundle", "--python", other, "--builder-python", sys.executable)
    assert res.returncode == 2
    assert f"--builder-python {sys.executable} is not a Python {other}" in res.stderr, res.stderr


def test_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    res = _script(tmp_path)
    assert res.returncode == 2 and "exists and is not an empty folder" in res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_platform_tags():
    tags = _bundle_module().platform_tags("manylinux", "2.28")
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags and not any(t.startswith("manylinux_2_29") for t in tags)
    assert _bundle_module().platform_tags("native", "2.28") == []


def test_skip_list_from_pip_freeze(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# the target\nNumPy==2.4.6\nopencv_python_headless==4.10.0.84\nscipy @ file:///x\n")
    args = _bundle_module().parse_args([str(tmp_path / "b"), "--skip-from", str(freeze), "--skip", "Pillow"])
    assert args.skip_set == {"numpy", "opencv-python-headless", "scipy", "pillow", "torch", "torchvision"}


def test_closure_stops_at_skipped_and_extra_requirements():
    def item(*requires):
        return {"metadata": {"requires_dist": list(requires)}}

    items = {"a": item("b>=1", "d", "f; extra == 'docs'"), "b": item("c ; python_version >= '3.8'"),
             "c": item(), "d": item("e"), "e": item(), "f": item()}
    assert _bundle_module().keep_closure(items, ["a[x]>=2"], skip={"d"}) == {"a", "b", "c"}
    assert _bundle_module().keep_closure(items, ["a"], skip=set()) == {"a", "b", "c", "d", "e"}


def test_wheel_requirements_keeps_the_extras_asked_for(tmp_path):
    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("x-1.0.dist-info/METADATA", "Name: x\nRequires-Dist: numpy\nRequires-Dist: fvcore<0.1.6,>=0.1.5\n"
                   "Requires-Dist: tomli; python_version < \"3.11\"\nRequires-Dist: pytest; extra == \"test\"\n"
                   "Requires-Dist: onnx; extra == \"export\"\n")
    reqs = _bundle_module().wheel_requirements(wheel, ("test",))
    assert reqs == ["numpy", "fvcore<0.1.6,>=0.1.5", 'tomli; python_version < "3.11"', "pytest"]


def test_detectron2_setup_patch(tmp_path):
    setup_py = tmp_path / "setup.py"
    setup_py.write_text(
        "import glob\nimport torch\nfrom torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension\n\n"
        'torch_ver = [int(x) for x in torch.__version__.split(".")[:2]]\n'
        'assert torch_ver >= [1, 8], "Requires PyTorch >= 1.8"\n'
        "setup(\n    ext_modules=get_extensions(),\n"
        '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n)\n')
    _bundle_module().patch_detectron2_setup(setup_py)
    text = setup_py.read_text()
    assert "torch" not in text and "ext_modules=[]," in text and "get_extensions()" not in text
    with pytest.raises(RuntimeError, match=r"setup\.py: unexpected Detectron2 setup\.py"):
        _bundle_module().patch_detectron2_setup(setup_py)  # already patched: the expected lines are gone


# --- setup.sh --offline: the folder is checked before anything is installed -------------------------

def test_setup_offline_missing_folder(tmp_path):
    res = _setup("--offline", tmp_path / "nowhere")
    assert res.returncode == 2
    assert f"--offline {tmp_path / 'nowhere'}: no such folder" in res.stderr
    assert "tools/make_offline_bundle.py" in res.stderr


def test_setup_offline_needs_a_manifest_and_a_folder(tmp_path):
    res = _setup("--offline", tmp_path)
    assert res.returncode == 2 and "no manifest.json there" in res.stderr
    res = _setup("--offline")
    assert res.returncode == 2 and "--offline needs a folder" in res.stderr
    res = _setup("--online")
    assert res.returncode == 2 and "unknown argument '--online'" in res.stderr


def test_setup_offline_refuses_another_python(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"python": "3.9", "files": []}))
    res = _setup("--offline", tmp_path)
    assert res.returncode != 0
    assert f"holds wheels for Python 3.9, but {sys.executable} is Python {HERE}" in res.stderr
    assert f"--python {HERE}" in res.stderr


def test_setup_offline_refuses_a_damaged_bundle(tmp_path):
    (tmp_path / "a-1.0-py3-none-any.whl").write_bytes(b"changed")
    files = [{"file": "a-1.0-py3-none-any.whl", "sha256": "0" * 64},
             {"file": "b-2.0-py3-none-any.whl", "sha256": "1" * 64}]
    (tmp_path / "manifest.json").write_text(json.dumps({"python": HERE, "files": files}))
    res = _setup("--offline", tmp_path)
    assert res.returncode != 0
    assert "a-1.0-py3-none-any.whl: sha256 differs from manifest.json" in res.stderr
    assert "b-2.0-py3-none-any.whl: missing" in res.stderr


# --- slow: build, install with no index next to the running torch, train ------------------------------

def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _link_torch_only(dest):
    """``dest``: links to torch, torchvision and what they need, except numpy and Pillow (the bundle's)."""
    dest.mkdir()
    todo, seen = ["torch", "torchvision"], set()
    while todo:
        name = _canonical(todo.pop())
        if name in seen or name in ("numpy", "pillow"):
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform / Python
        for req in map(Requirement, dist.requires or []):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        site = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or []} - {".."}:
            if not (dest / top).exists():
                (dest / top).symlink_to(site / top)
    return seen


def _run(cmd, timings, key, **kw):
    start = time.time()
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    timings[key] = round(time.time() - start, 1)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    return res


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_bundle_installs_offline_and_trains(tmp_path):
    timings = {}
    bundle = tmp_path / "bundle"
    _run([sys.executable, SCRIPT, bundle], timings, "bundle", timeout=1800)
    manifest = json.loads((bundle / "manifest.json").read_text())
    size_mib = sum(f["bytes"] for f in manifest["files"]) / 2**20
    names = {f["name"] for f in manifest["files"]}
    assert manifest["python"] == HERE and not names & {"torch", "torchvision"} and not any("nvidia" in n for n in names)
    assert {"pb1-detectron2", "reid2", "fvcore", "iopath", "yacs", "omegaconf", "hydra-core", "pycocotools",
            "antlr4-python3-runtime", "termcolor", "pillow", "numpy", "pytest"} <= names
    with zipfile.ZipFile(bundle / manifest["detectron2_sdist"]["wheel"]) as z:
        assert "REID2_STUB = True" in z.read("detectron2/_C.py").decode()

    # A fresh venv of the base interpreter that sees only torch/torchvision (+ their needs) of this one.
    torch_site = tmp_path / "torch-site"
    _link_torch_only(torch_site)
    venv = tmp_path / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv], timings, "venv", timeout=600)
    vpy = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([vpy, "-c", purelib], timings, "-").stdout.strip())
    (site / "_torch_from_host.pth").write_text(f"{torch_site}\n")
    probe = subprocess.run([vpy, "-c", "import importlib.util as u, torch; assert u.find_spec('torchvision'); "
                            "import numpy"], capture_output=True, text=True)
    assert "No module named 'numpy'" in probe.stderr, probe.stderr  # torch is there, the rest is not

    # No index, no pip configuration, and no route out: everything comes from the folder.
    offline_env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"},
                   "REID2_PYTHON": str(vpy),
                   "PIP_CONFIG_FILE": os.devnull, "HTTP_PROXY": "http://127.0.0.1:9",
                   "HTTPS_PROXY": "http://127.0.0.1:9"}
    res = _run(["bash", REPO / "tools" / "setup.sh", "--offline", bundle], timings, "setup_offline",
               env=offline_env, timeout=1800)
    assert "torch" in res.stdout and "kept" in res.stdout
    res = _run(["bash", REPO / "tools" / "setup.sh", "--offline", bundle], timings, "setup_again", env=offline_env,
               timeout=600)
    assert "environment ready" in res.stdout  # idempotent

    check = ("import json, torch, PIL, numpy, detectron2, reid2; from detectron2 import _C; "
             "print(json.dumps([torch.__file__, PIL.__version__, numpy.__file__, reid2.__file__, _C.REID2_STUB]))")
    torch_file, pil_version, numpy_file, reid2_file, stub = json.loads(
        _run([vpy, "-c", check], timings, "-", cwd=tmp_path, env=offline_env).stdout)
    assert torch_file.startswith(str(torch_site)) and numpy_file.startswith(str(venv)) and stub
    assert Path(reid2_file).resolve() == REPO / "reid2" / "__init__.py"  # the editable checkout
    assert int(pil_version.split(".")[0]) >= 10, pil_version

    # The suite's image paths with the bundle's Pillow (>= 10).
    image_tests = sorted(REPO.glob("tests/**/test_compat.py")) + sorted(REPO.glob("tests/**/test_transforms.py"))
    assert len(image_tests) == 2, image_tests
    _run([vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", *image_tests], timings, "pytest_pillow", cwd=REPO,
         env=offline_env, timeout=900)

    # Train a few steps in the offline environment, on synthetic data.
    data = tmp_path / "datasets"
    env = {**offline_env, "REID2_DATASETS": str(data), "OMP_NUM_THREADS": "2"}
    _run([vpy, "-m", "reid2.data.synthetic", "--root", data / "synthetic", "--preset", "tiny", "--only", "market"],
         timings, "synthetic", env=env, timeout=600)
    out = tmp_path / "run"
    _run([vpy, "tools/train_net.py", "--config-file", "configs/synthetic/reid_tiny.yaml", "SOLVER.MAX_ITER", "3",
          "SOLVER.IMS_PER_BATCH", "16", "SOLVER.WARMUP_ITERS", "0", "REID2.LOG_PERIOD", "1", "OUTPUT_DIR", out],
         timings, "train_3_steps", cwd=REPO, env=env, timeout=900)
    logged = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    losses = [e["total_loss"] for e in logged if "total_loss" in e]
    assert [e["iteration"] for e in logged if "total_loss" in e][-1] == 2 and all(map(math.isfinite, losses))

    # reid2's own wheel installs and imports (next to the editable checkout, it takes precedence on PYTHONPATH).
    target = tmp_path / "reid2-wheel"
    _run([vpy, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", target,
          bundle / manifest["reid2_wheel"]],
         timings, "-", env=offline_env, timeout=600)
    res = _run([vpy, "-c", "import reid2; print(reid2.__file__)"], timings, "-", cwd=tmp_path,
               env={**env, "PYTHONPATH": str(target)})
    assert res.stdout.strip() == str(target / "reid2" / "__init__.py")

    print(f"\nbundle: {len(manifest['files'])} wheels, {size_mib:.1f} MiB; timings (s): {timings}")
