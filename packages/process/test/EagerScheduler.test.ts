import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, TestClock } from "effect"
import type * as Scheduler from "effect/Scheduler"
import { EagerScheduler, Process } from "@warren/process"

/** A process that logs every cast, and keeps callers of "wait" until a cast "answer". */
const logger = (name: string, log: Array<string>, waiting: Deferred.Deferred<void> | undefined = undefined) => {
  const behaviour: Process.Behaviour<
    void,
    ReadonlyArray<Process.From<string>>,
    "wait",
    string,
    string,
    never,
    never,
    never
  > = {
    init: () => Process.ok([]),
    handleCall: (_request, from, kept) => {
      log.push(`${name}: call`)
      if (waiting !== undefined) Deferred.unsafeDone(waiting, Exit.void)
      return Process.noreply([...kept, from])
    },
    handleCast: (message, kept) => {
      log.push(`${name}: ${message}`)
      if (message === "answer") {
        for (const from of kept) Process.unsafeReplyTo(from, "answered")
        return Process.noreply([])
      }
      return Process.noreply(kept)
    }
  }
  return behaviour
}

/** An eager `logger` process that completes `calls[i]` when it handles its i-th call (two calls). */
const startSignalling = () =>
  Effect.gen(function*() {
    const calls: Array<Deferred.Deferred<void>> = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
    const behaviour = logger("p", [])
    let n = 0
    const ref = yield* Process.start(
      {
        ...behaviour,
        handleCall: (request, from, kept, self) => {
          Deferred.unsafeDone(calls[n++]!, Exit.void)
          return behaviour.handleCall!(request, from, kept, self)
        }
      },
      undefined,
      { scheduler: EagerScheduler.make() }
    )
    return { calls, ref }
  })

/** Runs `f` in a plain Node callback (no fiber around it) and returns what it returns. */
const inCallback = <A>(f: () => A): Effect.Effect<A> =>
  Effect.promise(() => new Promise<A>((resolve) => setImmediate(() => resolve(f()))))

describe("EagerScheduler", () => {
  it.scopedLive("a process woken from a Node callback handles the message before the callback returns", () =>
    Effect.gen(function*() {
      const eagerLog: Array<string> = []
      const eager = yield* Process.start(logger("eager", eagerLog), undefined, { scheduler: EagerScheduler.make() })
      const defaultLog: Array<string> = []
      const lazy = yield* Process.start(logger("default", defaultLog), undefined)
      const seen = yield* inCallback(() => {
        Process.unsafeCast(eager, "a")
        Process.unsafeCast(eager, "b")
        Process.unsafeCast(lazy, "a")
        return { eager: [...eagerLog], lazy: [...defaultLog] }
      })
      assert.deepStrictEqual(seen.eager, ["eager: a", "eager: b"])
      // Effect's default scheduler runs the process a microtask later.
      assert.deepStrictEqual(seen.lazy, [])
    }))

  it.scopedLive("coalesce: the fibers woken by one callback run right after it, before promise continuations", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const ref = yield* Process.start(logger("p", log), undefined, {
        scheduler: EagerScheduler.make({ coalesce: true })
      })
      const seen = yield* Effect.promise(() =>
        new Promise<{ inside: number; tick: number; microtask: number }>((resolve) =>
          setImmediate(() => {
            const result = { inside: -1, tick: -1, microtask: -1 }
            Process.unsafeCast(ref, "a")
            Process.unsafeCast(ref, "b")
            Process.unsafeCast(ref, "c")
            result.inside = log.length
            // Queued after the scheduler's own tick: runs after the process handled all three.
            process.nextTick(() => {
              result.tick = log.length
            })
            void Promise.resolve().then(() => {
              result.microtask = log.length
              resolve(result)
            })
          })
        )
      )
      assert.deepStrictEqual(seen, { inside: 0, tick: 3, microtask: 3 })
      assert.deepStrictEqual(log, ["p: a", "p: b", "p: c"])
    }))

  it.scopedLive("fibers on one scheduler queue; one woken by another scheduler's fiber runs a tick later", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const scheduler = EagerScheduler.make()
      const b = yield* Process.start(logger("b", log), undefined, { scheduler })
      const relay: Process.Behaviour<void, void, never, never, string, never, never, never> = {
        init: () => Process.ok(undefined),
        handleCast: (message) => {
          log.push(`a: ${message} start`)
          Process.unsafeCast(b, message)
          log.push(`a: ${message} end`)
          return Process.noreply(undefined)
        }
      }
      const a = yield* Process.start(relay, undefined, { scheduler })
      // A process on another eager scheduler, woken by a fiber of this one: never nested in that fiber's step.
      const c = yield* Process.start(logger("c", log), undefined, { scheduler: EagerScheduler.make() })
      const relayToC: Process.Behaviour<void, void, never, never, string, never, never, never> = {
        init: () => Process.ok(undefined),
        handleCast: (message) => {
          log.push(`d: ${message} start`)
          Process.unsafeCast(c, message)
          log.push(`d: ${message} end`)
          return Process.noreply(undefined)
        }
      }
      const d = yield* Process.start(relayToC, undefined, { scheduler })
      const inside = yield* inCallback(() => {
        Process.unsafeCast(a, "x")
        Process.unsafeCast(d, "y")
        return [...log]
      })
      assert.deepStrictEqual(inside, ["a: x start", "a: x end", "b: x", "d: y start", "d: y end"])
      assert.deepStrictEqual(log, ["a: x start", "a: x end", "b: x", "d: y start", "d: y end", "c: y"])
    }))

  it.live("runs at most `batch` tasks in a row, the rest after setImmediate, in order", () =>
    Effect.gen(function*() {
      const scheduler: Scheduler.Scheduler = EagerScheduler.make({ batch: 3 })
      const ran: Array<number> = []
      const seen = yield* inCallback(() => {
        scheduler.scheduleTask(() => {
          ran.push(0)
          for (let i = 1; i <= 5; i++) scheduler.scheduleTask(() => ran.push(i), 0)
        }, 0)
        return [...ran]
      })
      assert.deepStrictEqual(seen, [0, 1, 2])
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      assert.deepStrictEqual(ran, [0, 1, 2, 3, 4, 5])
    }))

  it.scopedLive("a caller answered by an eager process resumes in the process's run, not a microtask later", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const waiting = yield* Deferred.make<void>()
      const ref = yield* Process.start(logger("p", log, waiting), undefined, { scheduler: EagerScheduler.make() })
      const caller = yield* Effect.fork(
        Effect.flatMap(Process.call(ref, "wait"), (reply) => Effect.sync(() => log.push(`caller: ${reply}`)))
      )
      yield* Deferred.await(waiting)
      const seen = yield* inCallback(() => {
        Process.unsafeCast(ref, "answer")
        return [...log]
      })
      assert.deepStrictEqual(seen, ["p: call", "p: answer", "caller: answered"])
      yield* Fiber.join(caller)
    }))

  it.scopedLive("a caller answered by a process on the default scheduler resumes a microtask later", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const waiting = yield* Deferred.make<void>()
      const ref = yield* Process.start(logger("p", log, waiting), undefined)
      const caller = yield* Effect.fork(
        Effect.flatMap(Process.call(ref, "wait"), (reply) => Effect.sync(() => log.push(`caller: ${reply}`)))
      )
      yield* Deferred.await(waiting)
      const seen = yield* inCallback(() => {
        Process.unsafeCast(ref, "answer")
        return [...log]
      })
      assert.deepStrictEqual(seen, ["p: call"])
      yield* Fiber.join(caller)
      assert.deepStrictEqual(log, ["p: call", "p: answer", "caller: answered"])
    }))

  it.scoped("calls to an eager process still time out, and the late answer is dropped", () =>
    Effect.gen(function*() {
      const { calls, ref } = yield* startSignalling()
      const caller = yield* Effect.fork(Process.call(ref, "wait", { timeout: "1 second" }))
      yield* Deferred.await(calls[0]!)
      yield* TestClock.adjust(Duration.seconds(1))
      const exit = yield* Fiber.await(caller)
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        assert.strictEqual(error?._tag, "CallTimeout")
      }
      // The late answer goes nowhere; the process serves the next caller.
      yield* Process.cast(ref, "answer")
      const next = yield* Process.call(ref, "wait", { timeout: "1 second" }).pipe(Effect.fork)
      yield* Deferred.await(calls[1]!)
      yield* Process.cast(ref, "answer")
      assert.strictEqual(yield* Fiber.join(next), "answered")
    }))

  it.scopedLive("an interrupted caller of an eager process is abandoned", () =>
    Effect.gen(function*() {
      const { calls, ref } = yield* startSignalling()
      const caller = yield* Effect.fork(Process.call(ref, "wait"))
      yield* Deferred.await(calls[0]!)
      yield* Fiber.interrupt(caller)
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(caller)))
      // Answering the abandoned caller is a no-op; the process serves the next caller.
      const next = yield* Effect.fork(Process.call(ref, "wait"))
      yield* Deferred.await(calls[1]!)
      yield* Process.cast(ref, "answer")
      assert.strictEqual(yield* Fiber.join(next), "answered")
    }))

  it.scopedLive("a caller looping on an eager process (one scheduler) does not keep timers waiting", () =>
    Effect.gen(function*() {
      const scheduler = EagerScheduler.make()
      const echo: Process.Behaviour<void, number, "ping", number, never, never, never, never> = {
        init: () => Process.ok(0),
        handleCall: (_request, _from, n) => Process.reply(n + 1, n + 1)
      }
      const ref = yield* Process.start(echo, undefined, { scheduler })
      let stop = false
      let calls = 0
      const caller = yield* Effect.gen(function*() {
        while (!stop) {
          yield* Process.call(ref, "ping")
          calls++
        }
      }).pipe(Effect.withScheduler(scheduler), Effect.fork)
      // Both fibers hand work to each other at once; a timer still gets its turn.
      yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 5)))
      stop = true
      yield* Fiber.join(caller)
      assert.isAbove(calls, 0)
      const info = yield* Process.info(ref)
      assert.strictEqual(info.handled, calls)
    }))

  it.scopedLive("a fiber on the default scheduler calling an eager process that answers at once still yields", () =>
    Effect.gen(function*() {
      const echo: Process.Behaviour<void, number, "ping", number, never, never, never, never> = {
        init: () => Process.ok(0),
        handleCall: (_request, _from, n) => Process.reply(n + 1, n + 1)
      }
      const ref = yield* Process.start(echo, undefined, { scheduler: EagerScheduler.make() })
      let stop = false
      let calls = 0
      const caller = yield* Effect.gen(function*() {
        while (!stop) {
          yield* Process.call(ref, "ping")
          calls++
        }
      }).pipe(Effect.fork)
      // Were the process run inside the caller's call, the caller would be resumed synchronously for ever.
      yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 5)))
      stop = true
      yield* Fiber.join(caller)
      assert.isAbove(calls, 0)
    }))

  it("rejects a batch that is not a positive integer", () => {
    assert.throws(() => EagerScheduler.make({ batch: 0 }), RangeError)
    assert.throws(() => EagerScheduler.make({ batch: 1.5 }), RangeError)
  })
})
