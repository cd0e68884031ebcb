"""Layer 0, the vocabulary: settings (config), on-disk schemas and errors. Imports nothing from powercast."""
