// A fake Confluence on 127.0.0.1 under a context path (`/wiki`), checking credentials as Confluence
// does: Basic (user + API token) or Bearer (a Data Center personal access token). Without valid
// ones an attachment download redirects to the login page. Page 303 answers its login page as
// HTML with status 200 (what an SSO front does); page 404 has no attachments.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const USER = 'proxy-bot@example.com';
export const API_TOKEN = 'ATATT3xFfGF0-confluence-api-token-1234';
export const PAT = 'NjM4NzE1OTk5ODc2OpersonalAccessToken42';

export const FILES: Record<string, { type: string; body: Buffer; space: string }> = {
  '101/Quarterly report é ü.pdf': { type: 'application/pdf', body: Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31) & 0xff))]), space: 'DOCS' },
  '101/diagram.png': { type: 'image/png', body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 255, 0, 254]), space: 'DOCS' },
  '202/other.txt': { type: 'text/plain', body: Buffer.from('other space'), space: 'OTHER' },
};

export interface FakeConfluence {
  url: string;
  /** Requests received, with the path as sent (still percent-encoded). */
  readonly seen: { url: string; authorization: string | undefined }[];
  /** Count of attachment downloads of this `<pageId>/<file>`. */
  downloads(file: string): number;
  close(): Promise<void>;
}

export async function startFakeConfluence(): Promise<FakeConfluence> {
  const seen: { url: string; authorization: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization });
    answer(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/wiki`,
    seen,
    downloads: (file) => seen.filter((s) => decodeURIComponent(s.url.split('?')[0]!).endsWith(`/download/attachments/${file}`)).length,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function authorised(req: IncomingMessage): boolean {
  const auth = req.headers.authorization ?? '';
  if (auth === `Bearer ${PAT}`) return true;
  return auth === `Basic ${Buffer.from(`${USER}:${API_TOKEN}`).toString('base64')}`;
}

function answer(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://confluence');
  const path = decodeURIComponent(url.pathname);
  const download = /^\/wiki\/download\/(attachments|thumbnails)\/(\d+)\/(.+)$/.exec(path);
  const rest = /^\/wiki\/rest\/api\/content\/(\d+)$/.exec(path);
  if (!authorised(req)) {
    res.writeHead(302, { location: `http://127.0.0.1/wiki/login.action?os_destination=${encodeURIComponent(url.pathname)}`, 'content-type': 'text/html' });
    return void res.end('<html>moved</html>');
  }
  if (rest) {
    const file = Object.entries(FILES).find(([name]) => name.startsWith(`${rest[1]}/`));
    if (!file) return send(res, 404, 'application/json', '{"statusCode":404}');
    return send(res, 200, 'application/json', JSON.stringify({ id: rest[1], type: 'page', space: { key: file[1].space } }));
  }
  if (!download) return send(res, 200, 'application/json', '{"results":[],"note":"the REST API, which the proxy must never expose"}');
  if (download[2] === '303') return send(res, 200, 'text/html;charset=UTF-8', '<!DOCTYPE html><html><head><title>Log in - Confluence</title></head><body><form id="loginform"></form></body></html>');
  const file = FILES[`${download[2]}/${download[3]}`];
  if (!file) return send(res, 404, 'text/html', '<html>Page not found</html>');
  res.writeHead(200, {
    'content-type': file.type,
    'content-length': file.body.length,
    'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(download[3]!)}`,
  });
  res.end(file.body);
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
