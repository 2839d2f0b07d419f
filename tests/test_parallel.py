"""How trials share a machine (issue 12, the parts CI can check without a GPU)."""

from __future__ import annotations

import collections
import os
import random

import pytest
import torch

from latentsweep.errors import ResourceError
from latentsweep.parallel import GpuSlots, least_loaded_gpu, plan_jobs
from latentsweep.pipeline import train
from latentsweep.tracking import client_for


def test_gpu_box_runs_trials_per_gpu_times_gpus_whatever_its_cores():
    assert plan_jobs(n_gpus=2, cores=16, trials_per_gpu=4).n_jobs == 8
    assert plan_jobs(n_gpus=1, cores=2, trials_per_gpu=16).n_jobs == 16


def test_cpu_box_runs_one_trial_per_core():
    assert plan_jobs(n_gpus=0, cores=2).n_jobs == 2
    assert plan_jobs(n_gpus=0, cores=1).n_jobs == 1


def test_zero_trials_per_gpu_is_refused():
    with pytest.raises(ValueError):
        plan_jobs(n_gpus=1, cores=4, trials_per_gpu=0)


def test_out_of_gpu_memory_is_a_one_line_failure_naming_the_sizes(make_cfg, mlflow_uri):
    def exhaust_memory(epoch, metrics):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(ResourceError) as err:
        train(make_cfg(["model.hidden_size=24"]), callbacks=[exhaust_memory])
    message = str(err.value)
    assert "\n" not in message
    assert "out of GPU memory" in message and "data.batch_size=16" in message and "model.hidden_size=24" in message
    client, _ = client_for(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])[0]
    assert run.info.status == "FAILED" and "out of GPU memory" in run.data.tags["failure"]


@pytest.mark.parametrize("where", ["make_loaders", "_log_results"])
def test_out_of_gpu_memory_before_or_after_the_loop_is_the_same_one_line_failure(where, make_cfg, mlflow_uri,
                                                                                 monkeypatch):
    """Moving the data set to the GPU, or the figures/latents after training, can run out too."""
    import latentsweep.pipeline as pipeline

    def exhaust_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(pipeline, where, exhaust_memory)
    with pytest.raises(ResourceError) as err:
        train(make_cfg(["model.hidden_size=24"]))
    assert "\n" not in str(err.value) and "model.hidden_size=24" in str(err.value)
    client, _ = client_for(mlflow_uri)
    experiment = client.get_experiment_by_name("latentsweep")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    if where == "make_loaders":  # before the run started: nothing half-written in MLflow
        assert runs == []
    else:
        assert runs[0].info.status == "FAILED" and "out of GPU memory" in runs[0].data.tags["failure"]


def test_make_sweep_launcher_runs_one_trial_per_core_here(tmp_path):
    """`hydra/launcher=trials` (what `make sweep` uses) sizes joblib and the sweeper's batches alike."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    cfg = compose_config(["hydra/sweeper=optuna", "hydra/launcher=trials"], return_hydra_config=True)
    # independent of plan_jobs: one trial per usable core on a CPU box, 16 per GPU on a CUDA box
    expected = 16 * torch.cuda.device_count() if torch.cuda.is_available() else len(os.sched_getaffinity(0))
    assert OmegaConf.select(cfg, "hydra.launcher.n_jobs") == expected
    assert OmegaConf.select(cfg, "hydra.sweeper.n_jobs") == expected
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")


def _simulate(n_gpus: int, per_gpu: int, n_trials: int, seed: int, place) -> int:
    """Hand `n_trials` to n_gpus x per_gpu workers as they free up, trials ending in a random
    order; `place(job, running)` returns the GPU index. Returns the most trials seen on one GPU."""
    rng = random.Random(seed)
    running: dict[int, int] = {}  # job -> gpu
    worst, job = 0, 0
    while job < n_trials or running:
        while len(running) < n_gpus * per_gpu and job < n_trials:
            running[job] = place(job, running)
            job += 1
            worst = max(worst, max(collections.Counter(running.values()).values()))
        running.pop(rng.choice(list(running)))  # any trial may end first
    return worst


def _slot_placer(n_gpus: int, per_gpu: int):
    """`place` for `_simulate` by GpuSlots, checking that a trial started while every other worker
    is busy goes to the GPU of the trial that just ended."""
    slots = GpuSlots(n_gpus)
    ended: list[int] = []

    def place(job, running):
        for gone in [j for j in slots.gpu_of if j not in running]:
            ended.append(slots.gpu_of[gone])
            slots.release(gone)
        gpu = int(slots.take(job).split(":")[1])
        if len(running) == n_gpus * per_gpu - 1 and ended:  # every other worker busy
            assert gpu == ended[-1], "the new trial did not go to the GPU that just freed"
        return gpu

    return place


def test_a_new_trial_goes_to_the_gpu_that_freed_whatever_the_finish_order():
    for seed in range(50):
        n_gpus, per_gpu = 1 + seed % 4, 1 + seed % 5
        assert _simulate(n_gpus, per_gpu, 60, seed, _slot_placer(n_gpus, per_gpu)) <= per_gpu


def test_job_number_mod_gpus_overfills_a_gpu_when_trials_end_out_of_order():
    """Why the slots exist: the old rule puts more than trials_per_gpu on one GPU."""
    worst = max(_simulate(2, 3, 60, seed, lambda job, running: job % 2)
                for seed in range(20))
    assert worst > 3


def test_least_loaded_gpu_breaks_ties_by_index():
    assert least_loaded_gpu([2, 1, 1]) == 1
    assert least_loaded_gpu([0, 0]) == 0
