/**
 * The PB faults of `npm run chaos`, bounded: against a `warren pb serve` process with a canary connection.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { boundedPbScale, runPbFaults } from "../src/PbFaults.js"
import { table } from "../src/Report.js"

describe("warren pb serve under hostile clients", () => {
  it.live(
    "never exits, the canary never fails, no defect reply, RSS and fds come back to their baseline",
    () =>
      Effect.gen(function*() {
        const rows = yield* Effect.promise(() => runPbFaults(boundedPbScale))
        const failed = rows.filter((row) => row.problems.length > 0)
        assert.strictEqual(failed.length, 0, table(rows))
        // Seven faults and the canary.
        assert.strictEqual(rows.length, 8)
      }),
    240_000
  )
})
