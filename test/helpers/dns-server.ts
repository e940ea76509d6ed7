// A small authoritative DNS server on 127.0.0.1 (UDP) that a test controls: it answers A, AAAA
// and SRV questions from records the test sets, can answer SERVFAIL or NXDOMAIN or stay silent,
// and reports every question it gets, so a test waits for the proxy's next lookup instead of
// sleeping. Packets are read and written with dns-packet.
import dgram from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import type { AddressInfo } from 'node:net';
import dnsPacket from 'dns-packet';

export interface SrvTarget {
  target: string;
  port: number;
  weight?: number;
  priority?: number;
}

/** How a name is answered when it has no records set. */
export type Failure = 'SERVFAIL' | 'NXDOMAIN' | 'silent';

export interface DnsQuestion {
  name: string;
  type: string;
  /** What the server did: `answered` (records or an empty NOERROR), or the failure. */
  outcome: 'answered' | Failure;
}

export interface TestDnsServer {
  /** `127.0.0.1:<port>`, the form `server.dns.servers` takes. */
  readonly address: string;
  /** Every question so far, in order. */
  readonly questions: DnsQuestion[];
  /** Emits `question` (a DnsQuestion) after answering (or ignoring) each one. */
  readonly events: EventEmitter;
  /** `name`'s A records from now on (an empty list: NOERROR with no answers); clears a failure. */
  setA(name: string, addresses: readonly string[], ttl?: number): void;
  /** `name`'s AAAA records from now on; clears a failure. */
  setAaaa(name: string, addresses: readonly string[], ttl?: number): void;
  /** `name`'s SRV records from now on; clears a failure. */
  setSrv(name: string, targets: readonly SrvTarget[], ttl?: number): void;
  /** Every question about `name` fails this way until records are set again. */
  fail(name: string, failure: Failure): void;
  /** Resolves with the next question about `name` (of `type`, when given) that the server answered or ignored. */
  nextQuestion(name: string, type?: string): Promise<DnsQuestion>;
  close(): Promise<void>;
}

interface Zone {
  a: { addresses: readonly string[]; ttl: number } | undefined;
  aaaa: { addresses: readonly string[]; ttl: number } | undefined;
  srv: { targets: readonly SrvTarget[]; ttl: number } | undefined;
  failure: Failure | undefined;
}

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 } as const;

export async function startDnsServer(): Promise<TestDnsServer> {
  const socket = dgram.createSocket('udp4');
  const zones = new Map<string, Zone>();
  const questions: DnsQuestion[] = [];
  const events = new EventEmitter();
  const zone = (name: string): Zone => {
    const key = name.toLowerCase();
    let found = zones.get(key);
    if (!found) {
      found = { a: undefined, aaaa: undefined, srv: undefined, failure: undefined };
      zones.set(key, found);
    }
    return found;
  };

  socket.on('message', (message, peer) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return; // not DNS: nothing to answer
    }
    const question = query.questions?.[0];
    if (!question) return;
    const known = zones.get(question.name.toLowerCase());
    const failure = known?.failure ?? (known ? undefined : 'NXDOMAIN');
    const record: DnsQuestion = { name: question.name, type: question.type, outcome: failure ?? 'answered' };
    if (failure !== 'silent') {
      const answers: dnsPacket.Answer[] = [];
      if (!failure && question.type === 'A' && known?.a) {
        for (const address of known.a.addresses) answers.push({ type: 'A', name: question.name, ttl: known.a.ttl, data: address });
      }
      if (!failure && question.type === 'AAAA' && known?.aaaa) {
        for (const address of known.aaaa.addresses) answers.push({ type: 'AAAA', name: question.name, ttl: known.aaaa.ttl, data: address });
      }
      if (!failure && question.type === 'SRV' && known?.srv) {
        for (const t of known.srv.targets) answers.push({ type: 'SRV', name: question.name, ttl: known.srv.ttl, data: { target: t.target, port: t.port, weight: t.weight ?? 1, priority: t.priority ?? 0 } });
      }
      const rcode = failure ? RCODE[failure] : RCODE.NOERROR;
      const reply = dnsPacket.encode({
        type: 'response',
        id: query.id,
        flags: dnsPacket.AUTHORITATIVE_ANSWER | (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED | rcode,
        questions: [question],
        answers,
      });
      socket.send(reply, peer.port, peer.address);
    }
    questions.push(record);
    events.emit('question', record);
  });

  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const { port } = socket.address() as AddressInfo;

  return {
    address: `127.0.0.1:${port}`,
    questions,
    events,
    setA(name, addresses, ttl = 1) {
      const z = zone(name);
      z.a = { addresses, ttl };
      z.failure = undefined;
    },
    setAaaa(name, addresses, ttl = 1) {
      const z = zone(name);
      z.aaaa = { addresses, ttl };
      z.failure = undefined;
    },
    setSrv(name, targets, ttl = 1) {
      const z = zone(name);
      z.srv = { targets, ttl };
      z.failure = undefined;
    },
    fail(name, failure) {
      zone(name).failure = failure;
    },
    nextQuestion(name, type) {
      return new Promise((resolve) => {
        const listener = (q: DnsQuestion) => {
          if (q.name.toLowerCase() !== name.toLowerCase() || (type !== undefined && q.type !== type)) return;
          events.off('question', listener);
          resolve(q);
        };
        events.on('question', listener);
      });
    },
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
