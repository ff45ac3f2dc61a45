// The façade neither answers nor changes tag records (keys under "\0swre:"),
// which the engine refuses with KeyError::Reserved: a stand-in engine holds
// one in the façade's table, and every call with its key must be refused
// with the table left as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { define } from "../package/src/cache.js";

const RECORD = "\u0000swre:tag:users";
const YEAR = 365 * 86_400_000;
let lastTable;

/** A stand-in for the wasm SwrEngine: its memory tier holds a tag record as
 * JsTable::set writes one (a Uint8Array, fresh for a year, untagged); every
 * call with a reserved key is refused, as check_key refuses it. */
class FakeEngine {
  static async open(_options, Table) {
    return new FakeEngine(new Table(100, 1 << 20));
  }
  constructor(table) {
    this.t = lastTable = table;
    const now = Date.now();
    table.write(RECORD, new Uint8Array(24).fill(7), 24, [now, now + YEAR, now + YEAR, now + YEAR, 1, now, 0], undefined);
  }
  table() { return this.t; }
  refreshTimeout() { return 5_000; }
  #refuse() {
    const e = new Error("the key is reserved"); e.kind = "invalidKey";
    return Promise.reject(e);
  }
  get() { return this.#refuse(); }
  getWith() { return this.#refuse(); }
  set() { return this.#refuse(); }
  delete() { return this.#refuse(); }
  expire() { return this.#refuse(); }
  peek() { return this.#refuse(); }
}

const SwrCache = define(() => FakeEngine);

test("get of a reserved key is refused, not answered with the tag record", async () => {
  const cache = await SwrCache.open({});
  const r = await cache.get(RECORD, async () => "x").catch((e) => e);
  assert.ok(r instanceof Error, `answered from the table with status ${r.status}`);
  assert.equal(r.kind, "invalidKey");
});

for (const op of ["delete", "set"]) {
  test(`a refused ${op} of a reserved key leaves the tag record in place`, async () => {
    const cache = await SwrCache.open({});
    const table = lastTable;
    await assert.rejects(op === "delete" ? cache.delete(RECORD) : cache.set(RECORD, "forged"));
    assert.equal(table.read(RECORD, new Float64Array(8)), true, `the tag record was removed by a refused ${op}`);
  });
}

test("a refused expire of a reserved key leaves the tag record's times alone", async () => {
  const cache = await SwrCache.open({});
  const table = lastTable;
  const before = new Float64Array(8);
  table.read(RECORD, before);
  await assert.rejects(cache.expire(RECORD));
  const after = new Float64Array(8);
  table.read(RECORD, after);
  assert.equal(after[1], before[1], "the record's fresh_until was changed by a refused expire");
});
