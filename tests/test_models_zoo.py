"""The model zoo: shapes, learning, determinism, persistence, padding and each model's own rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentsweep.build import build_model
from latentsweep.config import validate
from latentsweep.data import DataSpec, SeriesSet, collate
from latentsweep.errors import ConfigError, InfeasibleError
from latentsweep.models import (
    VRAE,
    Autoencoder,
    HighwayAutoencoder,
    HighwayLayer,
    MLPAutoencoder,
    TransformerAutoencoder,
    halving_widths,
)
from latentsweep.tracking import load_model_files, save_model_files

TARGETS = {
    "conv_ae": "latentsweep.models.conv_ae.ConvAutoencoder",
    "mlp_ae": "latentsweep.models.mlp_ae.MLPAutoencoder",
    "highway_ae": "latentsweep.models.highway_ae.HighwayAutoencoder",
    "vrae": "latentsweep.models.vrae.VRAE",
    "transformer_ae": "latentsweep.models.transformer_ae.TransformerAutoencoder",
}
FIXED = {"conv_ae", "mlp_ae", "highway_ae"}
SMALL = {  # a small, quick setting per model
    "conv_ae": {"base_channels": 8, "n_blocks": 2, "kernel_size": 3, "latent_dim": 6},
    "mlp_ae": {"latent_dim": 6},
    "highway_ae": {"width": 32, "n_highway": 2, "latent_dim": 6},
    "vrae": {"hidden_size": 24, "latent_dim": 6, "beta": 0.1},
    "transformer_ae": {"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_feedforward": 32, "latent_dim": 6},
}
SIZES = [  # (model, sizes): 2-3 settings each
    ("conv_ae", {"base_channels": 4, "n_blocks": 1, "kernel_size": 3, "latent_dim": 3}),
    ("conv_ae", {"channels": [8, 8, 16], "kernel_size": 5, "pooling": "max", "latent_dim": 5}),
    ("conv_ae", {"base_channels": 4, "n_blocks": 2, "stride": 3, "pooling": "avg", "latent_dim": 7}),
    ("mlp_ae", {"latent_dim": 4}),
    ("mlp_ae", {"latent_dim": 10, "hidden_sizes": [20], "activation": "leaky_relu"}),
    ("highway_ae", {"width": 16, "n_highway": 1, "latent_dim": 3}),
    ("highway_ae", {"width": 40, "n_highway": 5, "latent_dim": 9}),
    ("vrae", {"hidden_size": 16, "latent_dim": 3}),
    ("vrae", {"hidden_size": 24, "latent_dim": 8, "num_layers": 2, "cell": "lstm"}),
    ("vrae", {"hidden_size": 8, "latent_dim": 2, "bidirectional": True}),
    ("transformer_ae", {"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_feedforward": 32, "latent_dim": 4}),
    ("transformer_ae", {"d_model": 24, "n_heads": 3, "n_layers": 2, "dim_feedforward": 16, "latent_dim": 7,
                        "pooling": "token", "decoder_layers": 0}),
]
FIXED_LENGTH = 30
N_CHANNELS = 2


def sines(lengths, seed=0, n_channels=N_CHANNELS) -> SeriesSet:
    rng = np.random.default_rng(seed)
    series = []
    for t_len in lengths:
        t = np.arange(t_len)[:, None]
        period, phase = rng.uniform(8, 16), rng.uniform(0, 2 * np.pi, size=n_channels)
        series.append(np.sin(2 * np.pi * t / period + phase) + 0.05 * rng.normal(size=(t_len, n_channels)))
    return SeriesSet.from_arrays(series)


def lengths_for(name: str, n: int = 8, seed: int = 0) -> list[int]:
    if name in FIXED:
        return [FIXED_LENGTH] * n
    return np.random.default_rng(seed).integers(10, 41, size=n).tolist()


def spec_for(name: str, data: SeriesSet) -> DataSpec:
    lengths = data.lengths
    fixed = int(lengths[0]) if int(lengths.min()) == int(lengths.max()) else None
    return DataSpec(n_channels=data.n_channels, max_length=int(lengths.max()), fixed_length=fixed)


def model_cfg(name: str, **sizes) -> dict:
    return {"_target_": TARGETS[name], **(sizes or SMALL[name])}


def make(name: str, data: SeriesSet, **sizes) -> Autoencoder:
    torch.manual_seed(0)
    return build_model(model_cfg(name, **sizes), spec_for(name, data))


def everything(data: SeriesSet):
    return collate(data, list(range(len(data))))


# --- every model ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,sizes", SIZES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SIZES)])
def test_output_shapes(name, sizes):
    data = sines(lengths_for(name, n=5))
    model = make(name, data, **sizes)
    batch = everything(data)
    out = model(batch)
    assert out["latent"].shape == (5, sizes["latent_dim"])
    assert out["recon"].shape == (5, int(batch.lengths.max()), N_CHANNELS)
    terms = model.loss(batch, out)
    assert terms["loss"].ndim == 0 and math.isfinite(terms["loss"].item())
    assert model.latent_dim == sizes["latent_dim"]


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_few_steps_lower_the_loss(name):
    data = sines(lengths_for(name, n=8))
    sizes = dict(SMALL[name], **({"beta": 0.01} if name == "vrae" else {}))
    model = make(name, data, **sizes)
    batch = everything(data)
    opt = torch.optim.Adam(model.parameters(), lr=0.03 if name == "vrae" else 0.01)
    losses = []
    for _ in range(60):
        terms = model.loss(batch, model(batch))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(terms["recon_loss"].item())
    assert losses[-1] < 0.6 * losses[0], losses[::8]


@pytest.mark.parametrize("name", list(TARGETS))
def test_get_latent_is_deterministic_and_keeps_the_mode(name):
    data = sines(lengths_for(name, n=6))
    sizes = dict(SMALL[name], **({"dropout": 0.3} if name == "transformer_ae" else {}))
    model = make(name, data, **sizes)
    model.train()
    batch = everything(data)
    first, second = model.get_latent(batch), model.get_latent(batch)
    assert torch.equal(first, second)
    assert model.training  # restored
    model.eval()
    assert torch.allclose(model.get_latent(batch), model(batch)["latent"], atol=1e-5)


@pytest.mark.parametrize("name", list(TARGETS))
def test_save_load_round_trip_reproduces_the_reconstruction(name, tmp_path):
    data = sines(lengths_for(name, n=6))
    model = make(name, data)
    spec = spec_for(name, data)
    batch = everything(data)
    with torch.no_grad():  # move the weights off their init so the test means something
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model_files(tmp_path / "model", model.state_dict(),
                     {"model": model_cfg(name), "spec": spec.as_dict(), "task": None})
    loaded, config = load_model_files(tmp_path / "model")
    assert type(loaded) is type(model) and not loaded.training
    assert torch.allclose(loaded.reconstruct(batch), model.reconstruct(batch), atol=1e-6)
    assert torch.allclose(loaded.get_latent(batch), model.get_latent(batch), atol=1e-6)


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_length_models_refuse_varying_lengths(name, make_cfg):
    # conv_ae on the synthetic data resamples by default (conf/model_data/conv_ae-synthetic.yaml)
    cfg = make_cfg([f"model={name}", *(["model.length=null"] if name == "conv_ae" else [])], tiny=False)
    spec = DataSpec(n_channels=3, max_length=60, fixed_length=None)
    with pytest.raises(ConfigError, match=r"data\.fixed_length") as err:
        build_model(cfg.model, spec)
    assert "\n" not in str(err.value)


# --- model-specific rules ------------------------------------------------------------------------
def test_mlp_widths_halve_from_the_input_down_to_the_latent():
    assert halving_widths(64, 8) == [32, 16]
    assert halving_widths(96, 8) == [48, 24, 12]
    assert halving_widths(10, 8) == []
    data = sines([32] * 4)  # 32 steps x 2 channels = 64 inputs
    model = make("mlp_ae", data, latent_dim=8)
    assert isinstance(model, MLPAutoencoder)
    assert model.widths == [64, 32, 16, 8]
    enc = [(m.in_features, m.out_features) for m in model.encoder if isinstance(m, torch.nn.Linear)]
    dec = [(m.in_features, m.out_features) for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert enc == [(64, 32), (32, 16), (16, 8)]
    assert dec == [(8, 16), (16, 32), (32, 64)]
    assert isinstance(model.encoder[-1], torch.nn.Linear)  # linear latent and output layers
    assert isinstance(model.decoder[-1], torch.nn.Linear)
    explicit = make("mlp_ae", data, latent_dim=4, hidden_sizes=[40, 12])
    assert explicit.widths == [64, 40, 12, 4]


def test_mlp_auto_loss_is_bce_with_sigmoid_outputs_on_unit_range_data():
    data = sines([30] * 4)
    unit = DataSpec(n_channels=2, max_length=30, fixed_length=30, unit_range=True)
    model = build_model(model_cfg("mlp_ae", latent_dim=4, loss="auto"), unit)
    assert model.loss_kind == "bce"
    values = model.reconstruct(everything(data))
    assert values.min() >= 0 and values.max() <= 1
    plain = build_model(model_cfg("mlp_ae", latent_dim=4, loss="auto"), spec_for("mlp_ae", data))
    assert plain.loss_kind == "mse"


def test_a_closed_highway_gate_returns_its_input():
    layer = HighwayLayer(16, gate_bias=-1e4)
    x = torch.randn(5, 16)
    assert torch.equal(layer(x), x)
    data = sines([FIXED_LENGTH] * 3)
    model = make("highway_ae", data, width=16, n_highway=10, latent_dim=4, gate_bias=-1e4)
    assert isinstance(model, HighwayAutoencoder) and len(model.highway_layers()) == 20
    h = torch.randn(3, 16)
    for hw in model.highway_layers():
        assert torch.equal(hw(h), h)
    open_gate = HighwayLayer(16, gate_bias=-2.0)  # the default starts mostly carrying its input
    assert float(torch.sigmoid(open_gate.gate(x)).mean()) < 0.3


def test_vrae_kl_is_positive_scaled_per_valid_value_and_warms_up():
    data = sines(lengths_for("vrae", n=6))
    model = make("vrae", data, hidden_size=16, latent_dim=4, beta=2.0, kl_warmup_epochs=4)
    assert isinstance(model, VRAE)
    batch = everything(data)
    model.train()
    out = model(batch)
    terms = model.loss(batch, out)
    assert set(terms) == {"loss", "recon_loss", "kl"}
    assert float(terms["kl"]) > 0
    mean, logvar = out["mean"], out["logvar"]
    total_kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum()
    assert torch.allclose(terms["kl"], total_kl / (batch.lengths.sum() * N_CHANNELS))
    weights = []
    for epoch in range(6):
        model.on_epoch_start(epoch)
        weights.append(model.kl_weight)
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    model.on_epoch_start(0)  # training ignores the KL now, validation never does
    assert torch.allclose(model.loss(batch, out)["loss"], terms["recon_loss"])
    model.eval()
    assert torch.allclose(model.loss(batch, out)["loss"], terms["recon_loss"] + 2.0 * terms["kl"])
    eval_out = model(batch)
    assert torch.equal(eval_out["recon"], model(batch)["recon"])  # eval decodes the mean


def test_vrae_samples_from_the_prior():
    data = sines(lengths_for("vrae", n=4))
    model = make("vrae", data)
    model.train()
    samples = model.sample(5, 17)
    assert samples.shape == (5, 17, N_CHANNELS) and torch.isfinite(samples).all()
    assert model.sample(2, 40).shape == (2, 40, N_CHANNELS)
    assert model.training


@pytest.mark.parametrize("pooling", ["mean", "token"])
def test_transformer_ignores_padded_steps(pooling):
    data = sines([13, 40, 27, 9], seed=3)
    model = make("transformer_ae", data, **dict(SMALL["transformer_ae"], pooling=pooling)).eval()
    alone = collate(data, [0])
    batched = collate(data, [0, 1, 2, 3])
    batched.values[0, 13:] = 1e3  # garbage where series 0 is padded
    with torch.no_grad():
        lat_alone, lat_batched = model.get_latent(alone), model.get_latent(batched)
        rec_alone, rec_batched = model(alone)["recon"], model(batched)["recon"]
    assert torch.allclose(lat_alone[0], lat_batched[0], atol=1e-5)
    assert torch.allclose(rec_alone[0], rec_batched[0, :13], atol=1e-5)


def test_transformer_checks_heads_divide_the_width(make_cfg):
    cfg = make_cfg(["model=transformer_ae", "model.d_model=30", "model.n_heads=4"], tiny=False)
    with pytest.raises(ConfigError, match=r"model\.d_model=30 is not divisible by model\.n_heads=4"):
        validate(cfg)
    spec = DataSpec(n_channels=2, max_length=20)
    with pytest.raises(ConfigError, match="divisible"):
        build_model(model_cfg("transformer_ae", d_model=30, n_heads=4), spec)
    assert isinstance(build_model(model_cfg("transformer_ae", d_model=32, n_heads=4), spec),
                      TransformerAutoencoder)


def test_conv_latent_ignores_other_rows_and_padding():
    data = sines([FIXED_LENGTH] * 4, seed=5)
    model = make("conv_ae", data).eval()
    alone, batched = collate(data, [0]), collate(data, [0, 1, 2, 3])
    assert torch.allclose(model.get_latent(alone)[0], model.get_latent(batched)[0], atol=1e-6)
    assert torch.allclose(model(alone)["recon"][0], model(batched)["recon"][0], atol=1e-6)
    # a shorter row (should one ever arrive) is zero-padded to the length: garbage there is ignored
    short = collate(data, [0, 1])
    short.mask[1, 20:] = False
    short.values[1, 20:] = 1e3
    clean = collate(data, [0, 1])
    clean.values[1, 20:] = 0.0
    clean.mask[1, 20:] = False
    assert torch.allclose(model.get_latent(short), model.get_latent(clean))


def test_conv_decoder_restores_odd_lengths_exactly():
    data = sines([23] * 3)
    model = make("conv_ae", data, base_channels=4, n_blocks=3, kernel_size=3, latent_dim=4)
    assert model.stage_lengths == [23, 12, 6, 3]
    assert model(everything(data))["recon"].shape == (3, 23, N_CHANNELS)
    with pytest.raises(InfeasibleError, match="n_blocks"):  # another sampled size may fit: not a ConfigError
        make("conv_ae", data, base_channels=4, n_blocks=5, kernel_size=3, latent_dim=4)


def test_conv_resampling_inside_takes_variable_lengths_and_keeps_their_durations():
    data = sines([10, 41, 23, 64], seed=3)
    spec = spec_for("conv_ae", data)
    assert spec.fixed_length is None
    torch.manual_seed(0)
    model = build_model(model_cfg("conv_ae", length=16, duration_weight=1.0, n_blocks=2, latent_dim=4), spec).eval()
    batch = everything(data)
    out = model(batch)
    assert out["recon"].shape == (4, 64, N_CHANNELS)  # each series decoded back to its own length
    assert out["recon"][0, 10:].abs().max() == 0  # ... zero past its end
    alone = model.get_latent(collate(data, [0]))  # a series alone or in a padded batch: one latent
    assert torch.allclose(alone[0], model.get_latent(batch)[0], atol=1e-5)
    # the same shape at twice the duration gets another latent: the duration reaches the encoder
    stretched = SeriesSet.from_arrays([data[2].numpy(), np.repeat(data[2].numpy(), 2, axis=0)])
    z = model.get_latent(everything(stretched))
    assert not torch.allclose(z[0], z[1], atol=1e-3)
    terms = model.loss(batch, out)
    assert terms["duration_loss"] > 0 and torch.isclose(terms["loss"], terms["recon_loss"] + terms["duration_loss"])
    with pytest.raises(ConfigError, match="model.length"):
        build_model(model_cfg("conv_ae", duration_weight=1.0), spec)


# --- end to end ------------------------------------------------------------------------------------
E2E = {
    "conv_ae": ["data.fixed_length=32", "model.base_channels=8", "model.n_blocks=2"],
    "mlp_ae": ["data.fixed_length=32"],
    "highway_ae": ["data.fixed_length=32", "model.width=32", "model.n_highway=2"],
    "vrae": ["model.hidden_size=24", "model.latent_dim=4", "model.kl_warmup_epochs=1"],
    "transformer_ae": ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.dim_feedforward=32"],
}


COMMON_E2E = ["data.n_series=96", "data.shortest=12", "data.longest=48", "data.batch_size=32",
              "trainer.max_epochs=2", "trainer.progress=false", "optimizer.lr=0.005"]


@pytest.mark.parametrize("name", [n for n in E2E if n != "vrae"])
def test_trains_end_to_end_through_the_pipeline(name, make_cfg):
    from latentsweep.pipeline import train

    # tracking off: a fresh MLflow store costs seconds; the VRAE test below covers tracking
    cfg = make_cfg([f"model={name}", *COMMON_E2E, *E2E[name], "tracking.enabled=false"], tiny=False)
    value = train(cfg)
    assert math.isfinite(value) and value > 0


def test_vrae_end_to_end_logs_prior_samples_and_a_loadable_model(make_cfg, mlflow_uri):
    from latentsweep.pipeline import train
    from latentsweep.tracking import client_for, load_model

    value = train(make_cfg(["model=vrae", *COMMON_E2E, *E2E["vrae"]], tiny=False))
    assert math.isfinite(value) and value > 0
    client, _ = client_for(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])[0]
    assert {"train_kl", "val_kl", "train_recon_loss", "val_recon_loss"} <= set(run.data.metrics)
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/prior_samples.png" in figures
    model, config = load_model(run.info.run_id, mlflow_uri)
    assert isinstance(model, VRAE) and config["model"]["kl_warmup_epochs"] == 1
    assert model.sample(3, 20).shape == (3, 20, 3)
