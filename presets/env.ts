// Reading environment variables for presets: a bad value fails at start, naming the variable.

export class PresetEnvError extends Error {
  constructor(readonly variable: string, problem: string) {
    super(`environment variable ${variable} ${problem}`);
  }
}

export function envString(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

export function envPort(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = envString(env, name);
  if (raw === undefined) return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new PresetEnvError(name, `is "${raw}", not a port number (0-65535)`);
  return port;
}

/** A whole number within [min, max]. */
export function envInt(env: NodeJS.ProcessEnv, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = envString(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw.trim());
  if (!/^-?\d+$/.test(raw.trim()) || value < min || value > max) {
    throw new PresetEnvError(name, `is "${raw}", not a whole number${max === Number.MAX_SAFE_INTEGER ? ` of at least ${min}` : ` from ${min} to ${max}`}`);
  }
  return value;
}

/** A decimal number within [min, max] (bounds inclusive unless `exclusiveMin`). */
export function envNumber(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number, exclusiveMin = false): number {
  const raw = envString(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(value) || value > max || (exclusiveMin ? value <= min : value < min)) {
    throw new PresetEnvError(name, `is "${raw}", not a number ${exclusiveMin ? 'above' : 'from'} ${min}${Number.isFinite(max) ? ` ${exclusiveMin ? 'up ' : ''}to ${max}` : ''}`);
  }
  return value;
}

/** true / false (also 1/0, yes/no, on/off). */
export function envBoolean(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = envString(env, name)?.trim().toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'on', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'off', 'no'].includes(raw)) return false;
  throw new PresetEnvError(name, `is "${raw}"; use true or false`);
}

/** One of `allowed`, or undefined when unset. */
export function envChoice<T extends string>(env: NodeJS.ProcessEnv, name: string, allowed: readonly T[]): T | undefined {
  const raw = envString(env, name)?.trim();
  if (raw === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(raw)) throw new PresetEnvError(name, `is "${raw}"; use one of ${allowed.join(', ')}`);
  return raw as T;
}

/** A comma-separated list, blanks dropped. */
export function envList(env: NodeJS.ProcessEnv, name: string): string[] {
  return (envString(env, name) ?? '').split(',').map((item) => item.trim()).filter(Boolean);
}

/** A comma-separated list of http(s) URLs (origin plus optional base path). */
export function envUrls(env: NodeJS.ProcessEnv, name: string): string[] {
  return envList(env, name).map((url) => {
    if (!/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(url)) throw new PresetEnvError(name, `entry "${url}" is not an http(s) URL without query (e.g. https://api.themoviedb.org)`);
    return url.replace(/\/+$/, '');
  });
}
