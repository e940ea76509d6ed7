// Preset `balancer`: a general load-balancing reverse proxy configured from environment variables.
// This first cut forwards everything to BACKEND_SERVERS (first healthy in order); balancing
// algorithms, health checks, caching and rate limits join as their plugins land.
import type { Preset } from '../core/index.js';
import { envPort, envString, PresetEnvError } from './env.js';

export const balancer: Preset = {
  description: 'general load-balancing reverse proxy: BACKEND_SERVERS, PORT (8080), ADMIN_KEY',
  build(env) {
    return {
      server: {
        port: envPort(env, 'PORT', 8080),
        admin: { key: envString(env, 'ADMIN_KEY') },
      },
      routes: [{ name: 'backends', match: { pathPrefix: '/' }, upstreams: parseBackends(env) }],
    };
  },
};

/** `url|weight|priority|region,…` → upstreams; every part after the URL is optional. */
function parseBackends(env: NodeJS.ProcessEnv): Record<string, unknown>[] {
  const raw = envString(env, 'BACKEND_SERVERS');
  if (!raw) throw new PresetEnvError('BACKEND_SERVERS', 'is not set: give a comma-separated list like http://10.0.0.1:8080|3,http://10.0.0.2:8080|1');
  return raw.split(',').map((entry) => entry.trim()).filter(Boolean).map((entry) => {
    const [url = '', weight, priority, region] = entry.split('|').map((part) => part.trim());
    if (!/^https?:\/\/[^\s/]+/.test(url)) throw new PresetEnvError('BACKEND_SERVERS', `entry "${entry}" does not start with an http(s) URL`);
    const upstream: Record<string, unknown> = { url };
    if (weight) upstream.weight = positiveNumber(weight, entry);
    if (priority) upstream.priority = positiveNumber(priority, entry);
    if (region) upstream.meta = { region };
    return upstream;
  });
}

function positiveNumber(text: string, entry: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new PresetEnvError('BACKEND_SERVERS', `entry "${entry}": "${text}" is not a non-negative number`);
  return value;
}
