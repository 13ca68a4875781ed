"""Docker-free bundling of the worker: `lambda_src/img2img` plus manylinux wheels of its requirements.

`LocalPipBundler.try_bundle` runs during synth on the developer's machine: it copies the package and lets
pip download wheels for the *Lambda's* platform (not the host's), so no Docker is needed. Docker stays only
as the fallback `image` of the BundlingOptions, used when the local bundler returns False.

The asset source is `lambda_src/` (with `requirements.txt` inside it), so a change of the code or of the
pinned requirements changes the asset hash. The bundler's own arguments are not part of the hash (a stale
`cdk.out/asset.<hash>` would be reused), so the architecture and Python version also appear in the Docker
fallback's command and platform, which are hashed.

pip honours its usual environment variables: `PIP_INDEX_URL` for a mirror, `PIP_NO_INDEX=1` plus
`PIP_FIND_LINKS=<wheelhouse>` to bundle without network access (`make wheels` fills `build/wheelhouse`).
When pip fails, synth stops with pip's own error and those remedies (`BundlingError`) instead of trying
Docker, whose error would hide pip's; `IMG2IMG_BUNDLING=docker` asks for the Docker build explicitly.

Bytecode: Lambda's code directory is read-only, so modules without a `.pyc` are compiled on every cold
start. The bundle ships `__pycache__/*.cpython-3XX.pyc` compiled by an interpreter of the runtime's
Python version (the magic number must match; `IMG2IMG_BUNDLE_PYTHON`, `python3.X` on PATH, or pyenv's),
with `--invalidation-mode unchecked-hash` (no mtime checks: the asset's mtimes are meaningless) and
source paths rewritten to `/var/task` for tracebacks. Without such an interpreter the bundle ships
without bytecode and says so.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_SRC = REPO_ROOT / "lambda_src"
PACKAGE = "img2img"
REQUIREMENTS = "requirements.txt"

# Never part of the asset (they would also make the asset hash change for nothing).
ASSET_EXCLUDES = [
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "tests",
    "**/tests",
    "img2img_local",
    "**/*.egg-info",
    ".DS_Store",
]
# Names removed from the bundle after pip ran: test suites some wheels ship, and caches.
_PRUNE_DIRS = {"__pycache__", "tests", "img2img_local"}

LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the bundle: the path tracebacks show
PYTHON_ENV = "IMG2IMG_BUNDLE_PYTHON"
BUNDLING_ENV = "IMG2IMG_BUNDLING"
_PIP_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
_DOCKER_PLATFORM = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}


def pip_command(output_dir: str, *, architecture: str, python_version: str,
                requirements: str | Path, python: str = sys.executable) -> list[str]:
    """`pip install` of manylinux wheels for the Lambda's architecture and Python version."""
    arch = _PIP_ARCH[architecture]
    return [
        python, "-m", "pip", "install",
        "-r", str(requirements),
        # manylinux2014 alone silently resolves to older wheels (e.g. an older Pillow): list both tags.
        "--platform", f"manylinux_2_28_{arch}",
        "--platform", f"manylinux2014_{arch}",
        "--implementation", "cp",
        "--python-version", python_version,
        "--only-binary=:all:",
        "--target", str(output_dir),
        "--no-compile",
        "--quiet",
        "--disable-pip-version-check",
        "--no-warn-script-location",
    ]


class BundlingError(RuntimeError):
    """The bundle cannot be built here: the message says why and what to do (app.py prints it)."""


FAILURES: list[BundlingError] = []  # for app.py: jsii hides the exception's type


def compile_command(output_dir: str | Path, python: str) -> list[str]:
    """compileall for the runtime: no mtime checks, tracebacks under /var/task, quiet."""
    return [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
            "-s", str(output_dir), "-p", LAMBDA_TASK_ROOT, str(output_dir)]


def _version_of(python: str) -> str | None:
    try:
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_interpreter(python_version: str) -> str | None:
    """An interpreter of exactly this Python version (its bytecode is the runtime's), or None."""
    explicit = os.environ.get(PYTHON_ENV)
    if explicit:
        if _version_of(explicit) != python_version:
            raise BundlingError(f"{PYTHON_ENV}={explicit} is not a Python {python_version} interpreter "
                                f"(the function runs {python_version}; its bytecode must match)")
        return explicit
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python_version:
        return sys.executable
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{python_version}"),
                  *sorted(glob.glob(f"{pyenv_root}/versions/{python_version}.*/bin/python{python_version}"),
                          reverse=True)]
    return next((c for c in candidates if c and _version_of(c) == python_version), None)


def pip_failure(stderr: str, python_version: str, architecture: str) -> BundlingError:
    """pip's own error plus the ways to bundle without the package index."""
    tail = "\n".join(stderr.strip().splitlines()[-12:]) or "(pip printed nothing)"
    return BundlingError(
        f"pip could not install the function's wheels (manylinux, {architecture}, Python {python_version}):\n"
        f"{tail}\n"
        "Without access to the package index: run `make wheels` where there is one (it fills build/wheelhouse "
        "with exactly these wheels), then synth with `PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/build/wheelhouse`; "
        "or point PIP_INDEX_URL at a mirror. IMG2IMG_BUNDLING=docker builds in Docker instead.")


def copy_package(source: Path, output_dir: Path) -> None:
    shutil.copytree(source, output_dir / source.name, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".pytest_cache"))


def prune(output_dir: Path) -> None:
    for path in sorted(output_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in _PRUNE_DIRS:
            shutil.rmtree(path, ignore_errors=True)
    for path in output_dir.rglob("*.pyc"):
        path.unlink(missing_ok=True)


@jsii.implements(ILocalBundling)
class LocalPipBundler:
    """Bundles on the host with pip (no Docker). Returns False, letting CDK fall back to Docker, on failure."""

    def __init__(self, *, architecture: str, python_version: str, source_dir: Path = LAMBDA_SRC) -> None:
        if architecture not in _PIP_ARCH:
            raise ValueError(f"architecture must be one of {sorted(_PIP_ARCH)}")
        self.architecture = architecture
        self.python_version = python_version
        self.source_dir = Path(source_dir)

    def try_bundle(self, output_dir: str, options: object = None, **_kwargs: object) -> bool:
        # jsii passes the BundlingOptions struct positionally; nothing in it is needed here.
        if os.environ.get(BUNDLING_ENV) == "docker":
            return False
        try:
            self.bundle(Path(output_dir))
        except BundlingError as exc:
            # jsii wraps this in its own error and traceback: app.py prints only this one.
            FAILURES.append(exc)
            raise
        return True

    def bundle(self, out: Path) -> None:
        """Package, wheels, pruning, bytecode; raises BundlingError with what to do."""
        copy_package(self.source_dir / PACKAGE, out)
        requirements = self.source_dir / REQUIREMENTS
        if requirements.exists():
            done = subprocess.run(
                pip_command(str(out), architecture=self.architecture, python_version=self.python_version,
                            requirements=requirements),
                capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise pip_failure(done.stderr, self.python_version, self.architecture)
        prune(out)
        python = find_interpreter(self.python_version)
        if python is None:
            print(f"bedrock-img2img: no Python {self.python_version} interpreter found ({PYTHON_ENV}, "
                  f"python{self.python_version} on PATH, pyenv): the bundle ships without bytecode, so every "
                  "cold start compiles every module", file=sys.stderr)
            return
        done = subprocess.run(compile_command(out, python), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BundlingError(f"compileall ({python}) failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def worker_code(*, architecture: str, python_version: str, runtime: lambda_.Runtime) -> lambda_.Code:
    """The worker's asset: `lambda_src/` bundled locally with pip, Docker only as a fallback."""
    arch = _PIP_ARCH[architecture]
    docker_command = (
        f"cp -r /asset-input/{PACKAGE} /asset-output/ && "
        f"pip install -r /asset-input/{REQUIREMENTS} --platform manylinux_2_28_{arch} "
        f"--platform manylinux2014_{arch} --implementation cp --python-version {python_version} "
        "--only-binary=:all: --target /asset-output --no-compile --quiet && "
        "find /asset-output -depth -type d \\( -name __pycache__ -o -name tests \\) -exec rm -rf {} + && "
        f"python -m compileall -q -j 0 --invalidation-mode unchecked-hash -s /asset-output -p {LAMBDA_TASK_ROOT} "
        "/asset-output"
    )
    return lambda_.Code.from_asset(
        str(LAMBDA_SRC),
        exclude=ASSET_EXCLUDES,
        bundling=BundlingOptions(
            image=runtime.bundling_image or DockerImage.from_registry(
                f"public.ecr.aws/sam/build-python{python_version}"),
            command=["bash", "-c", docker_command],
            platform=_DOCKER_PLATFORM[architecture],
            local=LocalPipBundler(architecture=architecture, python_version=python_version),
        ),
    )
