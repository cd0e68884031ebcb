"""RNNForecaster on random tensors: shapes, stacking, input checks, and that it can learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from powercast.core.errors import ConfigError, DataPreparationError
from powercast.models.rnn import RNNForecaster, count_parameters


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_forward_maps_windows_to_every_horizon_step(cell: str) -> None:
    model = RNNForecaster(n_features=5, lookback_steps=12, horizon_steps=6, cell=cell, hidden_sizes=(8, 4))
    yhat = model(torch.randn(3, 12, 5))  # [B, L, F]
    assert yhat.shape == (3, 6)  # [B, H]


@pytest.mark.parametrize(("cell", "layer_type"), [("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)])
def test_stacked_layers_follow_hidden_sizes(cell: str, layer_type: type) -> None:
    model = RNNForecaster(n_features=3, lookback_steps=4, horizon_steps=2, cell=cell, hidden_sizes=(16, 8, 4))
    (network,) = model.members
    assert [type(layer) for layer in network.layers] == [layer_type] * 3
    assert [layer.hidden_size for layer in network.layers] == [16, 8, 4]
    assert network.head.in_features == 4


def test_highway_feeds_the_recent_target_straight_to_the_output() -> None:
    torch.manual_seed(0)
    model = RNNForecaster(n_features=2, lookback_steps=8, horizon_steps=3, hidden_sizes=(4,), highway_steps=8).eval()
    x = torch.randn(1, 8, 2)
    shifted = x.clone()
    shifted[:, :, 0] += 1.0
    with torch.no_grad():
        difference = model(shifted) - model(x)
        (network,) = model.members
        recurrent_only = network.head(network.layers[0](shifted)[0][:, -1]) - network.head(network.layers[0](x)[0][:, -1])
    expected_highway = network.highway.weight.sum(dim=1)  # the shortcut's response to +1 on every target step
    torch.testing.assert_close(difference - recurrent_only, expected_highway.unsqueeze(0))


def test_an_ensemble_forecasts_the_mean_of_independently_initialised_members() -> None:
    torch.manual_seed(3)
    model = RNNForecaster(n_features=2, lookback_steps=6, horizon_steps=3, hidden_sizes=(4,), n_members=3).eval()
    x = torch.randn(5, 6, 2)
    with torch.no_grad():
        each = torch.stack([member(x) for member in model.members])  # [K, B, H]
        assert not torch.allclose(each[0], each[1])  # members start from different weights
        torch.testing.assert_close(model(x), each.mean(dim=0))
    assert count_parameters(model) == 3 * count_parameters(model.members[0])


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # called outside a Trainer on purpose
def test_each_member_learns_from_its_own_loss() -> None:
    torch.manual_seed(4)
    model = RNNForecaster(n_features=1, lookback_steps=4, horizon_steps=2, hidden_sizes=(4,), dropout=0.0, n_members=2)
    x, y = torch.randn(8, 4, 1), torch.randn(8, 2)
    loss = model.training_step((x, y), 0)
    with torch.no_grad():
        per_member = [(member(x) - y).abs().mean() for member in model.members]
    torch.testing.assert_close(loss, torch.stack(per_member).mean())


def test_zero_members_is_rejected() -> None:
    with pytest.raises(ConfigError, match="n_members"):
        RNNForecaster(n_features=2, lookback_steps=4, horizon_steps=2, n_members=0)


def test_unknown_cell_is_rejected() -> None:
    with pytest.raises(ConfigError, match="cell"):
        RNNForecaster(n_features=2, lookback_steps=4, horizon_steps=2, cell="transformer")


def test_highway_longer_than_lookback_is_rejected() -> None:
    with pytest.raises(ConfigError, match="highway_steps"):
        RNNForecaster(n_features=2, lookback_steps=4, horizon_steps=2, highway_steps=5)


def test_forecast_scaled_refuses_windows_with_nan() -> None:
    model = RNNForecaster(n_features=2, lookback_steps=4, horizon_steps=2, hidden_sizes=(4,))
    windows = np.zeros((2, 4, 2), dtype=np.float32)
    windows[1, 2, 0] = np.nan
    with pytest.raises(DataPreparationError, match="NaN"):
        model.forecast_scaled(windows)


def test_forecast_scaled_matches_forward_in_eval_mode() -> None:
    torch.manual_seed(1)
    model = RNNForecaster(n_features=3, lookback_steps=5, horizon_steps=4, hidden_sizes=(6,), dropout=0.5)
    windows = np.random.default_rng(0).normal(size=(7, 5, 3)).astype(np.float32)
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(model.forecast_scaled(windows, batch_size=3), expected, rtol=1e-6, atol=1e-6)


def test_a_few_adam_steps_reduce_the_l1_loss_on_a_learnable_task() -> None:
    torch.manual_seed(2)
    model = RNNForecaster(n_features=1, lookback_steps=6, horizon_steps=2, hidden_sizes=(16,), dropout=0.0)
    x = torch.randn(64, 6, 1)
    y = torch.cat([x[:, -1, :], x[:, -2, :]], dim=1)  # tomorrow repeats the recent past
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss_fn(model(x), y).item()
    for _ in range(60):
        optimizer.zero_grad()
        loss = model.loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def test_parameter_count_of_a_single_gru_layer_matches_the_formula() -> None:
    model = RNNForecaster(n_features=7, lookback_steps=1, horizon_steps=1, hidden_sizes=(75,), dropout=0.0)
    gru = 3 * (75 * (75 + 7) + 2 * 75)
    head = 75 + 1
    assert count_parameters(model) == gru + head
