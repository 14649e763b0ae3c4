# syntax=docker/dockerfile:1
# Build: docker build -t ccbot .
# Run (SQLite in the /data volume): docker run -e BOT_TOKEN=... -v ccbot-data:/data ccbot

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /venv
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY services ./services
COPY storage ./storage
RUN /venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ccbot && mkdir /data && chown ccbot /data
COPY --from=build /venv /venv
COPY locales /app/locales
WORKDIR /app
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite+aiosqlite:////data/ccbot.sqlite3 \
    CCBOT_LOCALES_DIR=/app/locales
# The catalogues are compiled now: at run time /app belongs to root and the bot cannot write.
RUN python -c "from bot.i18n import compile_catalogues; compile_catalogues()"
USER ccbot
VOLUME ["/data"]
ENTRYPOINT ["ccbot"]
CMD ["run"]
