// The connections' scheduler (@warren/process's EagerScheduler as the listener configures it): a wake-up from
// outside any task runs at once, in the caller, also when a fiber of another scheduler wakes it; one from inside a
// running task waits behind it; a long run of tasks yields to the event loop.
import { assert, describe, it } from "@effect/vitest"
import { EagerScheduler } from "@warren/process"
import { Effect } from "effect"

const makeEagerScheduler = () => EagerScheduler.make({ nestUnderFibers: true })

describe("eager scheduler", () => {
  it("runs a task scheduled from outside at once, in the caller", () => {
    const scheduler = makeEagerScheduler()
    const ran: Array<string> = []
    scheduler.scheduleTask(() => ran.push("a"), 0)
    assert.deepStrictEqual(ran, ["a"])
    scheduler.scheduleTask(() => ran.push("b"), 0)
    assert.deepStrictEqual(ran, ["a", "b"])
  })

  it("queues a task scheduled by a running task behind it, and runs it before returning", () => {
    const scheduler = makeEagerScheduler()
    const ran: Array<string> = []
    scheduler.scheduleTask(() => {
      ran.push("outer start")
      scheduler.scheduleTask(() => {
        ran.push("inner")
        scheduler.scheduleTask(() => ran.push("innermost"), 0)
      }, 0)
      ran.push("outer end")
    }, 0)
    assert.deepStrictEqual(ran, ["outer start", "outer end", "inner", "innermost"])
  })

  it("after a long run of tasks, the rest waits for the next turn of the event loop", async () => {
    const scheduler = makeEagerScheduler()
    let ran = 0
    scheduler.scheduleTask(() => {
      for (let i = 0; i < 1000; i++) scheduler.scheduleTask(() => ran++, 0)
    }, 0)
    assert.isAbove(ran, 0)
    assert.isBelow(ran, 1000)
    // a task scheduled meanwhile from outside waits behind the deferred ones (order kept)
    let late = -1
    scheduler.scheduleTask(() => {
      late = ran
    }, 0)
    assert.strictEqual(late, -1)
    while (late < 0) await new Promise((resolve) => setImmediate(resolve))
    assert.strictEqual(ran, 1000)
    assert.strictEqual(late, 1000)
  })

  it("a task that throws leaves the scheduler usable", () => {
    const scheduler = makeEagerScheduler()
    assert.throws(() =>
      scheduler.scheduleTask(() => {
        throw new Error("boom")
      }, 0)
    )
    const ran: Array<string> = []
    scheduler.scheduleTask(() => ran.push("after"), 0)
    assert.deepStrictEqual(ran, ["after"])
  })

  it("a wake-up from a fiber of another scheduler runs at once, nested in that fiber's step", () => {
    const scheduler = makeEagerScheduler()
    const ran: Array<string> = []
    Effect.runSync(Effect.sync(() => {
      scheduler.scheduleTask(() => ran.push("task"), 0)
      ran.push("fiber goes on")
    }))
    assert.deepStrictEqual(ran, ["task", "fiber goes on"])
  })
})
