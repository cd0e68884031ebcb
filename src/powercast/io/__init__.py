"""Layer 1, files under the data root: paths (layout), atomic writes, locks, run ids. Imports core only."""
