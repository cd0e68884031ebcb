"""Layer 6, what consumers read: the batch contract, forecasts with the champion, publishing, backtests. Imports reporting and everything below; never training."""
