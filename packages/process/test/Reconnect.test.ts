import { assert, describe, it } from "@effect/vitest"
import { Reconnect } from "@warren/process"
import { Duration, Effect, Option } from "effect"

const delays = (backoff: Reconnect.Backoff<string>, n: number) =>
  Effect.forEach(Array.from({ length: n }, (_, i) => i), () =>
    Effect.map(backoff.next("failed"), Option.map(Duration.toMillis)))

describe("Reconnect", () => {
  it.effect("the default grows from ~100 ms, is jittered, and never waits more than 2 s, however long the outage", () =>
    Effect.gen(function*() {
      const backoff = Reconnect.make(Reconnect.defaultPolicy)
      const waits = (yield* delays(backoff, 200)).map(Option.getOrThrow)
      assert.isTrue(waits[0]! >= 80 && waits[0]! <= 120, `first wait ${waits[0]}`)
      assert.isTrue(waits[1]! > waits[0]!)
      assert.isTrue(waits.every((w) => w <= 2000), `max ${Math.max(...waits)}`)
      // Capped and jittered: late waits sit between 80 % of the cap and the cap, and are not all equal.
      const late = waits.slice(50)
      assert.isTrue(late.every((w) => w >= 1600))
      assert.isTrue(new Set(late).size > 1)
    }))

  it.effect("reset restarts the policy from its first delay", () =>
    Effect.gen(function*() {
      const backoff = Reconnect.make(Reconnect.exponential({ jitter: false, base: "10 millis", max: "1 second" }))
      assert.deepStrictEqual((yield* delays(backoff, 3)).map(Option.getOrThrow), [10, 20, 40])
      yield* backoff.reset
      assert.deepStrictEqual((yield* delays(backoff, 2)).map(Option.getOrThrow), [10, 20])
    }))

  it.effect("fromDelays repeats its last delay; limit gives up after n retries", () =>
    Effect.gen(function*() {
      const hare = Reconnect.make(Reconnect.hareDefault)
      assert.deepStrictEqual((yield* delays(hare, 7)).map(Option.getOrThrow), [0, 10, 100, 1000, 5000, 5000, 5000])
      const limited = Reconnect.make(Reconnect.limit(Reconnect.fromDelays(["1 second"]), 2))
      const steps = yield* delays(limited, 3)
      assert.deepStrictEqual(steps.map(Option.isSome), [true, true, false])
    }))
})
