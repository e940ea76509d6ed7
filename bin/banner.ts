// What `switchyard start` shows a person at a terminal once it listens: where to send requests,
// what each route does, where the admin routes are and whether they can be used, where state goes.
import type { RunningSummary } from '../core/server.js';

export function startBanner(summary: RunningSummary): string {
  const lines = [`switchyard listening on ${summary.url}`, ''];
  const width = Math.max(...summary.routes.map((route) => route.name.length));
  for (const route of summary.routes) {
    lines.push(`  route ${route.name.padEnd(width)}  ${route.match || 'every request'}  →  ${route.upstreams.join(', ')}`);
    if (route.plugins.length > 0) lines.push(`  ${' '.repeat(width + 8)}plugins: ${route.plugins.join(', ')}`);
  }
  if (summary.globalPlugins.length > 0) lines.push(`  plugins on every route: ${summary.globalPlugins.join(', ')}`);
  const base = summary.adminUrl ?? summary.url;
  const open = briefly(summary.admin.paths.filter((path) => path.public).map((path) => path.path));
  const guarded = briefly(summary.admin.paths.filter((path) => !path.public).map((path) => path.path));
  lines.push('', `  admin ${base}: ${open.join(', ')} (public)`);
  if (guarded.length > 0) {
    const key = summary.admin.keySet
      ? 'need the admin key (X-API-Key or Authorization: Bearer)'
      : `refuse: no admin key is set (set ${summary.admin.keyVariable})`;
    lines.push(`        ${guarded.join(', ')} ${key}`);
  }
  lines.push(`  store  ${summary.store}`);
  if (summary.configFile !== undefined) lines.push(`  config ${summary.configFile}${summary.watching ? ' (watched: saved changes apply live)' : ' (not watched; SIGHUP reloads it)'}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Admin paths as a person wants them listed: a page's files (`/console/uplot.js`) are not listed
 * beside the page, and three or more paths in one folder (`/console/api/…`) become `folder/*`.
 */
function briefly(paths: string[]): string[] {
  const pages = [...new Set(paths)].filter((path) => !/\.[a-z]+$/.test(path));
  const byFolder = new Map<string, number>();
  for (const path of pages) {
    const folder = path.slice(0, path.lastIndexOf('/'));
    if (folder !== '') byFolder.set(folder, (byFolder.get(folder) ?? 0) + 1);
  }
  const listed = pages.map((path) => {
    const folder = path.slice(0, path.lastIndexOf('/'));
    return (byFolder.get(folder) ?? 0) >= 3 ? `${folder}/*` : path;
  });
  return [...new Set(listed)];
}
