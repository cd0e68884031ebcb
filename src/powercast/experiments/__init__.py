"""Layer 7, reproductions outside the nightly path (the seed preset). Imports any library layer below."""
