"""The jobs that run on their own: delivering the outbox, and the time-based alerts.

APScheduler 3 (``AsyncIOScheduler``) on the bot's event loop, every job with an explicit
``misfire_grace_time``, ``coalesce`` and ``max_instances``. ``ccbot run`` / ``ccbot webhook``
run it inside the bot (unless ``NOTIFY_IN_BOT=false``); ``ccbot worker`` runs it alone.

* ``deliver`` every second. A drain can last longer than that (a big queue at 25 messages
  a second); the next run then finds it busy and returns at once, which is why the job may
  have two instances: a skipped run would be logged as a warning every second.
* ``escalate`` every minute: events unprocessed for ``ESCALATE_AFTER_MINUTES`` go to the
  admins (each once).
* ``booking_reminders`` daily at ``BOOKING_REMINDER_HOUR`` (shop time): tomorrow's bookings.
* ``tire_season``: on ``TIRE_WINTER_REMINDER`` and ``TIRE_SUMMER_REMINDER`` (month-day, at
  10:00 shop time), clients whose winter (summer) set is stored with us are told it is time
  to change; the worker paces them like everything else.

A timed job only queues rows, keyed so that a second run the same day queues nothing, so a
missed run may safely run late (``misfire_grace_time``) and never twice at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import Settings
from bot.delivery import DeliveryWorker
from services import bookings, notify, tires
from storage.db import write_transaction
from storage.models import TireSeason

logger = logging.getLogger(__name__)

DELIVER_EVERY = 1.0  # seconds
DRAIN_MAX = 60.0  # seconds one run may drain before handing over to the next


class Jobs:
    """The job functions, bound to the app's parts (nothing global)."""

    def __init__(self, settings: Settings, worker: DeliveryWorker) -> None:
        self.settings = settings
        self.worker = worker

    async def deliver(self) -> None:
        stats = await self.worker.tick(DRAIN_MAX)
        if stats is not None and (stats.sent or stats.dead or stats.dropped):
            logger.info(
                "notifications: %d sent (%d rows), %d dropped, %d dead, %d to retry",
                stats.sent,
                stats.rows_sent,
                stats.dropped,
                stats.dead,
                stats.retried,
            )

    async def booking_reminders(self) -> None:
        async with write_transaction(self.worker.session_factory) as session:
            queued = await bookings.queue_booking_reminders(
                session, datetime.now(UTC), tz=self.settings.tz
            )
        logger.info("booking reminders: %d queued for tomorrow", queued)

    async def tire_season(self, season: TireSeason) -> None:
        async with write_transaction(self.worker.session_factory) as session:
            queued = await tires.queue_tire_season_reminders(session, datetime.now(UTC), season)
        logger.info("tire season (%s): %d client(s) to be told", season.value, queued)

    async def escalate(self) -> None:
        after = timedelta(minutes=self.settings.escalate_after_minutes)
        async with write_transaction(self.worker.session_factory) as session:
            queued = await notify.escalate_unprocessed(session, now=datetime.now(UTC), after=after)
        if queued:
            logger.info("escalation: %d alert(s) queued for admins", queued)


def make_scheduler(settings: Settings, worker: DeliveryWorker) -> AsyncIOScheduler:
    jobs = Jobs(settings, worker)
    scheduler = AsyncIOScheduler(timezone=settings.tz)
    scheduler.add_job(
        jobs.deliver,
        IntervalTrigger(seconds=DELIVER_EVERY),
        id="deliver",
        max_instances=2,  # the second finds the first draining and returns (see above)
        coalesce=True,
        misfire_grace_time=5,
    )
    scheduler.add_job(
        jobs.escalate,
        IntervalTrigger(minutes=1),
        id="escalate",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=60,
    )
    scheduler.add_job(
        jobs.booking_reminders,
        CronTrigger(hour=settings.booking_reminder_hour, minute=0, timezone=settings.tz),
        id="booking_reminders",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3 * 3600,
    )
    for season, month_day in (
        (TireSeason.WINTER, settings.tire_winter_reminder),
        (TireSeason.SUMMER, settings.tire_summer_reminder),
    ):
        month, day = (int(part) for part in month_day.split("-"))
        scheduler.add_job(
            jobs.tire_season,
            CronTrigger(month=month, day=day, hour=10, minute=0, timezone=settings.tz),
            args=[season],
            id=f"tire_season_{season.value}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=24 * 3600,
        )
    return scheduler


@contextlib.asynccontextmanager
async def scheduled(settings: Settings, worker: DeliveryWorker) -> AsyncIterator[AsyncIOScheduler]:
    """The scheduler running for the body; after it, no new batch is claimed and the
    messages in flight get a few seconds to finish (what is left stays in the outbox)."""
    if worker.single:
        recovered = await worker.recover()
        if recovered:
            logger.info("notifications: %d left in flight by a stop are due again", recovered)
    scheduler = make_scheduler(settings, worker)
    scheduler.start()
    try:
        yield scheduler
    finally:
        # The worker first: the scheduler's shutdown cancels a running job, and a send cut
        # off after Telegram took it would be sent again by the next start.
        await worker.stop()
        scheduler.shutdown(wait=False)
