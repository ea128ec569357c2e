# One image for the four services and the mail catcher; docker-compose.yml picks which with the
# command. It builds on any Debian bookworm base (BASE_IMAGE), with Debian's Python 3.11.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/portal-auth \
 && useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin portal \
 && mkdir -p /var/lib/mail && chown portal /var/lib/mail
ENV PATH=/opt/portal-auth/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

# Dependencies first, in their own layer: a code change rebuilds only the layer below.
# The package index may be reached through a proxy whose authority only the build host trusts:
# its CA bundle comes in as a build secret for this step only and is never part of the image.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -c "import tomllib; print('\n'.join(['setuptools>=68', 'wheel', *tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']]))" > /tmp/requirements.txt \
 && pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md ./
COPY shared ./shared
COPY services ./services
COPY portal_auth ./portal_auth
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation . \
 && rm -rf build *.egg-info
USER portal
ENTRYPOINT ["portal-auth"]
