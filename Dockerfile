# Switchyard as a container image. Not built by CI here (no Docker engine); test/examples/docker.test.ts
# runs its commands, as its user, in the same layout instead (docs/scaling.md, "Containers").
#   docker build -t switchyard .
#   docker run -p 8080:8080 -e BACKEND_SERVERS=http://10.0.0.1:8080 switchyard start --preset balancer
#   docker run -p 6635:6635 -v ./cache:/app/cache -e TMDB_API_KEY=… switchyard start --preset tmdb
# Each preset listens on its own default port (balancer and confluence 8080, ai-gateway 8000, tmdb
# 6635) unless PORT is given. Presets read their settings from the environment; for anything more,
# mount a config as /app/switchyard.yaml and run `start` (it reads ./switchyard.yaml): relative
# paths in it, the default store ./data/switchyard.sqlite included, then land in /app.

# --- build: compile TypeScript and sqlite3's native module, then drop the dev dependencies ---
FROM node:20-slim AS build
# sqlite3 (under @keyv/sqlite) compiles from source: it needs python3, make and g++.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
# --ignore-scripts: our own `prepare` (tsc) cannot run before the sources are copied; sqlite3's
# install script is run on its own just after.
RUN npm ci --no-audit --no-fund --ignore-scripts && npm rebuild sqlite3
COPY bin ./bin
COPY core ./core
COPY plugins ./plugins
COPY presets ./presets
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund

# --- runtime: the compiled code, production dependencies and the plugins' static pages ---
FROM node:20-slim
# No PORT here: it would win over every preset's own default port.
ENV NODE_ENV=production HOST=0.0.0.0 SWITCHYARD_HEALTH_FILE=/tmp/switchyard.health
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/plugins/ai-mappings/admin ./plugins/ai-mappings/admin
COPY --from=build /app/plugins/ai-usage/dashboard ./plugins/ai-usage/dashboard
# Where state goes, as volumes the non-root user can write: the default store
# (sqlite://./data/switchyard.sqlite) and the tmdb and confluence presets' CACHE_DIR (./cache).
RUN mkdir -p /app/data /app/cache && chown node:node /app/data /app/cache
VOLUME ["/app/data", "/app/cache"]
USER node
EXPOSE 8080 8000 6635
# `start` writes where its /health is (its port, a separate admin port, the admin prefix, http or
# https) to SWITCHYARD_HEALTH_FILE; `health` asks that URL (node:20-slim has no curl or wget).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "dist/bin/switchyard.js", "health"]
ENTRYPOINT ["node", "dist/bin/switchyard.js"]
CMD ["start", "--preset", "balancer"]
