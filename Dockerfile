# The pwd application image (web, reaper and pool keeper in docker-compose.yml).
# BASE is a Debian 13 image: the official one where a registry is reachable, otherwise
# the one node-image/build.sh makes with debootstrap (`node-image/build.sh --app`).
ARG BASE=debian:trixie-slim
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONPATH=/app \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv npm ca-certificates \
      e2fsprogs nftables \
 && apt-get clean && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml requirements.lock package.json package-lock.json ./
# The same pinned, hash-checked dependencies as `make run` (requirements.lock).
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps -e . \
 && npm ci --no-audit --no-fund --loglevel=error
COPY manage.py ./
COPY pwd_site pwd_site
COPY sessions_app sessions_app
COPY terminals terminals
COPY front front
COPY templates templates
COPY static static
RUN python manage.py collectstatic --noinput -v 0

EXPOSE 8000
# pwd_site.serve: daphne with session ids kept out of the access log; no --proxy-headers
# (set PWD_TRUSTED_PROXIES to the proxy instead, see docs/security.md).
CMD ["python", "-m", "pwd_site.serve", "-b", "0.0.0.0", "-p", "8000", "pwd_site.asgi:application"]
