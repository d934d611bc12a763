# One image for the three Muster services (members, alerts, dispatch) and the init job;
# the command chooses: `python -m services.members`, `python -m services.alerts migrate`, …
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Every runtime dependency ships as a wheel for linux/amd64 and arm64: no compiler needed.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install . \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home muster

USER 10001:10001

EXPOSE 8001 8002 8003
CMD ["python", "-m", "services.members"]
