"""Layer 2, the readings store: parse sources, validate, upsert readings, manifest, quarantine, ingest, replay. Imports core and io."""
