"""Layer 6, one night's models: fit challengers, select a winner, register it (the nightly pipeline). Imports reporting and everything below; never serving."""
