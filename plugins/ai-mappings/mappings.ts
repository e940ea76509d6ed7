// The mapping table: prefix → upstream base URL, kept in the store and cached in memory, with the
// validation the admin API applies. Owned by the ai-mappings plugin.
import type { PluginStore } from '../../core/index.js';

/** One live mapping: requests under `prefix` go to `target` with the prefix stripped. */
export interface Mapping {
  /** The prefix without its slash; also the route's name in logs and stats. */
  readonly name: string;
  /** `/` + name, e.g. `/openai`. */
  readonly prefix: string;
  /** Absolute http(s) base URL, e.g. `https://api.openai.com`. */
  readonly target: string;
  /** Gemini NoThink for every request through this mapping (read by the gemini-nothink plugin). */
  readonly nothink?: boolean;
  /** Epoch ms of the last change. */
  readonly updatedAt?: number;
}

/**
 * The providers a fresh gateway knows. Targets carry the provider's own base path where its
 * clients expect one (Groq's OpenAI-compatible API lives under /openai, OpenRouter's under /api),
 * so every mapping is used the same way: `<gateway>/<name>/v1/...`.
 */
export const DEFAULT_MAPPINGS: readonly Mapping[] = [
  { name: 'openai', prefix: '/openai', target: 'https://api.openai.com' },
  { name: 'gemini', prefix: '/gemini', target: 'https://generativelanguage.googleapis.com' },
  { name: 'gnothink', prefix: '/gnothink', target: 'https://generativelanguage.googleapis.com', nothink: true },
  { name: 'claude', prefix: '/claude', target: 'https://api.anthropic.com' },
  { name: 'xai', prefix: '/xai', target: 'https://api.x.ai' },
  { name: 'groq', prefix: '/groq', target: 'https://api.groq.com/openai' },
  { name: 'mistral', prefix: '/mistral', target: 'https://api.mistral.ai' },
  { name: 'openrouter', prefix: '/openrouter', target: 'https://openrouter.ai/api' },
  { name: 'deepseek', prefix: '/deepseek', target: 'https://api.deepseek.com' },
];

/** The single store key holding the whole table, so a reader always sees one consistent version. */
export const STORE_KEY = 'mappings';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** A validation failure the admin API answers with 400, 404 or 409. */
export class MappingError extends Error {
  constructor(readonly status: 400 | 404 | 409, readonly code: string, message: string, readonly field?: string) {
    super(message);
  }

  toJSON(): Record<string, unknown> {
    return { error: this.message, code: this.code, ...(this.field ? { field: this.field } : {}) };
  }
}

/** Checks a prefix: `/` + a safe name, not one of the gateway's own paths. Returns the name. */
export function checkPrefix(prefix: unknown, reserved: readonly string[]): string {
  if (typeof prefix !== 'string' || prefix === '') throw new MappingError(400, 'AI_MAPPING_INVALID', 'prefix is required, e.g. "/openai"', 'prefix');
  const name = prefix.startsWith('/') ? prefix.slice(1) : '';
  if (!NAME.test(name)) {
    throw new MappingError(400, 'AI_MAPPING_INVALID', `prefix "${prefix}" must be "/" followed by 1-64 letters, digits, "_" or "-" (no further slashes)`, 'prefix');
  }
  // Compared case-insensitively: "/Admin" next to "/admin" would only confuse people.
  const clash = reserved.find((path) => path.toLowerCase() === prefix.toLowerCase());
  if (clash) throw new MappingError(400, 'AI_MAPPING_RESERVED', `prefix "${prefix}" would shadow the gateway's own ${clash}`, 'prefix');
  return name;
}

/** Checks a target: an absolute http(s) URL without credentials, query or fragment. Returns it normalised. */
export function checkTarget(target: unknown): string {
  if (typeof target !== 'string' || target === '') throw new MappingError(400, 'AI_MAPPING_INVALID', 'target is required, e.g. "https://api.openai.com"', 'target');
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new MappingError(400, 'AI_MAPPING_INVALID', `target "${target}" is not an absolute URL`, 'target');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new MappingError(400, 'AI_MAPPING_INVALID', `target must use http or https, not ${url.protocol}`, 'target');
  // Credentials in a target would be shown on the dashboard and in the audit log.
  if (url.username || url.password) throw new MappingError(400, 'AI_MAPPING_INVALID', 'target must not contain credentials; clients send their own keys', 'target');
  if (url.search || url.hash) throw new MappingError(400, 'AI_MAPPING_INVALID', 'target must not have a query or fragment', 'target');
  return `${url.origin}${url.pathname === '/' ? '' : url.pathname.replace(/\/+$/, '')}`;
}

export function checkNothink(value: unknown): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new MappingError(400, 'AI_MAPPING_INVALID', 'nothink must be true or false', 'nothink');
  return value;
}

/** Reads the table from the store; undefined when it was never written (a fresh store). */
export async function readMappings(store: PluginStore): Promise<Mapping[] | undefined> {
  const value = await store.get<Mapping[]>(STORE_KEY);
  return Array.isArray(value) ? value : undefined;
}

export function sortForMatching(mappings: readonly Mapping[]): Mapping[] {
  return [...mappings].sort((a, b) => b.prefix.length - a.prefix.length);
}

/** The prefix itself or anything below it at a `/` boundary (`/openai` takes `/openai/v1`, not `/openaix`). */
export function underPrefix(pathname: string, prefix: string): boolean {
  return pathname.startsWith(prefix) && (pathname.length === prefix.length || pathname[prefix.length] === '/');
}
