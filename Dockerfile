# syntax=docker/dockerfile:1
# ward image: the proxy (/usr/local/bin/ward) and the demo upstream
# (/usr/local/bin/ward-whoami), on debian:12-slim, running as uid 10001.
#
#   docker build -t ward .
#   docker run --rm -p 8080:8080 -v "$PWD/my.yaml:/etc/ward/ward.yaml:ro" ward
#   docker run --rm ward check -c /etc/ward/ward.yaml
#
# The baked-in /etc/ward/ward.yaml is conf/container.yaml (plain HTTP, upstreams
# on the container's own 127.0.0.1:9001/9002): mount your own. deploy/compose/
# has a working setup, with the health check this image leaves to the
# orchestrator. tests/integration/test_dockerfile.py keeps this file in step
# with the build (packages, sources, shared libraries, the baked-in config).

FROM debian:12-slim AS build
# The build packages are scripts/deps.sh's build_pkgs; python3: ward-whoami is
# defined with the tests, whose CMake setup looks for it.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ ccache pkg-config \
      libboost1.81-dev libssl-dev libnghttp2-dev libyaml-cpp-dev libspdlog-dev \
      libgtest-dev libgmock-dev zlib1g-dev libbrotli-dev libhiredis-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads: the build directories of a checkout stay out.
COPY CMakeLists.txt ./
COPY proxy proxy
COPY filters filters
COPY tests tests
COPY bench bench
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build /build --target ward ward-whoami \
 && install -D -s -m 0755 /build/ward /out/ward \
 && install -D -s -m 0755 /build/tests/support/ward-whoami /out/ward-whoami

FROM debian:12-slim
LABEL org.opencontainers.image.title="ward" \
      org.opencontainers.image.description="Edge reverse proxy"
# Runtime libraries only (Boost is header-only here; libspdlog1.10 pulls libfmt9;
# zlib1g, libstdc++6 and libc6 are in the base image).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libssl3 libnghttp2-14 libyaml-cpp0.7 libspdlog1.10 libbrotli1 libhiredis0.14 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ward \
 && useradd --system --uid 10001 --gid ward --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin ward
COPY --from=build /out/ward /out/ward-whoami /usr/local/bin/
COPY conf/container.yaml /etc/ward/ward.yaml
# Fail the image build, not the first start, if a shared library is missing.
RUN ["/usr/local/bin/ward", "version"]
RUN ["/usr/local/bin/ward-whoami", "--help"]
RUN ["/usr/local/bin/ward", "check", "-c", "/etc/ward/ward.yaml"]
USER 10001:10001
WORKDIR /etc/ward
# 8080 http, 8443 https (a tls: listener in a mounted config), 9901 admin
EXPOSE 8080 8443 9901
# SIGTERM drains for up to limits.drain_timeout (30s): give the container
# longer than that to stop (compose stop_grace_period, Kubernetes
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ward"]
CMD ["-c", "/etc/ward/ward.yaml"]
