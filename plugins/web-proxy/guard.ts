// The server-side request forgery guard: which hosts and addresses the web proxy may reach.
// Addresses are checked after DNS resolution, inside the socket's own lookup, so a name that
// resolves differently a moment later (DNS rebinding) cannot slip a private address through.
import dns from 'node:dns';
import net from 'node:net';
import { Address4, Address6 } from 'ip-address';

/**
 * True for every address that is not global unicast: loopback, private, link-local (the
 * 169.254.169.254 metadata service), CGNAT, multicast, documentation, benchmarking, reserved and
 * unallocated space. Classified by ip-address against the IANA special-purpose registries, which
 * also unwraps the IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96) and
 * refuses the ones that only reach IPv4 space through a translator or relay whose target we cannot
 * know (IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96, local-use NAT64 64:ff9b:1::/48, 6to4
 * 2002::/16, Teredo). Anything that does not parse counts as private.
 */
export function isPrivateAddress(address: string): boolean {
  const family = net.isIP(address);
  try {
    if (family === 4) return !new Address4(address).isGlobal();
    if (family === 6) return !new Address6(address).isGlobal();
  } catch {
    return true;
  }
  return true;
}

export interface GuardOptions {
  /** Refuse private and loopback addresses (default true). */
  blockPrivate: boolean;
  /** Hosts always allowed, even on a private address (`127.0.0.1`, `*.internal.example`, `10.0.0.5:8080`). */
  allowHosts: readonly string[];
  /** Hosts always refused (same forms). */
  denyHosts: readonly string[];
}

/** One allowHosts/denyHosts entry: a host (or `*.` suffix) in the form hostOf() gives, and maybe a port. */
interface HostPattern {
  readonly host: string;
  readonly wildcard: boolean;
  /** Only this port; undefined: any port. */
  readonly port?: number;
}

export class GuardError extends Error {}

export class Guard {
  private readonly allow: readonly HostPattern[];
  private readonly deny: readonly HostPattern[];

  /** Throws (naming the entry) when an allowHosts or denyHosts entry is not a host, `*.host` or `host:port`. */
  constructor(private readonly options: GuardOptions) {
    this.allow = options.allowHosts.map((entry) => parseHostPattern(entry, 'allowHosts'));
    this.deny = options.denyHosts.map((entry) => parseHostPattern(entry, 'denyHosts'));
  }

  /** Throws GuardError when the URL may not be fetched (scheme, host lists, literal address). */
  checkUrl(url: URL): void {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new GuardError(`the web proxy only fetches http and https URLs, not ${url.protocol}`);
    const host = hostOf(url);
    if (matchesAny(url, this.deny)) throw new GuardError(`host ${url.host} is denied`);
    if (this.allowed(url)) return;
    if (this.options.blockPrivate && net.isIP(host) !== 0 && isPrivateAddress(host)) throw new GuardError(`address ${host} is private or local`);
  }

  /** A `lookup` for http.request that refuses names resolving to a private address. */
  lookupFor(url: URL): net.LookupFunction | undefined {
    if (!this.options.blockPrivate || this.allowed(url)) return undefined;
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
    if (!this.options.blockPrivate || this.allowed(url) || net.isIP(host) !== 0) return;
    const addresses = await dns.promises.lookup(host, { all: true }).catch(() => []);
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad) throw new GuardError(`${host} resolves to a private or local address (${bad.address})`);
  }

  private allowed(url: URL): boolean {
    return matchesAny(url, this.allow);
  }
}

/**
 * The host as the lists compare it: without IPv6 brackets and without the trailing dot of a fully
 * qualified name (`blocked.example.` is `blocked.example`). The URL parser has already lower-cased
 * it and turned an international name into its ASCII (punycode) form.
 */
function hostOf(url: URL): string {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

/**
 * A configured entry in the form hostOf() gives (ASCII, lower case, no trailing dot), by the URL
 * parser: `example.com`, `*.example.com`, `127.0.0.1:8080`, `[::1]:8080`, `::1`. Anything else
 * (a scheme, a path, credentials, a bad port) is refused, naming the entry: an entry that could
 * never match would silently allow or deny nothing.
 */
export function parseHostPattern(entry: string, list = 'allowHosts'): HostPattern {
  const problem = (why: string) => new Error(`${list} entry "${entry}" ${why}; use a host name, *.domain, an address, or host:port`);
  let text = entry.trim();
  const wildcard = text.startsWith('*.');
  if (wildcard) text = text.slice(2);
  if (net.isIP(text) === 6) text = `[${text}]`;
  if (text === '' || /[/?#@\s\\]/.test(text)) throw problem('is not a host');
  let url: URL;
  try {
    url = new URL(`http://${text}`);
  } catch {
    throw problem('is not a host');
  }
  const portText = /:(\d*)$/.exec(text.replace(/^\[[^\]]*\]/, ''))?.[1];
  if (portText !== undefined && !/^\d{1,5}$/.test(portText)) throw problem('has an empty port');
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && (port < 1 || port > 65535)) throw problem('has a port outside 1-65535');
  if (wildcard && net.isIP(hostOf(url)) !== 0) throw problem('puts *. before an address');
  return { host: hostOf(url), wildcard, port };
}

function matchesAny(url: URL, patterns: readonly HostPattern[]): boolean {
  const host = hostOf(url);
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port);
  return patterns.some((p) => (p.wildcard ? host.endsWith(`.${p.host}`) : host === p.host) && (p.port === undefined || p.port === port));
}
