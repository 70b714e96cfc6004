import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Scope, TestClock } from "effect"
import { Deadlines } from "@warren/process"

/** Run the forked fibers until they are all suspended. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

describe("Deadlines", () => {
  it.scoped("timers fire at their deadline, in order, each list independently", () =>
    Effect.gen(function*() {
      const deadlines = yield* Deadlines.make
      const fired: Array<string> = []
      yield* Deadlines.arm(deadlines, "1 second", () => fired.push("a 1s"))
      yield* Deadlines.arm(deadlines, "300 millis", () => fired.push("b 300ms"))
      yield* TestClock.adjust("200 millis")
      yield* Deadlines.arm(deadlines, "1 second", () => fired.push("c 1s"))
      yield* settle
      assert.strictEqual(Deadlines.size(deadlines), 3)
      yield* TestClock.adjust("99 millis")
      yield* settle
      assert.deepStrictEqual(fired, [])
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.deepStrictEqual(fired, ["b 300ms"])
      yield* TestClock.adjust("700 millis")
      yield* settle
      assert.deepStrictEqual(fired, ["b 300ms", "a 1s"])
      yield* TestClock.adjust("199 millis")
      yield* settle
      assert.deepStrictEqual(fired, ["b 300ms", "a 1s"])
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.deepStrictEqual(fired, ["b 300ms", "a 1s", "c 1s"])
      assert.strictEqual(Deadlines.size(deadlines), 0)
    }))

  it.scoped("a cancelled timer never fires; cancel says whether it was still armed", () =>
    Effect.gen(function*() {
      const deadlines = yield* Deadlines.make
      const fired: Array<string> = []
      const a = yield* Deadlines.arm(deadlines, "1 second", () => fired.push("a"))
      const b = yield* Deadlines.arm(deadlines, "1 second", () => fired.push("b"))
      const c = yield* Deadlines.arm(deadlines, "1 second", () => fired.push("c"))
      assert.isTrue(yield* Deadlines.cancel(b))
      assert.isFalse(yield* Deadlines.cancel(b))
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(fired, ["a", "c"])
      assert.isFalse(Deadlines.unsafeCancel(a))
      assert.isFalse(Deadlines.unsafeCancel(c))
    }))

  it.scoped("an infinite timeout never fires", () =>
    Effect.gen(function*() {
      const deadlines = yield* Deadlines.make
      let fired = false
      const timer = Deadlines.unsafeArm(deadlines, Duration.infinity, () => {
        fired = true
      })
      yield* TestClock.adjust("3650 days")
      yield* settle
      assert.isFalse(fired)
      assert.isFalse(Deadlines.unsafeCancel(timer))
    }))

  it.effect("closing the Scope stops the timer fibers: armed timers never fire", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const deadlines = yield* Scope.extend(Deadlines.make, scope)
      let fired = false
      yield* Deadlines.arm(deadlines, "1 second", () => {
        fired = true
      })
      yield* settle
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("2 seconds")
      yield* settle
      assert.isFalse(fired)
    }))

  it.scoped("many distinct timeouts each fire on time", () =>
    Effect.gen(function*() {
      const deadlines = yield* Deadlines.make
      const fired: Array<number> = []
      for (let ms = 20; ms >= 1; ms--) yield* Deadlines.arm(deadlines, Duration.millis(ms * 10), () => fired.push(ms))
      for (let ms = 1; ms <= 20; ms++) {
        yield* TestClock.adjust("10 millis")
        yield* settle
        assert.deepStrictEqual(fired.at(-1), ms)
      }
      assert.strictEqual(fired.length, 20)
    }))
})
