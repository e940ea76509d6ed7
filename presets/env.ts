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
