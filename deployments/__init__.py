"""Deployment definitions (prefect.yaml) and the local Prefect stack behind `make serve`."""
