"""Copy UCR/UEA sets out of aeon's wheel into `data/ucr/<Name>/`, without installing aeon.

aeon bundles a few archive problems (ArrowHead, PickupGestureWiimoteZ, ...) but pins older
numpy/pandas than this project; its wheel is only a zip, so we fetch it with pip and extract the
`.ts` files. Then: `python train.py data=ucr data.name=ArrowHead data.path=data/ucr`.

    python -m latentsweep.data.fetch_ucr ArrowHead PickupGestureWiimoteZ
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

AEON_WHEEL = "aeon==1.6.0"
PREFIX = "aeon/datasets/data/"


def fetch(names: list[str], dest: str | Path = "data/ucr", wheel: str | None = None) -> list[Path]:
    dest = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            AEON_WHEEL, "-d", tmp], check=True)
            wheel = str(next(Path(tmp).glob("aeon-*.whl")))
        written = []
        with zipfile.ZipFile(wheel) as zf:
            available = sorted({n[len(PREFIX):].split("/")[0] for n in zf.namelist()
                                if n.startswith(PREFIX) and n.count("/") > 3})
            for name in names:
                members = [n for n in zf.namelist() if n.startswith(f"{PREFIX}{name}/") and n.endswith(".ts")]
                if not members:
                    raise SystemExit(f"{name} is not bundled in {AEON_WHEEL}; bundled: {', '.join(available)}")
                for member in members:
                    target = dest / name / Path(member).name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(member))
                    written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--dest", default="data/ucr")
    parser.add_argument("--wheel", help="a local aeon wheel instead of downloading one")
    args = parser.parse_args()
    for path in fetch(args.names, args.dest, args.wheel):
        print(path)


if __name__ == "__main__":
    main()
