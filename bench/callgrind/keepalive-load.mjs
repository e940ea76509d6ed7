// Load for bench/callgrind/run.sh: keep-alive requests on the same CONNS connections throughout.
// WARM requests, then prints "warm" and waits for SIGUSR2; then N requests, prints "done F" (F: how
// many of them were not answered 2xx) and waits for SIGUSR2 before closing. Connections are opened and closed outside the measured window, and
// the JIT has settled by the time it starts.
// usage: node keepalive-load.mjs PORT WARM N CONNS PATH
import http from 'node:http';

const [port, warm, n, conns] = process.argv.slice(2, 6).map(Number);
const path = process.argv[6] ?? '/';
const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
let failed = 0;

function run(total) {
  return new Promise((resolve) => {
    let sent = 0;
    let done = 0;
    const next = () => {
      if (sent >= total) return;
      sent++;
      http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
        if (res.statusCode < 200 || res.statusCode > 299) failed++;
        res.resume();
        res.on('end', () => {
          done++;
          if (done === total) resolve();
          else next();
        });
      });
    };
    for (let i = 0; i < conns; i++) next();
  });
}

const signalled = () => new Promise((resolve) => process.once('SIGUSR2', resolve));
// Idle keep-alive sockets do not hold the process open while it waits for a signal.
const alive = setInterval(() => {}, 1 << 30);
await run(warm);
let go = signalled();
console.log('warm');
await go;
failed = 0;
await run(n);
go = signalled();
console.log(`done ${failed}`);
await go;
agent.destroy();
clearInterval(alive);
