// Watches the config file and every custom plugin file. chokidar's awaitWriteFinish holds events
// until a file stopped growing, so a half-written file is never loaded; a short debounce folds the
// bursts editors produce (write, rename, chmod) into one reload.
import { createRequire } from 'node:module';
import type { FSWatcher } from 'chokidar';

// Loaded on first use: a process started with --no-watch and no TLS files to follow never needs it.
const chokidar = (): typeof import('chokidar') => createRequire(import.meta.url)('chokidar') as typeof import('chokidar');

export class ConfigWatcher {
  private readonly watcher: FSWatcher;
  private watched = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(files: readonly string[], private readonly onChange: (file: string) => void, private readonly debounceMs = 100) {
    this.watcher = chokidar().watch([...files], {
      ignoreInitial: true,
      awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 25 },
    });
    this.watched = new Set(files);
    this.watcher.on('all', (event, file) => {
      if (event === 'unlink' || event === 'unlinkDir') return; // a rename-into-place writes it again
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.onChange(file), this.debounceMs);
    });
  }

  /** Resolves once the initial scan is done, so changes from now on are seen. */
  ready(): Promise<void> {
    return new Promise((resolve) => this.watcher.once('ready', () => resolve()));
  }

  /** Follows the new set of files after a reload (plugins added or removed). */
  update(files: readonly string[]): void {
    const next = new Set(files);
    const gone = [...this.watched].filter((f) => !next.has(f));
    const added = [...next].filter((f) => !this.watched.has(f));
    if (gone.length > 0) this.watcher.unwatch(gone);
    if (added.length > 0) this.watcher.add(added);
    this.watched = next;
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    await this.watcher.close();
  }
}
