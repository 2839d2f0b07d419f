"""Checkpoints without pickle, one file each, so a kill never leaves a half-written one.

An epoch is written when `every_s` seconds have passed since the last write (`every_s=0`: every
epoch), and the run's last epoch always is: writing every epoch of a small model took a third of
its epochs' time (issue 29), and a kill then loses at most the epoch in progress and `every_s`
seconds before it.

The whole training state of an epoch (weights, the best weights so far, optimiser and RNG state as
tensors, loop state as JSON in the header) is one safetensors file. Epochs take turns between two
files, `checkpoint-0.safetensors` and `checkpoint-1.safetensors` (even and odd epochs): each is
written under a temporary name and renamed into place over the epoch before last, so a process
killed at any moment (kill -9, preemption, the OOM killer) leaves the last written epoch's file
whole, and the page cache that holds it outlives the process. Two files rather than one renamed
over itself: on ext4 a rename that replaces a file flushes the new one first (`auto_da_alloc`),
which cost more than the write; the older file is removed before the rename instead.

A power loss is another matter: what was not fsynced can be lost. Fsyncing every epoch took more
time than a small model's epoch (issue 29), so the file is fsynced at most every `sync_s` seconds,
and then also copied to `synced.safetensors`, which is never left half-written either. Loading
takes the newest file that reads back whole: after a power loss, at worst the epoch synced up to
`sync_s` earlier. `sync_s=0` fsyncs every epoch. A run that ends normally writes a synced
checkpoint and marks it `FINISHED`: `trainer.resume=true` skips it.

Checkpoints of the earlier layout (a `LATEST` pointer to `epoch-NNNN/` folders) are still read.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

log = logging.getLogger(__name__)

SLOT_FILES = ("checkpoint-0.safetensors", "checkpoint-1.safetensors")  # even and odd epochs
SYNCED_FILE = "synced.safetensors"  # the newest epoch fsynced to the disk
CHECKPOINT_FILES = (*SLOT_FILES, SYNCED_FILE)
FINISHED_MARK = "FINISHED"
LEGACY_POINTER = "LATEST"  # the earlier layout: LATEST -> epoch-NNNN/ (model.safetensors, ...)
FORMAT = "latentsweep-checkpoint-2"


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


def _pack(model_state: dict[str, torch.Tensor], best_state: dict[str, torch.Tensor] | None,
          optimizer_state: dict[str, Any], rng: dict[str, Any],
          average_state: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every tensor under a prefixed name, and the optimiser's non-tensor values for the header.
    `average_state`: the weight average's state (`trainer.ema_decay`), when the loop keeps one."""
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v.contiguous() for k, v in best_state.items()})
    if average_state is not None:
        tensors.update({f"average.{k}": v.contiguous() for k, v in average_state.items()})
    plain_state: dict[str, dict[str, Any]] = {}
    for index, values in optimizer_state["state"].items():
        plain_state[str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                plain_state[str(index)][name] = value
    tensors["rng.torch"] = rng["torch"]
    for i, cuda_state in enumerate(rng.get("cuda", [])):
        tensors[f"rng.cuda.{i}"] = cuda_state
    return tensors, {"param_groups": optimizer_state["param_groups"], "state": plain_state}


def _unpack(tensors: dict[str, torch.Tensor], optimizer_plain: dict[str, Any]) -> dict[str, Any]:
    """`_pack`'s inverse: model, best, weight average, optimizer state dict and RNG state."""
    out: dict[str, Any] = {"model": {}, "best_state": {}, "average": {}, "rng": {}}
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in optimizer_plain["state"].items()}
    cuda: dict[int, torch.Tensor] = {}
    for key, value in tensors.items():
        kind, rest = key.split(".", 1)
        if kind in ("model", "best", "average"):
            out[{"best": "best_state"}.get(kind, kind)][rest] = value
        elif kind == "optimizer":
            index, name = rest.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        elif rest == "torch":
            out["rng"]["torch"] = value
        else:
            cuda[int(rest.split(".")[1])] = value
    if cuda:
        out["rng"]["cuda"] = [cuda[i] for i in sorted(cuda)]
    out["best_state"] = out["best_state"] or None
    out["average"] = out["average"] or None
    out["optimizer"] = {"state": state, "param_groups": optimizer_plain["param_groups"]}
    return out


class Checkpointer:
    """Save and load the whole training state of one run in `directory`."""

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any], sync_s: float = 30.0,
                 every_s: float = 0.0):
        self.directory = Path(directory)
        self.fingerprint = fingerprint  # the config values that must match on resume
        self.sync_s = sync_s
        self.every_s = every_s
        self._last_sync = self._last_write = time.monotonic()
        self._unsynced: Path | None = None  # the newest checkpoint file, while it is not fsynced
        self._fresh = True  # no save or load yet: a new run clears what an earlier one left here
        self.newest_epoch: int | None = None  # the epoch this run last saved or loaded

    def clear_stale(self) -> None:
        """A new run (not a resume) in a folder an earlier run used: remove that run's checkpoints
        now, before this run's first one, which may be `every_s` away, so that a kill in between
        never leaves the earlier run's epochs to be resumed as this run's."""
        if self._fresh:
            for name in CHECKPOINT_FILES:
                (self.directory / name).unlink(missing_ok=True)
            self._fresh = False

    def due(self) -> bool:
        """Whether the epoch that just ended is written: every epoch with `every_s=0`, else once
        `every_s` seconds have passed since the last write (or since training started)."""
        return time.monotonic() - self._last_write >= self.every_s

    def save(self, *, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             best_state: dict[str, torch.Tensor] | None, loop_state: dict[str, Any],
             sync: bool | None = None, average: torch.nn.Module | None = None) -> Path:
        """This epoch's state in its slot file; fsynced (and copied to the synced file) when `sync`
        says so, or by default when `sync_s` seconds have passed since the last sync. `average`: the
        loop's weight average (`trainer.ema_decay`), kept so a resumed run averages on where it stopped."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clear_stale()
        tensors, optimizer_plain = _pack(state_dict_to_cpu(model.state_dict()), best_state,
                                         optimizer.state_dict(), rng_state(),
                                         None if average is None else state_dict_to_cpu(average.state_dict()))
        # compact JSON: `indent` takes Python's pure-Python encoder, and the history grows every epoch
        header = {"format": FORMAT, "state": json.dumps({"epoch": epoch, "fingerprint": self.fingerprint,
                                                         "loop": loop_state, "optimizer": optimizer_plain})}
        if sync is None:
            sync = time.monotonic() - self._last_sync >= self.sync_s
        (self.directory / FINISHED_MARK).unlink(missing_ok=True)  # training goes on (e.g. more epochs)
        target = self.directory / SLOT_FILES[epoch % 2]
        self._write(target, tensors, header, sync)
        if sync:
            self._write(self.directory / SYNCED_FILE, tensors, header, sync=True)
            self._last_sync = time.monotonic()
        self._unsynced = None if sync else target
        self._last_write, self.newest_epoch = time.monotonic(), epoch
        return target

    def _write(self, target: Path, tensors: dict[str, torch.Tensor], header: dict[str, str], sync: bool) -> None:
        tmp = target.with_name(f".{target.name}.partial")
        save_file(tensors, str(tmp), metadata=header)
        if sync:
            fsync_path(tmp)
        target.unlink(missing_ok=True)  # the epoch before last (the other slot holds the last one)
        os.rename(tmp, target)
        if sync:
            fsync_path(self.directory)  # the rename itself

    def exists(self) -> bool:
        return has_checkpoint(self.directory)

    def mark_finished(self) -> None:
        """The run ended normally: its last checkpoint is fsynced (it survives a power loss too), and
        `trainer.resume=true` no longer picks it."""
        if not self.exists():
            return
        if self._unsynced is not None:
            fsync_path(self._unsynced)
            fsync_path(self.directory)
            self._unsynced = None
        _atomic_write_text(self.directory / FINISHED_MARK, "finished\n")

    def finished(self) -> bool:
        return is_finished(self.directory)

    def load(self, map_location: torch.device | str = "cpu") -> dict[str, Any]:
        """Everything `save` wrote; mismatched configuration or damage is a CheckpointError."""
        self._fresh = False  # resuming: the files here are this run's
        if (self.directory / LEGACY_POINTER).exists() and not any((self.directory / n).exists() for n in CHECKPOINT_FILES):
            loaded, source = _load_legacy(self.directory, map_location), self.directory
        else:
            loaded, source = _load_newest(self.directory, map_location)
        meta = loaded.pop("meta")
        diffs = {k: (meta["fingerprint"].get(k), v) for k, v in self.fingerprint.items()
                 if meta["fingerprint"].get(k) != v}
        if diffs:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diffs.items()))
            raise CheckpointError(f"checkpoint {source} is from a different configuration ({detail}) — "
                                  "resume with the same settings or start a new run")
        self.newest_epoch = meta["epoch"]
        return {"epoch": meta["epoch"], "loop": meta["loop"], **loaded}


def _read(path: Path, map_location: torch.device | str) -> dict[str, Any]:
    """One checkpoint file: its tensors, unpacked, and its header's state as `meta`."""
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata() or {}
    if header.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    meta = json.loads(header["state"])
    out = _unpack(load_file(str(path), device=str(map_location)), meta.pop("optimizer"))
    out["rng"] = {k: (v.cpu() if k == "torch" else [t.cpu() for t in v]) for k, v in out["rng"].items()}
    if out["best_state"] is not None:  # the loop keeps the best weights on the CPU
        out["best_state"] = {k: v.cpu() for k, v in out["best_state"].items()}
    return {**out, "meta": meta}


def _load_newest(directory: Path, map_location: torch.device | str) -> tuple[dict[str, Any], Path]:
    """The newest file that reads back whole: the last epoch's slot, else (a kill mid-write, a power
    loss) the other slot or the synced copy."""
    found: list[tuple[int, dict[str, Any], Path]] = []
    damaged: list[str] = []
    for name in CHECKPOINT_FILES:
        path = directory / name
        if not path.exists():
            continue
        try:
            loaded = _read(path, map_location)
        except Exception as exc:  # noqa: BLE001 - any damage: named below, the other file may be whole
            damaged.append(f"{name} ({type(exc).__name__})")
            continue
        found.append((loaded["meta"]["epoch"], loaded, path))
    if not found:
        if damaged:
            raise CheckpointError(f"checkpoint {directory} is corrupt or incomplete ({', '.join(damaged)}) — "
                                  "delete it and start again without trainer.resume")
        raise CheckpointError(f"no checkpoint in {directory} — start without trainer.resume "
                              "or point trainer.resume_from at a run's output directory")
    epoch, loaded, path = max(found, key=lambda item: item[0])
    if damaged:
        log.warning("checkpoint %s is damaged (%s): resuming from epoch %d in %s, the newest whole one",
                    directory, ", ".join(damaged), epoch, path.name)
    return loaded, path


def _load_legacy(directory: Path, map_location: torch.device | str) -> dict[str, Any]:
    """A checkpoint of the earlier layout: `LATEST` names an `epoch-NNNN/` folder of four files."""
    folder = directory / (directory / LEGACY_POINTER).read_text().strip()
    try:
        meta = json.loads((folder / "state.json").read_text())
        best = folder / "best.safetensors"
        return {"model": load_file(str(folder / "model.safetensors"), device=str(map_location)),
                "best_state": load_file(str(best)) if best.exists() else None,
                "optimizer": torch.load(folder / "optimizer.pt", map_location=map_location, weights_only=True),
                "rng": torch.load(folder / "rng.pt", map_location="cpu", weights_only=True), "meta": meta}
    except Exception as exc:
        raise CheckpointError(f"checkpoint {folder} is corrupt or incomplete ({type(exc).__name__}) — "
                              "delete it and start again without trainer.resume") from exc


def has_checkpoint(directory: str | Path) -> bool:
    """True when `directory` holds a checkpoint (of either layout)."""
    directory = Path(directory)
    return any((directory / name).exists() for name in (*CHECKPOINT_FILES, LEGACY_POINTER))


def latest_epoch(directory: str | Path) -> int | None:
    """The newest epoch whose checkpoint in `directory` reads back, or None before the first; reads
    the files' headers only (cheap: the sweeper asks for every killed trial)."""
    directory = Path(directory)
    epochs = []
    for name in CHECKPOINT_FILES:
        try:
            with safe_open(str(directory / name), framework="pt") as fh:
                epochs.append(json.loads((fh.metadata() or {})["state"])["epoch"])
        except Exception:  # noqa: BLE001 - missing or damaged: not a usable checkpoint
            continue
    if not epochs and (directory / LEGACY_POINTER).exists():
        try:
            return int((directory / LEGACY_POINTER).read_text().strip().split("-")[1])
        except (OSError, IndexError, ValueError):
            return None
    return max(epochs, default=None)


def model_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of the newest checkpoint in `directory` (for inspection and tests)."""
    return _load_newest(Path(directory), "cpu")[0]["model"]


def is_finished(directory: str | Path) -> bool:
    """True when the run that wrote the checkpoint in `directory` ended normally."""
    return (Path(directory) / FINISHED_MARK).exists()
