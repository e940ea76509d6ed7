// The programs some tests need besides Node. Where one is missing, the tests that need it are
// skipped on a developer's machine, but under CI=true the test file fails at load, naming the
// program and its Debian package: a CI run never passes by skipping.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const TOOLS = {
  'redis-server': { present: () => runs('redis-server', ['--version']), apt: 'redis-server' },
  python3: { present: () => runs('python3', ['--version']), apt: 'python3' },
  openssl: { present: () => runs('openssl', ['version']), apt: 'openssl' },
  chromium: { present: () => existsSync(CHROMIUM), apt: 'chromium' },
} as const;

export type Tool = keyof typeof TOOLS;

function runs(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

/**
 * Undefined when `tool` is installed. Otherwise the reason to give `test(…, { skip })`, or, with
 * CI=true, a thrown error.
 */
export function missing(tool: Tool): string | undefined {
  if (TOOLS[tool].present()) return undefined;
  const reason = `${tool} is not installed (apt-get install ${TOOLS[tool].apt})`;
  if (process.env.CI === 'true') throw new Error(`${reason}: with CI=true a missing tool fails the run instead of skipping tests`);
  return reason;
}

/**
 * Debian's Chromium, headless. Without the background-networking flags it keeps opening
 * connections this machine's closed network refuses.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
