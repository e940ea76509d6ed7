// Load for bench/callgrind/run.sh: keep-alive requests on the same CONNS connections throughout,
// with no pause around the measured window. A pause lets keep-alive timers close idle connections
// (valgrind takes seconds to toggle instrumentation), and the reconnects and the deoptimisations
// they set off would land in the window.
//
// Protocol (stdout lines, SIGUSR2 from run.sh):
//   WARM requests, then "warm"; requests keep going.
//   SIGUSR2: counting starts (instrumentation is on). After N answers: "enough"; requests keep going.
//   SIGUSR2: counting stops (instrumentation is off); "done COUNTED FAILED" (answers counted, and
//   how many of them were not 2xx), the in-flight requests finish, connections close, exit.
// usage: node keepalive-load.mjs PORT WARM N CONNS PATH   (env LOAD_HEADERS: request headers as
//        JSON, e.g. '{"accept-encoding":"gzip, deflate, br"}', what a browser sends; LOAD_METHOD
//        and LOAD_BODY: a request with a body, e.g. POST and an API client's JSON)
import http from 'node:http';

const [port, warm, n, conns] = process.argv.slice(2, 6).map(Number);
const path = process.argv[6] ?? '/';
const headers = process.env.LOAD_HEADERS ? JSON.parse(process.env.LOAD_HEADERS) : {};
const method = process.env.LOAD_METHOD ?? 'GET';
const body = process.env.LOAD_BODY;
const agent = new http.Agent({ keepAlive: true, maxSockets: conns });

let answered = 0;
let counting = false;
let counted = 0;
let failed = 0;
let stopping = false;
let inFlight = 0;
let onIdle;

function send() {
  if (stopping || answered >= MAX_ANSWERS) return;
  inFlight++;
  const request = http.request({ host: '127.0.0.1', port, path, method, agent, headers }, (res) => {
    res.resume();
    res.on('end', () => {
      inFlight--;
      answered++;
      if (counting) {
        counted++;
        if (res.statusCode < 200 || res.statusCode > 299) failed++;
        if (counted === n) console.log('enough');
      }
      if (answered === warm) console.log('warm');
      if (stopping && inFlight === 0) onIdle?.();
      send();
    });
  });
  request.end(body);
}

let signals = 0;
process.on('SIGUSR2', () => {
  signals++;
  if (signals === 1) {
    counting = true;
    return;
  }
  counting = false;
  stopping = true;
  console.log(`done ${counted} ${failed}`);
  const close = () => {
    agent.destroy();
    process.exit(0);
  };
  if (inFlight === 0) close();
  else onIdle = close;
});

// Bounded whatever run.sh does: at most WARM + 20·N requests, and 30 minutes.
const MAX_ANSWERS = warm + 20 * n;
setTimeout(() => process.exit(2), 30 * 60_000).unref();

for (let i = 0; i < conns; i++) send();
