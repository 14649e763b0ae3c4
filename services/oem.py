"""The OEM catalogue button: a link to the original parts catalogue (Laximo or any other)
for the car's VIN, from a URL template the shop configures, e.g.
``https://catalog.example.com/vin?q={vin}``.

A template must be an http(s) URL with a host and contain ``{vin}``; the VIN is put in
URL-encoded, upper case, without spaces. No template, or a car without a VIN: no link.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Car

PLACEHOLDER = "{vin}"


class BadOemTemplate(ValueError):
    """The configured template cannot make a link; the message says why."""


def check_template(template: str) -> str:
    """The template, trimmed, or :class:`BadOemTemplate`."""
    template = (template or "").strip()
    if PLACEHOLDER not in template:
        raise BadOemTemplate(f"the OEM catalogue URL must contain {PLACEHOLDER}")
    parts = urlsplit(template.replace(PLACEHOLDER, "VIN"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadOemTemplate("the OEM catalogue URL must start with http:// or https://")
    return template


def oem_link(template: str | None, vin: str | None) -> str | None:
    """The catalogue link for ``vin``; None without a template or a VIN."""
    if not template or not template.strip():
        return None
    template = check_template(template)
    code = "".join((vin or "").split()).upper()
    if not code:
        return None
    return template.replace(PLACEHOLDER, quote(code, safe=""))


async def car_oem_link(session: AsyncSession, car_id: int, template: str | None) -> str | None:
    """The catalogue link for a car in the database; None when it has no VIN."""
    if not template:
        return None
    vin = await session.scalar(select(Car.vin).where(Car.id == car_id))
    return oem_link(template, vin)


__all__ = ["PLACEHOLDER", "BadOemTemplate", "car_oem_link", "check_template", "oem_link"]
