"""The idempotency factory: Powertools' persistence layer on the state table (records under
``pk = IDEMPOTENCY``; see ``idempotency_persistence``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from ptc_sync.state.codec import EXPIRES_AT, IDEMPOTENCY_PK, PK, SK

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def idempotency_persistence(
    table_name: str, *, client: DynamoDBClient | None = None
) -> DynamoDBPersistenceLayer:
    """Powertools idempotency records in the state table: ``pk = IDEMPOTENCY``, ``sk`` = Powertools'
    key (``<function>#<payload hash>``), expiring through the table's TTL attribute ``expiresAt``
    (Powertools writes epoch seconds there, what TTL reads). The other attributes are prefixed so
    an idempotency item is never mistaken for state; none is a GSI key.
    """
    return DynamoDBPersistenceLayer(
        table_name=table_name,
        key_attr=PK,
        sort_key_attr=SK,
        static_pk_value=IDEMPOTENCY_PK,
        expiry_attr=EXPIRES_AT,
        in_progress_expiry_attr="idempotencyInProgressExpiresAt",
        status_attr="idempotencyStatus",
        data_attr="idempotencyData",
        validation_key_attr="idempotencyValidation",
        boto3_client=client,
    )
