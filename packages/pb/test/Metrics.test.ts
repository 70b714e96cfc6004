// A connection's metric counts, gathered per request and recorded once per batch (internal/metrics.ts).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { PbServer } from "@warren/pb"
import { BatchCounts } from "../src/internal/metrics.js"

const requestsOf = (code: number) =>
  Effect.map(Metric.value(Metric.tagged(PbServer.metrics.requests, "code", String(code))), (state) => state.count)

describe("batch counts", () => {
  it.effect("record every request of a batch exactly, whatever the mix of codes, batch after batch", () =>
    Effect.gen(function*() {
      const codes = [251, 252, 253]
      const before = yield* Effect.forEach(codes, requestsOf)
      const latency = (yield* Metric.value(PbServer.metrics.requestDuration)).count
      const counts = new BatchCounts()
      // batch 1: one code only; batch 2: three codes interleaved; batch 3: a code seen before, alone
      for (const batch of [[251, 251, 251], [252, 251, 253, 252, 251, 252], [253]]) {
        counts.startBatch()
        for (const code of batch) counts.request(code)
        counts.record()
      }
      counts.record() // nothing new: records nothing
      const after = yield* Effect.forEach(codes, requestsOf)
      assert.deepStrictEqual(after.map((n, i) => n - before[i]!), [5, 3, 2])
      assert.strictEqual((yield* Metric.value(PbServer.metrics.requestDuration)).count - latency, 3)
    }))
})
