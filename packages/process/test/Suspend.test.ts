import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { Suspend } from "@warren/process"

/** A waiting point that fibers suspend in, woken one resume at a time (like a connection's or mailbox's wait). */
const wakeable = <A, E = never>() => {
  const waiting: Array<(effect: Effect.Effect<A, E>) => void> = []
  let registrations = 0
  const wait = Suspend.make<A, E>((resume) => {
    registrations++
    waiting.push(resume)
  })
  return {
    wait,
    registrations: () => registrations,
    waiting: () => waiting.length,
    wake: (effect: Effect.Effect<A, E>) => waiting.shift()!(effect)
  }
}

describe("Suspend", () => {
  it("builds Effect's own Async step on the Effect version the project uses (no silent fallback)", () => {
    // If an Effect release changes its primitives, `make` falls back to Effect.async: correct, but slower on
    // every wait of every process and PB connection. This test makes that change visible.
    assert.isTrue(Suspend.isNative)
  })

  it.effect("one instance serves many waits: register runs each time a fiber reaches it, with that fiber's callback", () =>
    Effect.gen(function*() {
      const point = wakeable<number>()
      assert.strictEqual(point.registrations(), 0)
      const first = yield* Effect.fork(point.wait)
      const second = yield* Effect.fork(point.wait)
      yield* Effect.yieldNow()
      assert.strictEqual(point.registrations(), 2)
      point.wake(Exit.succeed(1))
      point.wake(Effect.succeed(2))
      assert.strictEqual(yield* Fiber.join(first), 1)
      assert.strictEqual(yield* Fiber.join(second), 2)
      // the same fiber again, in a loop: one registration per wait
      const looping = yield* Effect.fork(Effect.all([point.wait, point.wait, point.wait]))
      for (let i = 0; i < 3; i++) {
        yield* Effect.yieldNow()
        point.wake(Exit.succeed(i))
      }
      assert.deepStrictEqual(yield* Fiber.join(looping), [0, 1, 2])
      assert.strictEqual(point.registrations(), 5)
    }))

  it.effect("resumes with a failure or with an Effect that still has to run", () =>
    Effect.gen(function*() {
      const point = wakeable<string, string>()
      const failing = yield* Effect.fork(point.wait)
      const computing = yield* Effect.fork(point.wait)
      yield* Effect.yieldNow()
      point.wake(Effect.fail("refused"))
      point.wake(Effect.map(Effect.sync(() => "com"), (s) => `${s}puted`))
      assert.deepStrictEqual(yield* Fiber.await(failing), Exit.fail("refused"))
      assert.strictEqual(yield* Fiber.join(computing), "computed")
    }))

  it.effect("a resume inside register continues the fiber, and only the first call of a callback counts", () =>
    Effect.gen(function*() {
      const at = Suspend.make<string>((resume) => {
        resume(Exit.succeed("at once"))
        resume(Exit.succeed("again"))
      })
      assert.strictEqual(yield* at, "at once")
    }))

  it.effect("a fiber waiting in it can be interrupted; a later resume is ignored", () =>
    Effect.gen(function*() {
      const point = wakeable<number>()
      const fiber = yield* Effect.fork(point.wait)
      yield* Effect.yieldNow()
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      point.wake(Exit.succeed(1))
      // the point still works for the next fiber
      const next = yield* Effect.fork(point.wait)
      yield* Effect.yieldNow()
      point.wake(Exit.succeed(2))
      assert.strictEqual(yield* Fiber.join(next), 2)
    }))
})
