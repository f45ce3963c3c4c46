# syntax=docker/dockerfile:1.7
#
# agentd container image: a static, non-root binary on distroless.
#
#   docker build -t agentd:$(git describe --tags --always) \
#     --build-arg VERSION=$(git describe --tags --always) .
#   docker build --target debug -t agentd:debug .   # + busybox shell
#
# Stages: deps (module download, cached layer) → build (static binary,
# -trimpath, version ldflags) → runtime (distroless static, nonroot, no
# shell) and debug (distroless :debug-nonroot, with a busybox shell).
# See docs/deploy.md for sizes and the compose / Helm deployments.

# Base images, pinned to an exact version and to the digest of its
# multi-platform index (a tag can move; a digest cannot). Refresh all three
# together, deliberately (docs/deploy.md#base-images):
#   crane digest golang:1.26.8-bookworm
#   crane digest gcr.io/distroless/static-debian12:nonroot
#   crane digest gcr.io/distroless/static-debian12:debug-nonroot
# (or docker buildx imagetools inspect REF --format '{{.Manifest.Digest}}').
# The Go version matches go.mod's `go` line (GOTOOLCHAIN=local below).
ARG GO_IMAGE=golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
ARG DISTROLESS_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG DISTROLESS_DEBUG_IMAGE=gcr.io/distroless/static-debian12:debug-nonroot@sha256:d5563cc7f2f44313f332e91138cc8c6a158899afeeeab2fce3b0f9ccdb3cf9ee

FROM ${GO_IMAGE} AS deps
WORKDIR /src
ENV GOTOOLCHAIN=local GOFLAGS=-mod=readonly
# Only go.mod/go.sum: this layer is rebuilt when dependencies change, not
# on every source edit.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download -x

FROM deps AS build
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
COPY . .
# CGO_ENABLED=0: the SQLite driver is pure Go (modernc.org/sqlite), so the
# binary is fully static and runs on distroless/static.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/agentd ./cmd/agentd \
 && /out/agentd version \
 && mkdir -p /out/data

# Runtime: no shell, no package manager, uid/gid 65532 (nonroot).
FROM ${DISTROLESS_IMAGE} AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="agentd" \
      org.opencontainers.image.description="A runtime serving Claude agents" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/agentd /usr/local/bin/agentd
COPY --from=build --chown=65532:65532 /out/data /var/lib/agentd
COPY --chown=65532:65532 examples/container.yaml /etc/agentd/agentd.yaml
USER 65532:65532
WORKDIR /var/lib/agentd
ENV AGENTD_CONFIG=/etc/agentd/agentd.yaml \
    AGENTD_STORE_URL=sqlite:///var/lib/agentd/agentd.db \
    AGENTD_SERVER_ADDR=:8080
EXPOSE 8080
VOLUME ["/var/lib/agentd"]
# No shell or curl in the image: the binary probes itself (exit 0 on 2xx).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/agentd", "probe", "-quiet", "-timeout", "2s", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/agentd"]
CMD ["serve"]

# Debug: same binary on distroless :debug-nonroot (busybox sh at
# /busybox/sh) for `kubectl debug` / `docker run -it --entrypoint sh`.
FROM ${DISTROLESS_DEBUG_IMAGE} AS debug
COPY --from=build /out/agentd /usr/local/bin/agentd
COPY --from=build --chown=65532:65532 /out/data /var/lib/agentd
COPY --chown=65532:65532 examples/container.yaml /etc/agentd/agentd.yaml
USER 65532:65532
WORKDIR /var/lib/agentd
ENV AGENTD_CONFIG=/etc/agentd/agentd.yaml \
    AGENTD_STORE_URL=sqlite:///var/lib/agentd/agentd.db \
    AGENTD_SERVER_ADDR=:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/agentd", "probe", "-quiet", "-timeout", "2s", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/agentd"]
CMD ["serve"]

# The default target is the last stage; keep `runtime` the default.
FROM runtime
