/**
 * The KV durability checks of `npm run chaos`: acknowledged writes across SIGTERM and SIGKILL of `warren pb serve
 * --data-file F`, under WARREN_KV_SYNC=always and interval, and a log whose tail was cut.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { boundedKvScale, runKvFaults } from "../src/KvFaults.js"
import { table } from "../src/Report.js"

describe("KV writes across process deaths", () => {
  it.live(
    "acknowledged writes survive SIGTERM; SIGKILL loses none under always, at most the last interval under interval; a torn tail loads",
    () =>
      Effect.gen(function*() {
        const rows = yield* Effect.promise(() => runKvFaults(boundedKvScale))
        const failed = rows.filter((row) => row.problems.length > 0)
        assert.strictEqual(failed.length, 0, table(rows))
        assert.strictEqual(rows.length, 6)
      }),
    240_000
  )
})
