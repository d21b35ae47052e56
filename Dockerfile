# authproxy: a static binary on a distroless, non-root image.
#
#   docker build --build-arg VERSION="$(git describe --tags --always)" -t authproxy .
#   docker run --rm authproxy version
#
# deploy/dockerfile_test.go checks this file against the repository (the Go
# version against go.mod, the build output against ENTRYPOINT, the flags,
# the user, the port); no Docker engine runs in CI.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first, so that the download layer survives source edits.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/authproxy ./cmd/authproxy

# static-debian12 has CA certificates and /etc/passwd, and no shell: every
# instruction below must work without one (exec form only).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authproxy /authproxy
# uid 65532.
USER nonroot:nonroot
EXPOSE 9001
# For plain Docker and Compose. Kubernetes ignores HEALTHCHECK (it uses the
# probes in deploy/), and so do OCI-format builds such as podman's default.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/authproxy", "healthcheck"]
ENTRYPOINT ["/authproxy"]
