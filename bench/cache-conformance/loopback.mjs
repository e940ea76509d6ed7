// Preloaded into the suite's origin server (node --import): its server.listen(port) would take
// every interface; the harness keeps it on 127.0.0.1.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const portOnly = (typeof args[0] === 'number' || typeof args[0] === 'string') && typeof args[1] !== 'string';
  if (portOnly) args.splice(1, 0, '127.0.0.1');
  return listen.apply(this, args);
};
