// The resolver plugins use for upstreams found through DNS (`discover`), set up from
// `server.dns`: the servers to ask (else the system's), how long a query waits and how often it is
// sent. Node's own c-ares resolver does the work; nothing here speaks DNS.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { ServerConfig } from './config/schema.js';

export type DnsSettings = NonNullable<ServerConfig['dns']>;

/** A fresh resolver asking `settings.servers` (the system's when unset). */
export function createResolver(settings: Partial<DnsSettings> = {}): Resolver {
  const resolver = new Resolver({ timeout: settings.timeout ?? 2000, tries: settings.tries ?? 2 });
  if (settings.servers && settings.servers.length > 0) resolver.setServers(settings.servers);
  return resolver;
}

/** What is wrong with one `server.dns.servers` entry, or undefined: `ip`, `ip:port` or `[ipv6]:port`. */
export function dnsServerProblem(entry: string): string | undefined {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  let host = entry;
  let port: string | undefined;
  if (bracketed) {
    host = bracketed[1]!;
    port = bracketed[2];
    if (isIP(host) !== 6) return `"${entry}": "${host}" in brackets is not an IPv6 address`;
  } else if (isIP(entry) === 0) {
    const colon = entry.lastIndexOf(':');
    host = colon === -1 ? entry : entry.slice(0, colon);
    port = colon === -1 ? undefined : entry.slice(colon + 1);
    if (isIP(host) !== 4) return `"${entry}" is not an IP address, ip:port or [ipv6]:port (a DNS server is given by address, not by name)`;
  }
  if (port !== undefined && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) return `"${entry}": port "${port}" is not a number from 1 to 65535`;
  return undefined;
}
