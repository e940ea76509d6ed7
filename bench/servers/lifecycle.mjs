// Shared lifecycle helpers for the bench's own child servers.

/** Handshake with bench/run.mjs: the first stdout line is `{"port":N}`. */
export function announcePort(port) {
  process.stdout.write(JSON.stringify({ port }) + '\n');
}

/**
 * The runner spawns us with a stdin pipe. If the runner dies without cleaning
 * up (e.g. SIGKILL), the pipe closes and we exit instead of lingering.
 */
export function exitWhenParentGoes(close) {
  process.stdin.on('data', () => {});
  process.stdin.on('close', () => {
    close();
    process.exit(0);
  });
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      close();
      process.exit(0);
    });
  }
}
