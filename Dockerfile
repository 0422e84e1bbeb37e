# Builds the whole workspace once; the same image runs either service:
#   docker build -t parley .
#   docker run parley api-server | socket-server | parley
#
# Node.js and npm (from the official node image) build the reference web app that the
# all-in-one `parley` serves on its API port: the root build.rs runs `npm ci` in clients/web
# (packages pinned by its package-lock.json, fetched from the npm registry) and bundles it.
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE} AS node

FROM rust:1.95-bookworm AS build
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
WORKDIR /src
COPY . .
# build.rs goes on without the app when npm fails (a cargo:warning): here that fails the build,
# checked on the binary's ready line (`"web": null` when the app is missing).
RUN cargo build --release --locked --workspace --bins \
 && mkdir /out \
 && cp target/release/api-server target/release/socket-server target/release/parley /out/ \
 && { timeout 120 /out/parley --ephemeral </dev/null 2>/dev/null | head -n 1 | grep -q '"web":"http' \
      || { echo "the web app was not built into parley: see the cargo:warning above" >&2; exit 1; }; }

FROM debian:bookworm-slim
# /var/lib/parley/attachments exists, owned by parley, so that a volume mounted there starts
# writable for the service (Docker copies the directory's owner into a new named volume).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 parley \
 && mkdir -p /var/lib/parley/attachments && chown -R parley /var/lib/parley
COPY --from=build /out/ /usr/local/bin/
USER parley
# The all-in-one keeps its SQLite file, JWT secret and uploads (attachments/) here; the
# api-server keeps uploads where ATTACHMENTS_URL says (docker-compose.yml: the same
# attachments/ directory, a volume). Mount a volume to keep them. Uploads are spooled to /tmp
# while they arrive.
WORKDIR /var/lib/parley
ENV LOG_FORMAT=json PARLEY_DATA_DIR=/var/lib/parley API_HOST=0.0.0.0 SOCKET_HOST=0.0.0.0
EXPOSE 3000 5000
CMD ["parley"]
