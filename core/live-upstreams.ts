// The upstreams each route sends traffic to right now. A route's config names its upstreams, but a
// plugin may change the set at run time (the balancer's admin API adds and removes them); it
// publishes the live set here, and plugins that act on every upstream (active health checks)
// follow it. One instance per applied config, met through the cross-plugin shared key below.
import type { PluginApi } from './plugin.js';
import type { Upstream } from './types.js';

/** The `api.shared` key; use `liveUpstreams(api)` rather than the key itself. */
export const LIVE_UPSTREAMS = '@upstreams.live';

export type LiveUpstreamsListener = (route: string) => void;

export class LiveUpstreams {
  private readonly sources = new Map<string, () => readonly Upstream[]>();
  private readonly listeners = new Set<LiveUpstreamsListener>();

  /**
   * Publisher: from now on `route`'s upstreams are whatever `current` returns (read on demand, so
   * it is never stale); subscribers hear of it at once.
   */
  publish(route: string, current: () => readonly Upstream[]): void {
    this.sources.set(route, current);
    this.changed(route);
  }

  /** Publisher: `route`'s set may have changed (an upstream added, removed, re-read from the store). */
  changed(route: string): void {
    if (!this.sources.has(route)) return;
    for (const listener of [...this.listeners]) listener(route);
  }

  /** `route`'s upstreams now, or undefined when no plugin publishes them (then the config's are all there is). */
  get(route: string): readonly Upstream[] | undefined {
    return this.sources.get(route)?.();
  }

  /** Subscriber: `listener(route)` after each publish or change; it must not throw. Returns the unsubscribe. */
  subscribe(listener: LiveUpstreamsListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
}

/** This applied config's live upstream sets: the same object for every plugin that asks, whichever asks first. */
export function liveUpstreams(api: Pick<PluginApi, 'shared'>): LiveUpstreams {
  return api.shared(LIVE_UPSTREAMS, () => new LiveUpstreams());
}
