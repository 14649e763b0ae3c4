"""The audit log: every change to client data, every payment, every refused press."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog, Staff

_SECRET_KEYS = re.compile(r"token|secret|password|passwd|api[_-]?key|authorization", re.I)


def redact(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """Secrets never reach the log: values under secret-looking keys are masked."""
    if details is None:
        return None
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if _SECRET_KEYS.search(key):
            clean[key] = "***"
        elif isinstance(value, dict):
            clean[key] = redact(value)
        else:
            clean[key] = value
    return clean


def record(
    session: AsyncSession,
    action: str,
    *,
    actor: Staff | None = None,
    actor_telegram_id: int | None = None,
    entity: str | None = None,
    entity_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Adds an audit row to the session; it commits with the change it describes."""
    row = AuditLog(
        action=action,
        actor_staff_id=actor.id if actor is not None else None,
        actor_telegram_id=actor.telegram_id if actor is not None else actor_telegram_id,
        entity=entity,
        entity_id=entity_id,
        details=redact(details),
    )
    session.add(row)
    return row
