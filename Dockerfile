# genretag: one image for the worker, beat and producer services (see docker-compose.yml).
# Decoding needs no system package: FFmpeg's libraries come inside the av wheel (every format), libsndfile
# inside the soundfile wheel (the fallback).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tzdata: GENRETAG_SCAN_TIMEZONE names (zoneinfo reads /usr/share/zoneinfo).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 genretag \
    && mkdir -p /state && chown genretag:genretag /state

WORKDIR /src
COPY pyproject.toml README.md ./
COPY genretag ./genretag
# The runtime only: LiteRT runs the bundle's export, so no TensorFlow (the `train` extra) in the image.
RUN pip install . && rm -rf /src/build

WORKDIR /home/genretag
USER genretag
ENTRYPOINT ["genretag"]
CMD ["--help"]
