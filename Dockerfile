# One image for the three Muster services (members, alerts, dispatch), the console and the
# init job; the command chooses: `python -m services.members`, `python -m services.console`, …
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# espeak-ng speaks the voice calls in languages Twilio has no voice for (Albanian):
# docs/alerts.md, "Voice calls". pango (and a font) is what WeasyPrint draws the
# after-action reports' PDF with: docs/dispatch.md, "Reports".
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng \
        libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Every runtime dependency ships as a wheel for linux/amd64 and arm64: no compiler needed.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# The console's gettext catalogues are compiled here, as root: at run time the filesystem
# may be read-only (Kubernetes) and the console then finds them up to date.
RUN pip install . \
    && python -c "from services.console.pages import compile_catalogues; compile_catalogues()" \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home muster

USER 10001:10001

EXPOSE 8000 8001 8002 8003
CMD ["python", "-m", "services.members"]
