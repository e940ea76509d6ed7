// The server-side request forgery guard: which hosts and addresses the web proxy may reach.
// Addresses are checked after DNS resolution, inside the socket's own lookup, so a name that
// resolves differently a moment later (DNS rebinding) cannot slip a private address through.
import dns from 'node:dns';
import net, { BlockList } from 'node:net';

const blocked = new BlockList();
for (const [address, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked.addSubnet(address, prefix, 'ipv4');
for (const [address, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) blocked.addSubnet(address, prefix, 'ipv6');
// Cloud metadata services that are not in a private range.
blocked.addAddress('fd00:ec2::254', 'ipv6');

/** True for loopback, private, link-local (169.254.169.254 metadata), CGNAT, multicast and reserved addresses. */
export function isPrivateAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 0) return true;
  if (family === 6) {
    // IPv4-mapped (::ffff:10.0.0.1) is checked as the IPv4 address it carries.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return blocked.check(mapped[1]!, 'ipv4');
    return blocked.check(address, 'ipv6');
  }
  return blocked.check(address, 'ipv4');
}

export interface GuardOptions {
  /** Refuse private and loopback addresses (default true). */
  blockPrivate: boolean;
  /** Hosts always allowed, even on a private address (`127.0.0.1`, `*.internal.example`). */
  allowHosts: readonly string[];
  /** Hosts always refused. */
  denyHosts: readonly string[];
}

export class GuardError extends Error {}

export class Guard {
  constructor(private readonly options: GuardOptions) {}

  /** Throws GuardError when the URL may not be fetched (scheme, host lists, literal address). */
  checkUrl(url: URL): void {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new GuardError(`the web proxy only fetches http and https URLs, not ${url.protocol}`);
    const host = hostOf(url);
    if (matchesAny(host, this.options.denyHosts)) throw new GuardError(`host ${host} is denied`);
    if (this.allowed(host)) return;
    if (this.options.blockPrivate && net.isIP(host) !== 0 && isPrivateAddress(host)) throw new GuardError(`address ${host} is private or local`);
  }

  /** A `lookup` for http.request that refuses names resolving to a private address. */
  lookupFor(url: URL): net.LookupFunction | undefined {
    const host = hostOf(url);
    if (!this.options.blockPrivate || this.allowed(host)) return undefined;
    return ((hostname: string, options: dns.LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void) => {
      dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err, '', 0);
        const bad = addresses.find((a) => isPrivateAddress(a.address));
        if (bad) return callback(Object.assign(new GuardError(`${hostname} resolves to a private or local address (${bad.address})`), { code: 'SY_WEB_PROXY_BLOCKED' }), '', 0);
        if (options.all) return callback(null, addresses);
        callback(null, addresses[0]!.address, addresses[0]!.family);
      });
    }) as net.LookupFunction;
  }

  /** Resolves the name now (for a redirect target) and throws GuardError if it is private. */
  async checkResolved(url: URL): Promise<void> {
    this.checkUrl(url);
    const host = hostOf(url);
    if (!this.options.blockPrivate || this.allowed(host) || net.isIP(host) !== 0) return;
    const addresses = await dns.promises.lookup(host, { all: true }).catch(() => []);
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad) throw new GuardError(`${host} resolves to a private or local address (${bad.address})`);
  }

  private allowed(host: string): boolean {
    return matchesAny(host, this.options.allowHosts);
  }
}

/** The host without IPv6 brackets, lower-cased. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

function matchesAny(host: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => {
    const p = pattern.trim().toLowerCase();
    return p.startsWith('*.') ? host.endsWith(p.slice(1)) : host === p;
  });
}
