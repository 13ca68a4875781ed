"""Docker-free bundling of the worker: `lambda_src/img2img` plus manylinux wheels of its requirements.

`LocalPipBundler.try_bundle` runs during synth on the developer's machine: it copies the package and lets
pip download wheels for the *Lambda's* platform (not the host's), so no Docker is needed. Docker stays only
as the fallback `image` of the BundlingOptions, used when the local bundler returns False.

The asset source is `lambda_src/` (with `requirements.txt` inside it), so a change of the code or of the
pinned requirements changes the asset hash. The bundler's own arguments are not part of the hash (a stale
`cdk.out/asset.<hash>` would be reused), so the architecture and Python version also appear in the Docker
fallback's command and platform, which are hashed.

pip honours its usual environment variables: `PIP_INDEX_URL` for a mirror, `PIP_NO_INDEX=1` plus
`PIP_FIND_LINKS=<wheelhouse>` to bundle without network access.
"""
from __future__ import annotations

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
        out = Path(output_dir)
        try:
            copy_package(self.source_dir / PACKAGE, out)
            requirements = self.source_dir / REQUIREMENTS
            if requirements.exists():
                subprocess.run(
                    pip_command(str(out), architecture=self.architecture, python_version=self.python_version,
                                requirements=requirements),
                    check=True,
                )
            prune(out)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"local bundling failed ({exc}); falling back to Docker", file=sys.stderr)
            return False
        return True


def worker_code(*, architecture: str, python_version: str, runtime: lambda_.Runtime) -> lambda_.Code:
    """The worker's asset: `lambda_src/` bundled locally with pip, Docker only as a fallback."""
    arch = _PIP_ARCH[architecture]
    docker_command = (
        f"cp -r /asset-input/{PACKAGE} /asset-output/ && "
        f"pip install -r /asset-input/{REQUIREMENTS} --platform manylinux_2_28_{arch} "
        f"--platform manylinux2014_{arch} --implementation cp --python-version {python_version} "
        "--only-binary=:all: --target /asset-output --no-compile --quiet && "
        "find /asset-output -depth -type d \\( -name __pycache__ -o -name tests \\) -exec rm -rf {} +"
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
