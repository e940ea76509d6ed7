// The real client address. Behind a load balancer the socket's peer is the balancer, so the
// address comes from X-Forwarded-For or X-Real-IP — but only when the peer is a proxy we trust,
// or any client could claim any address (nginx's set_real_ip_from / real_ip_recursive).
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

export type RealIpHeader = 'x-forwarded-for' | 'x-real-ip';

export class ClientIpResolver {
  private readonly trusted: BlockList | undefined;

  /** Throws on an entry that is not an IP address or CIDR range. */
  constructor(trustedProxies: readonly string[], private readonly header: RealIpHeader) {
    if (trustedProxies.length === 0) return;
    this.trusted = new BlockList();
    for (const entry of trustedProxies) addRange(this.trusted, entry);
  }

  resolve(req: IncomingMessage): string {
    const peer = req.socket?.remoteAddress ?? '';
    if (!this.trusted || !this.isTrusted(peer)) return peer;
    const value = req.headers[this.header];
    if (typeof value !== 'string' || value === '') return peer;
    if (this.header === 'x-real-ip') return isIP(value.trim()) ? value.trim() : peer;
    // Walk from the right: each trusted hop appended the address it saw; the first untrusted
    // address is the client. Everything left of it could be made up by that client.
    const hops = value.split(',').map((hop) => hop.trim());
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      if (!isIP(hop)) return peer;
      if (!this.isTrusted(hop)) return hop;
    }
    return hops[0] ?? peer;
  }

  /** True when the request's direct peer is one of server.trustedProxies (false at once when none are configured). */
  trustsPeer(req: IncomingMessage): boolean {
    return this.trusted !== undefined && this.isTrusted(req.socket?.remoteAddress ?? '');
  }

  private isTrusted(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.trusted!.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** Checks a trustedProxies entry; returns a problem or undefined. */
export function checkRange(entry: string): string | undefined {
  try {
    addRange(new BlockList(), entry);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

function addRange(list: BlockList, entry: string): void {
  const [address = '', bits] = entry.split('/');
  const family = isIP(address);
  if (family === 0) throw new Error(`"${entry}" is not an IP address or CIDR range`);
  const max = family === 6 ? 128 : 32;
  const prefix = bits === undefined ? max : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) {
    throw new Error(`"${entry}" has an invalid prefix length (0-${max})`);
  }
  list.addSubnet(address, prefix, family === 6 ? 'ipv6' : 'ipv4');
}
