# syntax=docker/dockerfile:1
# The envseal image: the CLI, whose `controller` command the Helm chart runs.
#
#   docker build -t envseal:dev .
#   docker run --rm envseal:dev --help
#
# Three stages: build (TypeScript -> dist/), deps (production dependencies only), and a
# small runtime from node:24-alpine with neither npm nor the sources, as a non-root UID.
# test/e2e/image.test.ts reproduces the runtime's file layout and runs it (no Docker
# engine needed); keep the COPY lines of the runtime stage in step with it.
# Pin the bases by digest in production: --build-arg NODE_IMAGE=node:24-alpine@sha256:...

ARG BUILD_IMAGE=node:24-bookworm-slim
ARG NODE_IMAGE=node:24-alpine

# ---- build: all dependencies, compile src/ to dist/ and bundle it (dist/bundle) -------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the only install scripts are devDependencies' (esbuild's binary check,
# and the `node` package that downloads a Node binary; the base image has Node 24).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/bundle.ts ./scripts/bundle.ts
RUN npm run build

# ---- deps: production dependencies only ---------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- runtime -------------------------------------------------------------------------
FROM ${NODE_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="envseal" \
      org.opencontainers.image.description="Envelope-encrypted Kubernetes Secrets: CLI and controller" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# The runtime needs node only: drop npm, npx, corepack and yarn (size, attack surface).
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
           /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
ENV NODE_ENV=production
WORKDIR /app
# Owned by root, read-only for the process (the chart also mounts the root filesystem read-only).
COPY package.json package-lock.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY crds ./crds
# A numeric UID, so that the kubelet can enforce runAsNonRoot (the chart runs as 65532 too).
USER 65532:65532
ENTRYPOINT ["node", "/app/bin/envseal.js"]
CMD ["controller"]
