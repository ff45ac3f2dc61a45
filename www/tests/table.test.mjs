// The JS memory tier against a model: random writes, removes, reads,
// write-backs (touch) and clears under tight limits; after every step each present key holds what
// was last written, the limits hold, and a handle read before an overwrite
// still resolves to its own value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Table } from "../package/src/table.js";

test("the table keeps its limits and the latest values under 100,000 random operations", () => {
  let seed = 7;
  const rnd = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * n);
  };
  for (const [maxEntries, maxBytes] of [[1, 1e6], [3, 1e6], [50, 4_000], [1_000, 20_000], [5, 600]]) {
    const table = new Table(maxEntries, maxBytes);
    const keys = Array.from({ length: maxEntries * 3 + 2 }, (_, i) => `k${i}`);
    const model = new Map(); // key -> { value, charge, meta }
    const meta = new Float64Array(6);
    for (let step = 0; step < 20_000; step++) {
      const key = keys[rnd(keys.length)];
      const op = rnd(20);
      const now = 1_000 + step;
      if (op < 12) {
        const size = 1 + rnd(200);
        const value = { step };
        const m = [now, now + rnd(50), now + 100, now + 100 + rnd(300), rnd(2), now];
        // A handle read before the overwrite must keep resolving to its value.
        const before = table.read(key, meta) ? { id: meta[5], value: table.valueOf(key) } : undefined;
        const ok = table.write(key, value, size, m);
        const charge = key.length + size + 96;
        assert.equal(ok, charge <= maxBytes, `step ${step}: write of ${charge} bytes`);
        if (ok) model.set(key, { value, charge, meta: m });
        else {
          model.delete(key);
          assert.equal(table.valueOf(key), undefined, `step ${step}: a refused write left the older value`);
        }
        if (before !== undefined) assert.equal(table.value(key, before.id), before.value, `step ${step}: a handle lost its value`);
      } else if (op < 16) {
        table.remove(key);
        model.delete(key);
      } else if (op < 18) {
        table.read(key, meta);
      } else if (op < 19) {
        // A write-back of what was read ("not modified"): new times, same value and id.
        const held = table.read(key, meta);
        const id = meta[5];
        const m = [now, now + rnd(50), now + 100, now + 100 + rnd(300), rnd(2), now, 0];
        assert.equal(table.touch(key, id + 1, m), false, `step ${step}: touched through another write's id`);
        assert.equal(table.touch(key, id, m), held, `step ${step}: touch`);
        if (held) {
          model.get(key).meta = m;
          assert.ok(table.read(key, meta));
          assert.equal(meta[5], id, `step ${step}: touch changed the write id`);
        }
      } else if (rnd(20) === 0) {
        table.clear();
        model.clear();
      }
      let present = 0;
      let bytes = 0;
      for (const k of keys) {
        const v = table.valueOf(k);
        const e = model.get(k);
        if (v === undefined) {
          model.delete(k); // evicted
          continue;
        }
        assert.ok(e !== undefined && v === e.value, `step ${step}: ${k} holds a value never written last`);
        assert.ok(table.read(k, meta));
        assert.deepEqual([...meta.slice(0, 5)], [e.meta[0], e.meta[1], e.meta[2], e.meta[3], e.meta[4] ? 1 : 0], `step ${step}: ${k}'s times`);
        present++;
        bytes += e.charge;
      }
      assert.ok(present <= maxEntries, `step ${step}: ${present} entries over ${maxEntries}`);
      assert.ok(bytes <= maxBytes, `step ${step}: ${bytes} bytes over ${maxBytes}`);
      if (op < 12 && model.has(key)) assert.equal(table.valueOf(key), model.get(key).value, "the entry just written was evicted");
    }
  }
});
