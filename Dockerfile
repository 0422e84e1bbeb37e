# Builds the whole workspace once; the same image runs either service:
#   docker build -t parley .
#   docker run parley api-server | socket-server | parley
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && mkdir /out \
 && cp target/release/api-server target/release/socket-server target/release/parley /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 parley \
 && mkdir -p /var/lib/parley && chown parley /var/lib/parley
COPY --from=build /out/ /usr/local/bin/
USER parley
# The all-in-one keeps its SQLite file and JWT secret here (mount a volume to keep them).
WORKDIR /var/lib/parley
ENV LOG_FORMAT=json PARLEY_DATA_DIR=/var/lib/parley API_HOST=0.0.0.0 SOCKET_HOST=0.0.0.0
EXPOSE 3000 5000
CMD ["parley"]
