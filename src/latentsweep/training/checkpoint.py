"""Per-epoch checkpoints without pickle, written so a kill never leaves a half-written one.

Each save goes to a fresh `epoch-NNNN/` folder (weights as safetensors, optimiser state and RNG
states as tensors read back with `weights_only=True`, loop state as JSON); only when it is
complete does the `LATEST` pointer move to it (atomic rename), and older folders are removed.
Every file, the folder and each rename are fsynced before the pointer moves, so the last complete
epoch also survives a power loss (a rename that is not fsynced can be lost with the page cache).
A run that ends normally marks its checkpoint `FINISHED`: `trainer.resume=true` skips it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

POINTER = "LATEST"
FINISHED_MARK = "FINISHED"


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries, i.e. renames) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)  # the rename itself


def state_dict_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Save and load the whole training state of one run in `directory`."""

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any]):
        self.directory = Path(directory)
        self.fingerprint = fingerprint  # the config values that must match on resume

    def save(self, *, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             best_state: dict[str, torch.Tensor] | None, loop_state: dict[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"epoch-{epoch:04d}"
        if target.exists():
            shutil.rmtree(target)
        tmp = self.directory / f".partial-epoch-{epoch:04d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_file(state_dict_to_cpu(model.state_dict()), str(tmp / "model.safetensors"))
        if best_state is not None:
            save_file(best_state, str(tmp / "best.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        meta = {"epoch": epoch, "fingerprint": self.fingerprint, "loop": loop_state}
        # compact JSON: `indent` takes Python's pure-Python encoder, and the history grows every epoch
        (tmp / "state.json").write_text(json.dumps(meta))
        for written in tmp.iterdir():
            fsync_path(written)
        fsync_path(tmp)
        (self.directory / FINISHED_MARK).unlink(missing_ok=True)  # training goes on (e.g. more epochs)
        os.replace(tmp, target)
        fsync_path(self.directory)
        _atomic_write_text(self.directory / POINTER, target.name)
        for old in self.directory.glob("epoch-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return target

    def exists(self) -> bool:
        return (self.directory / POINTER).exists()

    def mark_finished(self) -> None:
        """The run ended normally: `trainer.resume=true` no longer picks this checkpoint."""
        if self.exists():
            _atomic_write_text(self.directory / FINISHED_MARK, "finished\n")

    def finished(self) -> bool:
        return is_finished(self.directory)

    def load(self, map_location: torch.device | str = "cpu") -> dict[str, Any]:
        """Everything `save` wrote; mismatched configuration or damage is a CheckpointError."""
        pointer = self.directory / POINTER
        if not pointer.exists():
            raise CheckpointError(f"no checkpoint in {self.directory} — start without trainer.resume "
                                  "or point trainer.resume_from at a run's output directory")
        folder = self.directory / pointer.read_text().strip()
        try:
            meta = json.loads((folder / "state.json").read_text())
            model_state = load_file(str(folder / "model.safetensors"), device=str(map_location))
            best = folder / "best.safetensors"
            best_state = load_file(str(best)) if best.exists() else None
            optimizer_state = torch.load(folder / "optimizer.pt", map_location=map_location, weights_only=True)
            rng = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"checkpoint {folder} is corrupt or incomplete ({type(exc).__name__}) — "
                                  "delete it and start again without trainer.resume") from exc
        diffs = {k: (meta["fingerprint"].get(k), v) for k, v in self.fingerprint.items()
                 if meta["fingerprint"].get(k) != v}
        if diffs:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diffs.items()))
            raise CheckpointError(f"checkpoint {folder} is from a different configuration ({detail}) — "
                                  "resume with the same settings or start a new run")
        return {"epoch": meta["epoch"], "loop": meta["loop"], "model": model_state,
                "best_state": best_state, "optimizer": optimizer_state, "rng": rng}


def is_finished(directory: str | Path) -> bool:
    """True when the run that wrote the checkpoint in `directory` ended normally."""
    return (Path(directory) / FINISHED_MARK).exists()
