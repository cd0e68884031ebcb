"""Flow: ingest every new file of the landing folder into the store."""

from __future__ import annotations

from prefect import flow

from flows.params import IngestParams
from flows.report import RunRecord, publish_report
from flows.tasks import current_run_id, ingest_new_files
from powercast.store.ingest import IngestReport


@flow(name="ingest")
def ingest(params: IngestParams = IngestParams()) -> list[IngestReport]:
    """Ingest the landing folder (files already ingested are skipped); return one report per new file."""
    config = params.load_config()
    record = RunRecord.for_run(current_run_id(), config)
    with record.timed("ingest"):
        record.ingested = ingest_new_files(config, params.landing_path(config), record.run_id, params.lock_timeout_s)
    publish_report(record)
    return record.ingested
