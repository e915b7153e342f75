# Runtime image for the TypeScript pilot-agent, laid out like Istio's istio-proxy image:
# entrypoint pilot-agent, Envoy at /usr/local/bin/envoy, bootstrap templates under
# /var/lib/istio/envoy, writable /etc/istio/proxy and /var/lib/istio/data, uid/gid 1337.
#
# Build (needs a Docker engine; none runs on the project's dev machines):
#   docker build --build-arg ISTIO_VERSION=1.31.0 -t pilot-agent-ts:dev .
# Use it as the injector's proxy image (global.proxy.image) or run it directly:
#   docker run --rm pilot-agent-ts:dev version

ARG ISTIO_VERSION=1.31.0
ARG NODE_VERSION=20

# Envoy comes from Istio's own proxy image of the stated version: the agent is a drop-in for
# that image's pilot-agent, so the Envoy build must match the Istio release istiod expects.
FROM docker.io/istio/proxyv2:${ISTIO_VERSION} AS istio-proxy

# Build stage: the full install (TypeScript); src/gen/ is committed, so no code generation here.
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/bundle.mjs ./scripts/bundle.mjs
COPY src ./src
# the build saves the templates' parse trees beside the bundle (template-parse-cache.json)
COPY bootstrap-templates ./bootstrap-templates
RUN npm run build

# Runtime stage: the bundled agent only (dist/bundle, ~3 MB: the agent and its runtime
# dependencies, see scripts/bundle.mjs), no node_modules. test/packaging/production-install.test.ts
# builds and runs exactly this layout.
FROM node:${NODE_VERSION}-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates iptables iproute2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd -g 1337 istio-proxy && useradd -u 1337 -g 1337 -m -d /home/istio-proxy -s /bin/sh istio-proxy
COPY --from=istio-proxy /usr/local/bin/envoy /usr/local/bin/envoy
WORKDIR /opt/pilot-agent
COPY package.json ./
COPY --from=build /src/dist/bundle ./dist/bundle
COPY bin ./bin
COPY bootstrap-templates ./bootstrap-templates
COPY bootstrap-templates /var/lib/istio/envoy
RUN ln -s /opt/pilot-agent/bin/pilot-agent.js /usr/local/bin/pilot-agent \
    && mkdir -p /etc/istio/proxy /var/lib/istio/data /etc/istio/pod /var/run/secrets/workload-spiffe-uds \
    && chown -R 1337:1337 /etc/istio/proxy /var/lib/istio /var/run/secrets/workload-spiffe-uds
WORKDIR /
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/pilot-agent"]
