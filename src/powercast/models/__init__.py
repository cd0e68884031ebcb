"""Forecasting networks: one module per model family."""

from powercast.models.rnn import RNNForecaster

__all__ = ["RNNForecaster"]
