"""Length bucketing and the exact recurrent paths (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentsweep.data import BucketBatchSampler, SeriesSet, collate
from latentsweep.data.series import DataSpec
from latentsweep.errors import ConfigError
from latentsweep.models.losses import masked_reconstruction_loss
from latentsweep.models.rnn_ae import RNNAutoencoder


def _series_set(lengths, channels=2, seed=0) -> SeriesSet:
    rng = np.random.default_rng(seed)
    return SeriesSet.from_arrays([rng.normal(size=(n, channels)) for n in lengths])


# -- sampler -------------------------------------------------------------------------------------
def test_bucket_sampler_yields_each_series_once_in_bounded_batches():
    lengths = torch.tensor(np.random.default_rng(1).integers(5, 400, size=203))
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=3)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(203))
    assert all(1 <= len(b) <= 16 for b in batches)
    assert len(batches) == len(sampler)


def test_bucket_sampler_reshuffles_per_epoch_and_repeats_per_seed():
    lengths = torch.tensor(np.random.default_rng(1).integers(5, 400, size=300))
    a = BucketBatchSampler(lengths, batch_size=16, seed=3, pool_batches=4)
    b = BucketBatchSampler(lengths, batch_size=16, seed=3, pool_batches=4)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(b) == list(a)


def test_buckets_group_similar_lengths():
    lengths = torch.tensor(np.random.default_rng(2).integers(10, 500, size=640))
    def mean_spread(mode):
        batches = BucketBatchSampler(lengths, 32, seed=0, mode=mode).batches()
        return np.mean([float(lengths[b].max() - lengths[b].min()) for b in batches])
    assert mean_spread("bucket") < 0.25 * mean_spread("random")


def test_validation_order_is_by_length():
    lengths = torch.tensor([50, 10, 30, 20, 40])
    batches = BucketBatchSampler(lengths, 2, shuffle=False).batches()
    assert [i for b in batches for i in b] == [1, 3, 2, 4, 0]


# -- exactness of the padded and packed paths ---------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padded_and_packed_paths_agree(cell, num_layers):
    data = _series_set([6, 60, 13, 31, 44, 9])  # lengths vary 10x
    spec = DataSpec(n_channels=2, max_length=60)
    torch.manual_seed(0)
    padded = RNNAutoencoder(spec, hidden_size=12, latent_dim=5, num_layers=num_layers, cell=cell,
                            sequence_path="padded").eval()
    packed = RNNAutoencoder(spec, hidden_size=12, latent_dim=5, num_layers=num_layers, cell=cell,
                            sequence_path="packed").eval()
    packed.load_state_dict(padded.state_dict())
    batch = collate(data, list(range(len(data))))
    with torch.no_grad():
        out_padded, out_packed = padded(batch), packed(batch)
        torch.testing.assert_close(out_padded["latent"], out_packed["latent"], atol=1e-5, rtol=0)
        loss_padded = padded.loss(batch, out_padded)["loss"]
        loss_packed = packed.loss(batch, out_packed)["loss"]
    assert abs(float(loss_padded) - float(loss_packed)) < 1e-5


@pytest.mark.parametrize("path", ["padded", "packed"])
def test_a_series_has_the_same_latent_and_loss_alone_or_in_any_batch(path):
    data = _series_set([17, 90, 45, 3, 17, 66], seed=4)
    spec = DataSpec(n_channels=2, max_length=90)
    torch.manual_seed(1)
    model = RNNAutoencoder(spec, hidden_size=10, latent_dim=3, num_layers=2, cell="gru", sequence_path=path).eval()
    alone = collate(data, [0])
    with torch.no_grad():
        z_alone = model.get_latent(alone)
        loss_alone = model.loss(alone, model(alone))["loss"]
        for others in ([1], [1, 2, 3], [5, 1]):
            batch = collate(data, [0, *others])
            z = model.get_latent(batch)
            torch.testing.assert_close(z[0:1], z_alone, atol=1e-5, rtol=0)
            out = model(batch)
            single = masked_reconstruction_loss(out["recon"][0:1], batch.values[0:1], batch.mask[0:1])
            assert abs(float(single) - float(loss_alone)) < 1e-5


def test_padding_values_never_matter():
    data = _series_set([8, 30])
    spec = DataSpec(n_channels=2, max_length=30)
    model = RNNAutoencoder(spec, hidden_size=8, latent_dim=3).eval()
    batch = collate(data, [0, 1])
    with torch.no_grad():
        before = model.loss(batch, model(batch))["loss"]
        batch.values[0, 8:] = 1e6  # garbage in the padding of the short series
        after = model.loss(batch, model(batch))["loss"]
    assert abs(float(before) - float(after)) < 1e-6


def test_bidirectional_encoder_refuses_the_padded_path():
    spec = DataSpec(n_channels=1, max_length=10)
    with pytest.raises(ValueError, match="bidirectional"):
        RNNAutoencoder(spec, bidirectional=True, sequence_path="padded")
    assert RNNAutoencoder(spec, bidirectional=True, sequence_path="auto").sequence_path == "packed"
    assert RNNAutoencoder(spec, sequence_path="auto").sequence_path == "padded"


def test_bidirectional_padded_is_a_one_line_config_error(make_cfg):
    from latentsweep.pipeline import train

    cfg = make_cfg(["model.bidirectional=true", "model.sequence_path=padded"])
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert "\n" not in str(err.value) and "sequence_path" in str(err.value)
