"""A global RNNForecaster's meter embedding: learned through training, bound per meter, absent from local models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from powercast.core.config import TrainConfig
from powercast.core.errors import ConfigError
from powercast.models.rnn import RNNForecaster
from powercast.training.fit import fit_module

SHAPE = {"n_features": 2, "lookback_steps": 8, "horizon_steps": 3, "hidden_sizes": (6,), "segment_steps": 4}
# What a local network's hyperparameters (and so its model card) held before global options existed.
LOCAL_HPARAMS = {
    "n_features", "lookback_steps", "horizon_steps", "cell", "hidden_sizes", "dropout", "segment_steps",
    "highway_steps", "learning_rate", "weight_decay", "scheduler", "target_scale_kw", "n_members",
}


def test_a_local_network_has_no_meter_options_and_draws_the_same_weights() -> None:
    torch.manual_seed(0)
    local = RNNForecaster(**SHAPE)
    assert set(local.hparams) == LOCAL_HPARAMS
    assert not any("meter_embedding" in name for name in local.state_dict())
    # A global network without an embedding only records its meters: same weights from the same seed.
    torch.manual_seed(0)
    listed = RNNForecaster(**SHAPE, meter_ids=["a", "b"])
    assert listed.hparams.meter_ids == ["a", "b"] and "meter_embedding_dim" not in listed.hparams
    for (name, tensor), (other_name, other) in zip(local.state_dict().items(), listed.state_dict().items()):
        assert name == other_name
        torch.testing.assert_close(tensor, other, rtol=0, atol=0)


def test_an_embedding_needs_the_meters_it_learns_rows_for() -> None:
    with pytest.raises(ConfigError, match="needs the list of meter_ids"):
        RNNForecaster(**SHAPE, meter_embedding_dim=3)
    with pytest.raises(ConfigError, match="must not repeat"):
        RNNForecaster(**SHAPE, meter_ids=["a", "a"], meter_embedding_dim=3)


def test_a_bound_view_shares_the_weights_and_leaves_the_network_unbound() -> None:
    torch.manual_seed(1)
    network = RNNForecaster(**SHAPE, meter_ids=["a", "b"], meter_embedding_dim=3).eval()
    view = network.for_meter("b")
    assert view.hparams.serving_meter == "b" and "serving_meter" not in network.hparams
    x = torch.randn(4, 8, 2)
    with torch.no_grad():
        torch.testing.assert_close(view(x), network(x, torch.ones(4, dtype=torch.long)))
        before = view(x).clone()
        network.members[0].meter_embedding.weight[1] += 1.0  # a change to the network reaches the view
        assert not torch.allclose(view(x), before)


def test_an_unknown_meter_reads_the_mean_of_the_learned_rows() -> None:
    torch.manual_seed(2)
    network = RNNForecaster(**SHAPE, meter_ids=["a", "b", "c"], meter_embedding_dim=3).eval()
    (member,) = network.members
    unknown = torch.tensor([network.meter_index("z")])
    assert int(unknown) == 3 == network.unknown_meter_index
    torch.testing.assert_close(member.meter_vectors(unknown)[0], member.meter_embedding.weight.mean(dim=0))
    x = torch.randn(2, 8, 2)
    with torch.no_grad():
        torch.testing.assert_close(network.for_meter("z")(x), network(x, torch.full((2,), 3)))


def test_the_embedding_learns_what_the_windows_cannot_tell(tmp_path: Path) -> None:
    """Two meters with identical windows whose futures differ (+0.5 against -0.5): only their rows tell them apart."""
    torch.manual_seed(3)
    x = torch.randn(256, 8, 2)
    windows = torch.cat([x, x])  # the same windows for both meters
    targets = torch.cat([torch.full((256, 3), 0.5), torch.full((256, 3), -0.5)])
    meters = torch.cat([torch.zeros(256, dtype=torch.long), torch.ones(256, dtype=torch.long)])
    data = TensorDataset(windows, targets, meters)
    config = TrainConfig(
        max_epochs=6, batch_size=64, accelerator="cpu", cpu_threads=1, learning_rate=1e-2, scheduler="none",
        patience_epochs=6,
    )
    network = RNNForecaster(**SHAPE, dropout=0.0, learning_rate=1e-2, meter_ids=["a", "b"], meter_embedding_dim=2)
    fit = fit_module(
        network, DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)),
        DataLoader(data, batch_size=256), config, "embedded", tmp_path, progress=False,
    )
    probe = np.random.default_rng(4).standard_normal((32, 8, 2)).astype(np.float32)
    first = fit.module.for_meter("a").forecast_scaled(probe)
    second = fit.module.for_meter("b").forecast_scaled(probe)
    assert np.abs(first - 0.5).mean() < 0.15 and np.abs(second + 0.5).mean() < 0.15
    # Reloaded from its hyperparameters and weights (as the registry does), the binding holds.
    bound = fit.module.for_meter("b")
    reloaded = RNNForecaster(**bound.hparams)
    reloaded.load_state_dict(bound.state_dict())
    np.testing.assert_array_equal(reloaded.forecast_scaled(probe), second)


def test_training_without_each_windows_meter_index_fails_but_serving_reads_the_bound_meter() -> None:
    from powercast.core.errors import DataPreparationError

    network = RNNForecaster(**SHAPE, meter_ids=["a", "b"], meter_embedding_dim=2)
    windows = torch.zeros(4, SHAPE["lookback_steps"], SHAPE["n_features"])

    network.train()
    with pytest.raises(DataPreparationError, match="trains only on windows with a meter index"):
        network(windows)
    served = network.for_meter("b").eval()
    torch.testing.assert_close(served(windows), network.eval()(windows, torch.full((4,), 1, dtype=torch.long)))
