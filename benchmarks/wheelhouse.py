"""Wheels for a GPU box that cannot reach PyPI (`make gpu-wheels`), so `make gpu-check` runs there.

Such boxes usually come with CUDA PyTorch and the scientific stack installed, but not Hydra, Optuna
or MLflow. This takes the project's runtime (and test) requirements, walks their dependency closure
*as installed in this venv* (the versions the test suite passed with), drops what the target image
already has (`--have`, one name per line or comma-separated; torch and CUDA packages always), and
downloads binary wheels of the rest for the target's Python with `pip download --no-deps`.

On the box: `bash benchmarks/gpu_box.sh` installs them into a private folder and runs the check.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_ROOTS = ["latentsweep", "pytest", "pytest-timeout"]
ALWAYS_THERE = re.compile(r"^(torch|triton|nvidia-.*)$")  # never carried: the box's CUDA build wins
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]


def closure(roots: list[str]) -> dict[str, str]:
    """{name: installed version} of `roots` and everything they need (no extras), from this venv."""
    found: dict[str, str] = {}
    stack = list(roots)
    while stack:
        name = canonicalize_name(stack.pop())
        if name in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sys.exit(f"error: {name} is not installed here — run `make install` first")
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    found.pop("latentsweep", None)  # the project itself travels as source (PYTHONPATH=src)
    return found


def read_have(path: Path) -> set[str]:
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    return {canonicalize_name(n) for n in re.split(r"[,\s]+", text) if n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.12", help="the box's Python version (default 3.12)")
    parser.add_argument("--have", type=Path, default=ROOT / "benchmarks" / "cuda_image_packages.txt",
                        help="packages the box already has")
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    args = parser.parse_args()

    have = read_have(args.have) if args.have.exists() else set()
    wanted = {n: v for n, v in closure(RUNTIME_ROOTS).items() if n not in have and not ALWAYS_THERE.match(n)}
    args.dest.mkdir(parents=True, exist_ok=True)
    for old in args.dest.glob("*.whl"):
        old.unlink()  # one version of each: two would stop the install on the box
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", args.python, "--implementation", "cp", "-d", str(args.dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + [f"{n}=={v}" for n, v in sorted(wanted.items())], check=True)
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels for Python {args.python} in {args.dest} ({size:.1f} MiB); "
          f"skipped {len(have)} packages the box has")


if __name__ == "__main__":
    main()
