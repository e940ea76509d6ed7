// Health is one flag per upstream, yet several plugins may hold an upstream down at once (health
// checks, a circuit breaker). Each keeps its own holds; an upstream is back only when none holds it.
// (circuit-breaker carries the same helper — plugins do not import each other; see the README for
// the core change that would make it one shared table.)
import type { HealthStatus, Upstream, UpstreamHealth } from '../../core/index.js';

export interface Hold {
  upstream: Upstream;
  reason: string;
}

export class HealthVote {
  /**
   * `holds` should come from api.state so they outlive reloads. Reasons are written as
   * "<source>: <reason>"; the prefix tells whose mark the current one is.
   */
  constructor(
    private readonly health: UpstreamHealth,
    private readonly source: string,
    private readonly holds: Map<string, Hold>,
  ) {
    health.on('change', this.onChange);
  }

  /** Holds the upstream down (again, with a new reason, if it already was). */
  hold(upstream: Upstream, reason: string): void {
    this.holds.set(upstream.id, { upstream, reason });
    this.health.set(upstream, false, `${this.source}: ${reason}`);
  }

  /** Lets go. The upstream comes back unless another plugin holds it (that one then re-marks it). */
  release(upstream: Upstream): void {
    if (!this.holds.delete(upstream.id)) return;
    const status = this.health.get(upstream);
    if (!status.healthy && status.reason?.startsWith(`${this.source}: `)) this.health.set(upstream, true);
  }

  dispose(): void {
    this.health.off('change', this.onChange);
  }

  // Another plugin released an upstream this one still holds: mark it down again, within the same
  // event, so no request can be sent to it in between. Listeners must read the current state.
  private readonly onChange = (upstream: Upstream, _status: HealthStatus): void => {
    const held = this.holds.get(upstream.id);
    if (held && this.health.isHealthy(upstream)) this.health.set(upstream, false, `${this.source}: ${held.reason}`);
  };
}
