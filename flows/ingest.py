"""Flow: ingest every new file of the landing folder into the store."""

from __future__ import annotations

from prefect import flow

from flows.params import IngestParams
from flows.tasks import current_run_id, data_summary, ingest_new_files, report_run
from powercast.ingest import IngestReport


@flow(name="ingest", log_prints=True)
def ingest(params: IngestParams = IngestParams()) -> list[IngestReport]:
    """Ingest the landing folder (files already ingested are skipped); return one report per new file."""
    config = params.load_config()
    run_id = current_run_id()
    reports = ingest_new_files(config, params.landing_path(config), run_id, params.lock_timeout_s)
    report_run(run_id, {}, {}, [], data_summary(reports, {}), {})
    return reports
