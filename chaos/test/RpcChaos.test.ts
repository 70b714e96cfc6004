/**
 * The RPC faults of `npm run chaos`, bounded: 2 broker-side connection closes, a 1 s stop_app outage, kill -9 of the
 * node and its restart, under light load (4 callers). Its own private node (it kills it).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { startBroker } from "../src/Broker.js"
import { table } from "../src/Report.js"
import { boundedRpcScale, runRpcFaults } from "../src/RpcFaults.js"

describe("RPC client and server under broker faults", () => {
  it.scopedLive(
    "every request settles with a reply or a typed error, none is lost, both serve again after the broker's return",
    () =>
      Effect.gen(function*() {
        const broker = yield* Effect.acquireRelease(
          Effect.promise(startBroker),
          (broker) => Effect.promise(broker.stop)
        )
        // The connection-lost / reconnected logs of the faults are expected: errors only.
        const rows = yield* runRpcFaults(broker, boundedRpcScale).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
        const failed = rows.filter((row) => row.problems.length > 0)
        assert.strictEqual(failed.length, 0, table(rows))
        // Each phase's rows: the client's and the server's (warm-up, closes, stop_app, kill -9).
        assert.strictEqual(rows.length, 8)
      }),
    240_000
  )
})
