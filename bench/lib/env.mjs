// The benchmarks' numeric settings from the environment, read the same way by every script.

export function positiveNumberFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

/** wrk takes whole seconds and whole connection counts; never less than 1. */
export const wholeNumberFromEnv = (name, fallback) => Math.max(1, Math.round(positiveNumberFromEnv(name, fallback)));
