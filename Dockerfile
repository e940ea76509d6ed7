# Switchyard as a container image. Not built by CI here (no Docker engine); see docs/scaling.md.
#   docker build -t switchyard .
#   docker run -p 8080:8080 -e BACKEND_SERVERS=http://10.0.0.1:8080 switchyard start --preset balancer
# Presets read their settings from the environment; mount a config at /app/config/switchyard.yaml
# and pass `start --config config/switchyard.yaml` for anything more.

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
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/plugins/ai-mappings/admin ./plugins/ai-mappings/admin
COPY --from=build /app/plugins/ai-usage/dashboard ./plugins/ai-usage/dashboard
# The default store is sqlite://./data/switchyard.sqlite (relative to the working directory when
# started from a preset): a volume the non-root user can write.
RUN mkdir -p /app/data && chown node:node /app/data
VOLUME /app/data
USER node
EXPOSE 8080
# node:20-slim has no curl or wget: ask /health with node itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/bin/switchyard.js"]
CMD ["start", "--preset", "balancer"]
