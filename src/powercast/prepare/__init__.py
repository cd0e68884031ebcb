"""Layer 3, readings to model inputs: resample, gaps, features, splits, scaling, windows, the prepared series, the data module. Imports store, io, core."""
