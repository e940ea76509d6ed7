// The cache's notion of "now", in epoch milliseconds. Every freshness decision reads it, so a test
// can move time forward (`clock.now = () => …`) instead of sleeping until an entry expires.
export const clock = {
  now: (): number => Date.now(),
};
