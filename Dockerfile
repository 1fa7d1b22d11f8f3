# syntax=docker/dockerfile:1
# The envseal image: the CLI, whose `controller` command the Helm chart runs.
#
#   docker build -t envseal:dev .
#   docker run --rm envseal:dev --help
#
# Two stages: build (TypeScript -> dist/, then esbuild bundles it with every dependency
# into dist/bundle, so no node_modules is shipped) and a distroless runtime (glibc, no
# shell, no package manager) holding the Node binary and the bundle, run as UID 65532.
# One recipe: scripts/image/build.ts builds the same image without Docker by executing
# the runtime stage's COPY, ENV, WORKDIR, USER, ENTRYPOINT and CMD lines (test/e2e/image.test.ts
# checks that both agree); keep every runtime instruction in that plain form.
# Pin the bases by digest in production: --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:...

ARG BUILD_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- build: all dependencies, compile src/ to dist/ and bundle it (dist/bundle) -------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts: the only install scripts are devDependencies' (esbuild's binary check,
# and the `node` package that downloads a Node binary; the base image has Node 24).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/bundle.ts ./scripts/bundle.ts
RUN npm run build
# Node without its debug symbols: 126 -> 108 MB.
RUN strip -o /src/node /usr/local/bin/node

# ---- runtime -------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="envseal" \
      org.opencontainers.image.description="Envelope-encrypted Kubernetes Secrets: CLI and controller" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV NODE_ENV=production
WORKDIR /app
# Owned by root, read-only for the process (the chart also mounts the root filesystem read-only).
COPY --from=build /src/node /usr/local/bin/node
COPY package.json ./
COPY --from=build /src/dist/bundle ./dist/bundle
COPY bin ./bin
COPY crds ./crds
# A numeric UID, so that the kubelet can enforce runAsNonRoot (the chart runs as 65532 too).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/node", "/app/bin/envseal.js"]
CMD ["controller"]
