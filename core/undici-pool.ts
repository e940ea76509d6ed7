// undici's Pool alone, not its index: the index also loads fetch, WebSocket, the mocks and caches
// (about 7 MiB of RSS more), none of which dispatch() needs. One deep require for everything in
// Switchyard that sends through undici (the undici engine, the tracing plugin's export
// transport); docs/private-apis.md, entry 8. test/core/cli.test.ts checks that this file is still
// undici's Pool.
import { createRequire } from 'node:module';
import type { Pool } from 'undici';

export const UndiciPool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof Pool;
