// Consistent hashing for sticky balancing: a ring of virtual nodes, so adding or removing one of N
// upstreams moves only about 1/N of the keys, and a down upstream's keys spill to its neighbours.

/** 32-bit FNV-1a, finished with murmur3's avalanche step (plain FNV clusters similar strings). */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export interface RingMember<T> {
  /** Stable identity: the same key always lands on the same points. */
  readonly key: string;
  readonly weight: number;
  readonly value: T;
}

export class HashRing<T> {
  private readonly points: Uint32Array;
  private readonly owners: T[];
  private readonly distinct: number;

  /** `replicas` virtual nodes for a member of average weight; heavier members get more. */
  constructor(members: readonly RingMember<T>[], replicas = 160) {
    const mean = members.reduce((sum, m) => sum + m.weight, 0) / (members.length || 1);
    const entries: { point: number; owner: T }[] = [];
    for (const member of members) {
      const count = Math.max(1, Math.round((replicas * member.weight) / mean));
      for (let i = 0; i < count; i++) entries.push({ point: hash32(`${member.key}#${i}`), owner: member.value });
    }
    entries.sort((a, b) => a.point - b.point);
    this.points = Uint32Array.from(entries, (e) => e.point);
    this.owners = entries.map((e) => e.owner);
    this.distinct = members.length;
  }

  get size(): number {
    return this.distinct;
  }

  /**
   * The owner of `key`: the first point clockwise from the key's hash whose owner `accept`s
   * (an unhealthy or already tried upstream is passed over, so only its keys move).
   */
  lookup(key: string, accept?: (owner: T) => boolean): T | undefined {
    const { points, owners } = this;
    if (points.length === 0) return undefined;
    const h = hash32(key);
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    for (let step = 0; step < points.length; step++) {
      const owner = owners[(lo + step) % points.length]!;
      if (!accept || accept(owner)) return owner;
    }
    return undefined;
  }
}
