"""Layer 5, what people look at: loss curves and forecast-vs-actual plots. Imports models, prepare, store, io, core."""
