// Load for the fault suite: keep-alive clients sending requests back to back until told to stop,
// counting every answer and every failure; and a look at the proxy's open client connections.
import http from 'node:http';
import type { Server } from 'node:net';

export interface LoadResult {
  sent: number;
  /** Answers by status. */
  statuses: Map<number, number>;
  /** Requests that got no complete answer (connection error, cut-off body), with why. */
  failures: string[];
  /** Answers `check` refused, with why. */
  wrong: string[];
}

export interface Load {
  /** Stops sending; resolves once every client's last request ended. */
  stop(): Promise<LoadResult>;
  readonly result: LoadResult;
  /** Resolves once at least `n` requests have completed. */
  completed(n: number): Promise<void>;
}

/**
 * `clients` keep-alive connections, each sending GET `path` again as soon as its answer ended,
 * until stop() or `maxRequests` in all (a bound, so a stuck test ends). `check` may refuse an
 * answer (return a reason).
 */
export function startLoad(url: string, options: { clients?: number; path?: () => string; maxRequests?: number; check?: (status: number, body: string) => string | undefined } = {}): Load {
  const { clients = 8, maxRequests = 200_000 } = options;
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const result: LoadResult = { sent: 0, statuses: new Map(), failures: [], wrong: [] };
  let running = true;
  let done = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  const finished = () => {
    done++;
    for (const w of waiters.splice(0)) {
      if (done >= w.n) w.resolve();
      else waiters.push(w);
    }
  };
  const one = () => new Promise<void>((resolve) => {
    result.sent++;
    const req = http.get(`${url}${options.path?.() ?? '/load'}`, { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const status = res.statusCode!;
        result.statuses.set(status, (result.statuses.get(status) ?? 0) + 1);
        const why = options.check?.(status, Buffer.concat(chunks).toString('utf8'));
        if (why) result.wrong.push(why);
        resolve();
      });
      res.on('error', (err) => {
        result.failures.push(`response: ${err.message}`);
        resolve();
      });
    });
    req.on('error', (err) => {
      result.failures.push(`request: ${err.message}`);
      resolve();
    });
  }).then(finished);
  const loops = Array.from({ length: clients }, async () => {
    while (running && result.sent < maxRequests) await one();
  });
  const all = Promise.all(loops);
  return {
    result,
    completed: (n) => new Promise((resolve) => {
      if (done >= n) resolve();
      else waiters.push({ n, resolve });
    }),
    async stop() {
      running = false;
      await all;
      agent.destroy();
      return result;
    },
  };
}

/** Open client connections on the server. */
export function connectionsOf(server: Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, count) => (err ? reject(err) : resolve(count))));
}

/**
 * Resolves once the server has no open connection, checking each time one closes (the server
 * emits nothing then, so each socket is watched); rejects after `limit` closes without reaching 0.
 */
export async function noConnectionsLeft(server: Server & { on(e: 'connection', f: (s: import('node:net').Socket) => void): unknown }, sockets: Set<import('node:net').Socket>): Promise<void> {
  while ((await connectionsOf(server)) > 0) {
    const open = [...sockets].filter((s) => !s.destroyed);
    if (open.length === 0) {
      // Counted but already destroyed: the count drops on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    await new Promise((resolve) => open[0]!.once('close', resolve));
  }
}

/** Tracks the server's client sockets from now on, so a test can wait on their close events. */
export function trackSockets(server: Server): Set<import('node:net').Socket> {
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (socket: import('node:net').Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return sockets;
}
