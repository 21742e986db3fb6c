# Switchboard in a container: built in one stage, run from a slim one as a non-root
# user with nothing but the binary (templates and pages are compiled in) and the CA
# roots for upstream providers.
#
#   docker build -t switchboard .
#   docker run --read-only -p 5556:5556 \
#     -v /etc/switchboard:/etc/switchboard:ro -v switchboard-data:/var/lib/switchboard \
#     switchboard
#
# The root filesystem may be read-only: the broker writes only under data_dir
# (/var/lib/switchboard, a volume). Mount the config (and secret files it names) at
# /etc/switchboard; set server.listen = "0.0.0.0:5556" in it to be reachable.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p switchboard-broker --bin broker \
 && install -D -m 0755 target/release/broker /out/broker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/switchboard switchboard \
 && install -d -o switchboard -g switchboard -m 0700 /var/lib/switchboard
COPY --from=build /out/broker /usr/local/bin/broker
USER 10001
WORKDIR /var/lib/switchboard
VOLUME ["/var/lib/switchboard"]
EXPOSE 5556
# Probe GET /healthz (liveness) and /readyz (a signing key is ready) from outside.
ENTRYPOINT ["broker"]
CMD ["serve", "--config", "/etc/switchboard/broker.toml", "--log-json"]
