"""Layer 4, what forecasts: networks, baselines, metrics, conformal intervals and the model registry. Imports prepare, store, io, core.

``RNNForecaster`` lives in ``powercast.models.rnn``; importing this package loads no torch, so the
CLI and the flows can read the registry's cards without paying for it.
"""
