"""Single-run resume, made exact (issue 18): which run `trainer.resume=true` picks, what happens to
the MLflow run, metrics a crash cut off, fsynced checkpoints, deterministic algorithms.

In-process runs (`pipeline.train`) on a real MLflow SQLite store; a crash is an exception raised
from an epoch callback (or by the store), after that epoch's checkpoint was written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from latentsweep import pipeline
from latentsweep.errors import TrackingError
from latentsweep.tracking import Tracker
from latentsweep.training.checkpoint import FINISHED_MARK, Checkpointer, latest_epoch

# every epoch checkpointed (by default one is written at most every 10 s, and the last): these tests crash mid-run
SMALL = ["data.n_series=60", "trainer.patience=null", "tracking.n_reconstructions=0", "tracking.log_model=false",
         "trainer.checkpoint_every_s=0"]


class Crash(Exception):
    """Stands for the process dying after an epoch's checkpoint."""


def crash_at(epoch: int):
    def callback(e: int, metrics: dict) -> None:
        if e == epoch:
            raise Crash(f"crash after epoch {e}")
    return callback


def runs(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])


def steps(uri: str, run_id: str, key: str = "val_loss") -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_resume_true_picks_the_newest_run_that_did_not_finish(make_cfg, mlflow_uri):
    a = make_cfg([*SMALL, "trainer.checkpoint_dir=outputs/a/checkpoint"])
    with pytest.raises(Crash):
        pipeline.train(a, callbacks=[crash_at(1)])
    (crashed,) = runs(mlflow_uri)
    pipeline.train(make_cfg([*SMALL, "trainer.checkpoint_dir=outputs/b/checkpoint"]))  # newer, finished
    assert (Path("outputs/b/checkpoint") / FINISHED_MARK).exists()
    assert not (Path("outputs/a/checkpoint") / FINISHED_MARK).exists()
    finished_b = next(r for r in runs(mlflow_uri) if r.info.run_id != crashed.info.run_id)

    pipeline.train(make_cfg([*SMALL, "trainer.resume=true"]))
    assert latest_epoch("outputs/a/checkpoint") == 2  # a went on to the end
    after = {r.info.run_id: r for r in runs(mlflow_uri)}
    assert len(after) == 2 and after[crashed.info.run_id].info.status == "FINISHED"
    assert after[crashed.info.run_id].data.tags["resumed_from_epoch"] == "1"
    assert after[finished_b.info.run_id].info.end_time == finished_b.info.end_time  # b untouched
    assert steps(mlflow_uri, crashed.info.run_id) == [0, 1, 2]


def test_resume_never_reopens_a_finished_mlflow_run(make_cfg, mlflow_uri, tmp_path):
    pipeline.train(make_cfg(SMALL))
    (first,) = runs(mlflow_uri)
    # the same checkpoint, trained on for two more epochs: a new run, the finished one stays as it was
    pipeline.train(make_cfg([*SMALL, "trainer.max_epochs=5", "trainer.resume=true",
                             f"trainer.resume_from={tmp_path / 'run'}"]))
    after = {r.info.run_id: r for r in runs(mlflow_uri)}
    assert len(after) == 2
    old = after.pop(first.info.run_id)
    (new,) = after.values()
    assert old.info.status == "FINISHED" and old.info.end_time == first.info.end_time
    assert steps(mlflow_uri, first.info.run_id) == [0, 1, 2]
    assert new.info.status == "FINISHED" and new.data.tags["resumed_from_epoch"] == "2"
    assert new.data.params["model.hidden_size"] == "32"
    assert steps(mlflow_uri, new.info.run_id) == [0, 1, 2, 3, 4]  # the whole history, each epoch once


def test_a_resumed_run_whose_mlflow_run_is_gone_logs_its_parameters_again(make_cfg, mlflow_uri, tmp_path):
    with pytest.raises(Crash):
        pipeline.train(make_cfg(SMALL), callbacks=[crash_at(1)])
    (crashed,) = runs(mlflow_uri)
    MlflowClient(mlflow_uri).delete_run(crashed.info.run_id)  # someone cleaned up the store

    pipeline.train(make_cfg([*SMALL, "trainer.resume=true", f"trainer.resume_from={tmp_path / 'run'}"]))
    (new,) = runs(mlflow_uri)
    assert new.info.run_id != crashed.info.run_id and new.info.status == "FINISHED"
    assert new.data.params["model.hidden_size"] == "32" and new.data.params["seed"] == str(make_cfg().seed)
    assert steps(mlflow_uri, new.info.run_id) == [0, 1, 2]


def test_an_epoch_whose_metrics_a_crash_cut_off_is_written_on_resume(make_cfg, mlflow_uri, tmp_path, monkeypatch):
    real = Tracker.log_epoch

    def store_fails_at_epoch_1(self, metrics, step):  # after epoch 1's checkpoint, before its metrics
        if step == 1 and "val_loss" in metrics:
            raise TrackingError("MLflow store went away")
        return real(self, metrics, step)

    monkeypatch.setattr(Tracker, "log_epoch", store_fails_at_epoch_1)
    with pytest.raises(TrackingError):
        pipeline.train(make_cfg(SMALL))
    (run,) = runs(mlflow_uri)
    assert steps(mlflow_uri, run.info.run_id) == [0]
    assert latest_epoch(tmp_path / "run" / "checkpoint") == 1

    monkeypatch.setattr(Tracker, "log_epoch", real)
    pipeline.train(make_cfg([*SMALL, "trainer.resume=true", f"trainer.resume_from={tmp_path / 'run'}"]))
    (run,) = runs(mlflow_uri)
    for key in ("val_loss", "train_loss"):
        assert steps(mlflow_uri, run.info.run_id, key) == [0, 1, 2], key


def test_by_default_an_epoch_is_checkpointed_only_once_its_interval_has_passed_and_the_last_always(
        make_cfg, tmp_path):
    """`trainer.checkpoint_every_s`: a crash before the interval has passed leaves no checkpoint (a
    resume would start again); a run that ends has written its last epoch, which a resume with more
    epochs continues from."""
    hourly = [*SMALL, "trainer.checkpoint_every_s=3600"]
    with pytest.raises(Crash):
        pipeline.train(make_cfg([*hourly, f"trainer.checkpoint_dir={tmp_path / 'crashed'}"]), callbacks=[crash_at(1)])
    assert latest_epoch(tmp_path / "crashed") is None
    pipeline.train(make_cfg(hourly))
    folder = tmp_path / "run" / "checkpoint"
    assert latest_epoch(folder) == 2 and (folder / FINISHED_MARK).exists()
    assert not (folder / "checkpoint-1.safetensors").exists()  # epochs 0 and 1 were never written
    pipeline.train(make_cfg([*hourly, "trainer.max_epochs=4", "trainer.resume=true", f"trainer.resume_from={tmp_path / 'run'}"]))
    assert latest_epoch(folder) == 3
    # a new run in that folder that crashes before its first checkpoint leaves nothing to resume,
    # not the earlier run's epochs
    with pytest.raises(Crash):
        pipeline.train(make_cfg(hourly), callbacks=[crash_at(0)])
    assert latest_epoch(folder) is None


def test_a_checkpoint_is_due_once_every_s_has_passed_since_the_last_write(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr("latentsweep.training.checkpoint.time.monotonic", lambda: now[0])
    ckpt = Checkpointer(tmp_path / "checkpoint", {"seed": 1}, every_s=10)
    model = torch.nn.Linear(3, 2)
    now[0] = 109.0
    assert not ckpt.due()
    now[0] = 110.0
    assert ckpt.due()
    _save(ckpt, 0, model)
    now[0] = 115.0
    assert not ckpt.due()  # counted from the write, not from the start
    assert Checkpointer(tmp_path / "other", {"seed": 1}, every_s=0).due()  # 0: every epoch


def _recording_fsync(monkeypatch) -> list[str]:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


def _save(ckpt: Checkpointer, epoch: int, model: torch.nn.Module, **kwargs) -> None:
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    ckpt.save(epoch=epoch, model=model, optimizer=optimizer, best_state=None,
              loop_state={"history": [], "epoch_seen": epoch}, **kwargs)


def test_sync_s_0_fsyncs_every_checkpoint_and_its_rename(tmp_path, monkeypatch):
    synced = _recording_fsync(monkeypatch)
    folder = tmp_path / "checkpoint"
    ckpt = Checkpointer(folder, {"seed": 1}, sync_s=0)
    _save(ckpt, 0, torch.nn.Linear(3, 2))
    partial = str(folder / ".checkpoint-0.safetensors.partial")
    assert partial in synced  # the file, before its rename
    assert synced.count(str(folder)) >= 1 and synced.index(partial) < synced.index(str(folder))  # then the rename
    assert (folder / "synced.safetensors").exists() and latest_epoch(folder) == 0


def test_between_syncs_a_checkpoint_is_written_whole_but_not_fsynced_until_the_run_ends(tmp_path, monkeypatch):
    synced = _recording_fsync(monkeypatch)
    folder = tmp_path / "checkpoint"
    ckpt = Checkpointer(folder, {"seed": 1}, sync_s=3600)
    model = torch.nn.Linear(3, 2)
    for epoch in range(3):
        _save(ckpt, epoch, model)
    assert synced == [] and latest_epoch(folder) == 2  # every epoch is on disk, none fsynced yet
    assert torch.equal(Checkpointer(folder, {"seed": 1}).load()["model"]["weight"], model.weight.detach())
    ckpt.mark_finished()
    assert str(folder / "checkpoint-0.safetensors") in synced  # the last one (epoch 2) survives a power loss too
    assert (folder / FINISHED_MARK).exists()


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_whole_one(tmp_path, caplog):
    """After a power loss the unsynced files can be torn: loading takes the newest whole epoch
    (the synced copy here, once both slots are torn)."""
    folder = tmp_path / "checkpoint"
    ckpt = Checkpointer(folder, {"seed": 1}, sync_s=3600)
    model = torch.nn.Linear(3, 2)
    for epoch in range(4):
        _save(ckpt, epoch, model, sync=epoch == 1)
    newest = folder / "checkpoint-1.safetensors"  # epoch 3
    newest.write_bytes(newest.read_bytes()[:50])
    assert latest_epoch(folder) == 2
    with caplog.at_level("WARNING"):
        assert Checkpointer(folder, {"seed": 1}).load()["epoch"] == 2
    assert "damaged" in caplog.text and "epoch 2" in caplog.text
    older = folder / "checkpoint-0.safetensors"  # epoch 2
    older.write_bytes(b"")
    loaded = Checkpointer(folder, {"seed": 1}).load()
    assert loaded["epoch"] == 1 and loaded["loop"]["epoch_seen"] == 1  # the synced copy


def test_a_new_run_in_a_used_folder_does_not_resume_the_old_runs_epochs(tmp_path):
    folder = tmp_path / "checkpoint"
    model = torch.nn.Linear(3, 2)
    old = Checkpointer(folder, {"seed": 1}, sync_s=0)
    for epoch in range(6):
        _save(old, epoch, model)
    _save(Checkpointer(folder, {"seed": 1}), 0, model)  # a new run, not resuming
    assert latest_epoch(folder) == 0


def test_a_checkpoint_of_the_earlier_folder_layout_still_resumes(tmp_path):
    """Runs interrupted before the one-file layout: LATEST -> epoch-NNNN/ with four files."""
    folder = tmp_path / "checkpoint"
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    epoch_dir = folder / "epoch-0004"
    epoch_dir.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(epoch_dir / "model.safetensors"))
    torch.save(optimizer.state_dict(), epoch_dir / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state()}, epoch_dir / "rng.pt")
    (epoch_dir / "state.json").write_text('{"epoch": 4, "fingerprint": {"seed": 1}, "loop": {"history": []}}')
    (folder / "LATEST").write_text("epoch-0004")
    assert latest_epoch(folder) == 4
    loaded = Checkpointer(folder, {"seed": 1}).load()
    assert loaded["epoch"] == 4 and torch.equal(loaded["model"]["bias"], model.bias.detach())


@pytest.mark.parametrize("on", [True, False])
def test_trainer_deterministic_turns_on_deterministic_algorithms(make_cfg, on):
    seen = []
    try:
        pipeline.train(make_cfg([*SMALL, "trainer.max_epochs=1", "tracking.enabled=false",
                                 f"trainer.deterministic={str(on).lower()}"]),
                       callbacks=[lambda e, m: seen.append(torch.are_deterministic_algorithms_enabled())])
    finally:
        torch.use_deterministic_algorithms(False)
    assert seen == [on]
