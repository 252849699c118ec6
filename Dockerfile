# prism in a container: a Rust builder stage running packaging/build-release.sh
# (the script tests/packaging.rs runs), then a small Debian runtime with ffmpeg
# (re-encoding, the standby slate), CA roots (outbound RTMPS) and the DejaVu font
# (the slate's card text), running as the unprivileged user `prism`.
#
#   docker build -t prism .
#   docker run -d --name prism -p 1935:1935 -p 127.0.0.1:8080:8080 \
#     -v "$PWD/prism.toml:/etc/prism/prism.toml:ro" \
#     -v "$PWD/users:/etc/prism/users:ro" prism
#
# packaging/compose.yaml does the same with compose; README "Install".

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN packaging/build-release.sh /out

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg ca-certificates fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin prism \
    && mkdir -p /etc/prism/users
COPY --from=build /out/prism /usr/local/bin/prism
COPY packaging/healthcheck.sh /usr/local/bin/prism-healthcheck
COPY packaging/prism.toml /etc/prism/prism.toml
# prism writes nothing but the slate's short-lived text files (in /tmp) and
# fontconfig's cache.
ENV XDG_CACHE_HOME=/tmp
USER prism
# The configuration file and the users directory: mount your own over them.
VOLUME ["/etc/prism/users"]
# RTMP and HTTP, as packaging/prism.toml listens.
EXPOSE 1935 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["prism-healthcheck", "127.0.0.1:8080"]
ENTRYPOINT ["prism"]
CMD ["serve", "--config", "/etc/prism/prism.toml"]
