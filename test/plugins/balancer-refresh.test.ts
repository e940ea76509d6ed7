// The balancer reads runtime upstream changes back from the store every refreshInterval, so
// instances sharing a store follow each other. A read that was on its way while this instance
// wrote a change of its own must not put the older table back over it.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { admin, fleetConfig, many, startFleet, tally, type Fleet } from '../helpers/fleet.js';
import { startSwitchyard } from '../helpers/servers.js';

let fleet: Fleet;
before(async () => {
  fleet = await startFleet(['a', 'b']);
});
after(() => fleet.close());

test('a disconnect takes effect at once, even while the store is being read back every millisecond', async () => {
  const store = `sqlite://${join(mkdtempSync(join(tmpdir(), 'switchyard-refresh-')), 'store.sqlite')}`;
  const sy = await startSwitchyard(fleetConfig(fleet, [{ name: 'balancer', options: { refreshInterval: 1 } }], { server: { store } }));
  try {
    // Each round flips `a` off and on again; a refresh that lands a stale table makes `a` serve while off.
    for (let round = 0; round < 15; round++) {
      assert.equal((await admin(sy.url, 'POST', '/upstream/main/a/disconnect')).status, 200);
      assert.deepEqual(tally(await many(sy.url, 6)), { b: 6 }, `round ${round}: a is disconnected`);
      assert.equal((await admin(sy.url, 'PATCH', '/upstream/main/a', { active: true })).status, 200);
      assert.deepEqual(tally(await many(sy.url, 6)), { a: 3, b: 3 }, `round ${round}: a is back`);
    }
  } finally {
    await sy.stop();
  }
});
