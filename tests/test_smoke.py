from latentsweep.pipeline import train
from latentsweep.tracking import client_for


def test_default_training_reduces_the_loss(make_cfg, mlflow_uri):
    cfg = make_cfg(["trainer.max_epochs=5", "trainer.patience=null"])
    best = train(cfg)
    client, _ = client_for(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])[0]
    train_losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"),
                                            key=lambda m: m.step)]
    val_losses = [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")]
    assert len(train_losses) == 5
    assert train_losses[-1] < 0.9 * train_losses[0]
    assert best < max(val_losses)
