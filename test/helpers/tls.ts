// Real certificates for TLS tests, made with the openssl command: a test CA and leaf certificates
// for 127.0.0.1 signed by it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missing } from './tools.js';

/** Undefined when openssl is there; otherwise the reason to skip the TLS tests (see tools.ts). */
export const noOpenssl: string | undefined = missing('openssl');

export interface TestCa {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: string;
  /**
   * Writes a fresh key and certificate to the given file names; returns the serial. The
   * certificate is for 127.0.0.1 and localhost unless `altNames` says otherwise (`DNS:a.test`).
   */
  issue(certFile: string, keyFile: string, commonName?: string, altNames?: readonly string[]): string;
}

function openssl(args: string[], cwd: string): string {
  return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function createTestCa(): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Switchyard Test CA'], dir);

  let serial = 1000;
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    issue(certFile, keyFile, commonName = 'localhost', altNames = ['IP:127.0.0.1', 'DNS:localhost']) {
      serial++;
      writeFileSync(join(dir, 'leaf.ext'), `subjectAltName=${altNames.join(',')}\n`);
      openssl(['req', ...ec, '-keyout', keyFile, '-out', 'leaf.csr', '-subj', `/CN=${commonName}`], dir);
      openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(serial), '-out', certFile, '-days', '2', '-extfile', 'leaf.ext'], dir);
      return serial.toString(16).toUpperCase().padStart(4, '0');
    },
  };
}
