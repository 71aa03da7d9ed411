"""The one statement of the merchant master import that the ORM cannot say: progress written on a
connection of its own.

A background import applies the whole file in one transaction (all or nothing), so its rows_done,
written inside that transaction, would be seen by nobody until the end. The job's worker therefore
opens a second connection (autocommit) just for progress. The statement never waits: a job row locked
by someone else (the transaction that created it has not committed yet) is skipped, not waited for.
"""

from __future__ import annotations

import logging

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from psycopg import sql

from ..models import MerchantImportJob

logger = logging.getLogger(__name__)

_meta = MerchantImportJob._meta
PROGRESS_UPDATE = sql.SQL(
    "UPDATE {table} SET {done} = %s WHERE {pk} = (SELECT {pk} FROM {table} WHERE {pk} = %s FOR UPDATE SKIP LOCKED)"
).format(table=sql.Identifier(_meta.db_table), done=sql.Identifier(_meta.get_field("rows_done").column),
         pk=sql.Identifier(_meta.pk.column)).as_string()


class ProgressWriter:
    """`writer(rows_done)` records the job's progress at once, outside the import's transaction.

    A failure to write progress is logged and never fails the import.
    """

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.connection = connections.create_connection(DEFAULT_DB_ALIAS)

    def __call__(self, rows_done: int) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(PROGRESS_UPDATE, [rows_done, self.job_id])
        except DatabaseError as exc:
            logger.warning("merchant import job %s: progress %s not recorded: %s", self.job_id, rows_done, exc)

    def close(self) -> None:
        self.connection.close()
