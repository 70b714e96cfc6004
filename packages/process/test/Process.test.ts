import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Option, Scope, TestClock } from "effect"
import { Process } from "@warren/process"
import { callerFiberCount } from "../src/internal/callers.js"

// ---------------------------------------------------------------------------
// A recording behaviour used by most tests
// ---------------------------------------------------------------------------

interface Get extends Process.Request<ReadonlyArray<string>> {
  readonly _tag: "Get"
}
interface Echo extends Process.Request<string> {
  readonly _tag: "Echo"
  readonly text: string
}
/** Replies later: the handler keeps `from` in the state and answers on an info message. */
interface Later extends Process.Request<string> {
  readonly _tag: "Later"
}
/** Blocks the process until the deferred is done. */
interface Block extends Process.Request<string> {
  readonly _tag: "Block"
  readonly until: Deferred.Deferred<void>
}
interface CallStop extends Process.Request<string> {
  readonly _tag: "CallStop"
  readonly reply: boolean
}
interface Crash extends Process.Request<string> {
  readonly _tag: "Crash"
  readonly how: "throw" | "die" | "fail" | "bad"
}
type Req = Get | Echo | Later | Block | CallStop | Crash

type Cast = { readonly _tag: "Log"; readonly entry: string } | { readonly _tag: "Stop"; readonly reason: string }
type Info =
  | { readonly _tag: "Log"; readonly entry: string }
  | { readonly _tag: "Answer"; readonly text: string }
  | { readonly _tag: "Crash" }

interface State {
  readonly log: ReadonlyArray<string>
  readonly waiting: ReadonlyArray<Process.From<string>>
}

/** What the test observes from outside: terminate calls and abandoned callers. */
interface Probe {
  readonly terminated: Array<Process.ExitReason<string>>
  readonly abandoned: Array<number>
  readonly handled: Array<string>
}

const makeProbe = (): Probe => ({ terminated: [], abandoned: [], handled: [] })

type Ref = Process.ProcessRef<Req, string | ReadonlyArray<string>, Cast, Info, string>

const recorder = (
  probe: Probe,
  options: { readonly replyInTerminate?: boolean; readonly terminateDies?: boolean } = {}
): Process.Behaviour<ReadonlyArray<string>, State, Req, string | ReadonlyArray<string>, Cast, Info, string, never> => ({
  init: (log) => Process.ok({ log, waiting: [] }),
  handleCall: (request, from, state) => {
    probe.handled.push(request._tag)
    switch (request._tag) {
      case "Get":
        return Process.reply(state.log, state)
      case "Echo":
        return Process.reply(request.text, state)
      case "Later":
        return Process.noreply({ ...state, waiting: [...state.waiting, from as Process.From<string>] })
      case "Block":
        return Deferred.await(request.until).pipe(Effect.as(Process.reply("unblocked", state)))
      case "CallStop":
        return request.reply ? Process.stopReply("by call", "bye", state) : Process.stop("by call", state)
      case "Crash":
        switch (request.how) {
          case "throw":
            throw new Error("boom")
          case "die":
            return Effect.die(new Error("boom"))
          case "fail":
            return Effect.fail("failed")
          case "bad":
            return { _tag: "Nonsense" } as unknown as Process.NoReply<State>
        }
    }
  },
  handleCast: (message, state) =>
    message._tag === "Log"
      ? Process.noreply({ ...state, log: [...state.log, message.entry] })
      : Process.stop(message.reason, state),
  handleInfo: (message, state) => {
    switch (message._tag) {
      case "Log":
        return Process.noreply({ ...state, log: [...state.log, message.entry] })
      case "Answer": {
        const [first, ...rest] = state.waiting
        if (first !== undefined) Process.unsafeReplyTo(first, message.text)
        return Process.noreply({ ...state, waiting: rest })
      }
      case "Crash":
        return Effect.die("info crash")
    }
  },
  handleAbandoned: (from, state) => {
    probe.abandoned.push(from.id)
    return Process.noreply({ ...state, waiting: state.waiting.filter((w) => w.id !== from.id) })
  },
  terminate: (reason, state) =>
    Effect.sync(() => {
      probe.terminated.push(reason)
      if (options.replyInTerminate) { for (const from of state.waiting) Process.unsafeReplyTo(from, "from terminate") }
      if (options.terminateDies) throw new Error("terminate died")
    })
})

const get: Get = { _tag: "Get" }

/** Run the forked fibers until they are all suspended. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const exitedReason = <A>(exit: Exit.Exit<A, unknown>): Process.ExitReason<unknown> | undefined => {
  if (exit._tag === "Success") return undefined
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return undefined
  const error = failure.value
  return typeof error === "object" && error !== null && "_tag" in error && error._tag === "ProcessExited"
    ? (error as Process.ProcessExited).reason
    : undefined
}

describe("Process", () => {
  describe("messages", () => {
    it.scoped("handles casts, infos and calls one at a time in arrival order", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref: Ref = yield* Process.start(recorder(probe), ["start"])
        yield* Process.cast(ref, { _tag: "Log", entry: "cast 1" })
        yield* Process.send(ref, { _tag: "Log", entry: "info 2" })
        assert.isTrue(Process.unsafeCast(ref, { _tag: "Log", entry: "cast 3" }))
        assert.isTrue(Process.unsafeSend(ref, { _tag: "Log", entry: "info 4" }))
        const log = yield* Process.call(ref, get)
        assert.deepStrictEqual(log, ["start", "cast 1", "info 2", "cast 3", "info 4"])
      }))

    it.scoped("cast and send return while the handler is busy", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const gate = yield* Deferred.make<void>()
        const blocker = yield* Effect.fork(Process.call(ref, { _tag: "Block", until: gate } satisfies Block))
        yield* settle
        yield* Process.cast(ref, { _tag: "Log", entry: "while busy 1" })
        yield* Process.send(ref, { _tag: "Log", entry: "while busy 2" })
        assert.isTrue(Option.isNone(yield* Fiber.poll(blocker)))
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(blocker)
        assert.deepStrictEqual(yield* Process.call(ref, get), ["while busy 1", "while busy 2"])
      }))

    it.scoped("a long run of messages is handled in order across yields", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const entries = Array.from({ length: 3000 }, (_, i) => String(i))
        for (const entry of entries) Process.unsafeCast(ref, { _tag: "Log", entry })
        assert.deepStrictEqual(yield* Process.call(ref, get), entries)
      }))

    it.scoped("types the reply after the request", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const text: string = yield* Process.call(ref, { _tag: "Echo", text: "hi" } satisfies Echo)
        const log: ReadonlyArray<string> = yield* Process.call(ref, get)
        assert.strictEqual(text, "hi")
        assert.deepStrictEqual(log, [])
      }))

    it.scoped("concurrent callers each get their own reply", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const texts = Array.from({ length: 50 }, (_, i) => `m${i}`)
        const replies = yield* Effect.forEach(
          texts,
          (text) => Process.call(ref, { _tag: "Echo", text } satisfies Echo),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(replies, texts)
      }))

    it.scoped("a plain handler result is checked (bad return crashes the process)", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const exit = yield* Effect.exit(Process.call(ref, { _tag: "Crash", how: "bad" } satisfies Crash))
        const reason = exitedReason(exit)
        assert.strictEqual(reason?._tag, "Crashed")
        assert.strictEqual(probe.terminated.length, 1)
      }))
  })

  describe("reply later", () => {
    it.scoped("noreply now, replyTo from another message later", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const caller = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later))
        yield* settle
        assert.isTrue(Option.isNone(yield* Fiber.poll(caller)))
        yield* Process.send(ref, { _tag: "Answer", text: "later" })
        assert.strictEqual(yield* Fiber.join(caller), "later")
      }))

    it.scoped("a From is answered at most once", () =>
      Effect.gen(function*() {
        let kept: Process.From<string> | undefined
        const ref = yield* Process.start(
          {
            init: () => Process.ok(0),
            handleCall: (_: "x", from: Process.From<string>, n: number) => {
              kept = from
              return Process.reply("first", n)
            }
          },
          undefined
        )
        assert.strictEqual(yield* Process.call(ref, "x"), "first")
        assert.isFalse(Process.unsafeReplyTo(kept!, "second"))
      }))
  })

  describe("call timeouts and abandoned callers", () => {
    it.scoped("a call times out after 5 seconds by default with CallTimeout", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const caller = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later))
        yield* settle
        yield* TestClock.adjust("4999 millis")
        yield* settle
        assert.isTrue(Option.isNone(yield* Fiber.poll(caller)))
        yield* TestClock.adjust("1 millis")
        const exit = yield* Fiber.await(caller)
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
        assert.isTrue(Option.isSome(error) && error.value._tag === "CallTimeout")
        // nothing left behind: the process was told, and forgot the caller
        yield* settle
        assert.deepStrictEqual(probe.abandoned.length, 1)
        // a late answer is dropped, and the process keeps working
        yield* Process.send(ref, { _tag: "Answer", text: "too late" })
        assert.strictEqual(yield* Process.call(ref, { _tag: "Echo", text: "alive" } satisfies Echo), "alive")
      }))

    it.scoped("a custom timeout applies per call, and different timeouts do not delay each other", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const slow = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later, { timeout: "10 seconds" }))
        const fast = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later, { timeout: "100 millis" }))
        yield* settle
        yield* TestClock.adjust("100 millis")
        const fastExit = yield* Fiber.await(fast)
        assert.isTrue(Exit.isFailure(fastExit))
        assert.isTrue(Option.isNone(yield* Fiber.poll(slow)))
        yield* TestClock.adjust("9900 millis")
        assert.isTrue(Exit.isFailure(yield* Fiber.await(slow)))
      }))

    it.scoped("an infinite timeout never fires", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const caller = yield* Effect.fork(
          Process.call(ref, { _tag: "Later" } satisfies Later, { timeout: Duration.infinity })
        )
        yield* settle
        yield* TestClock.adjust("1 days")
        assert.isTrue(Option.isNone(yield* Fiber.poll(caller)))
        yield* Process.send(ref, { _tag: "Answer", text: "eventually" })
        assert.strictEqual(yield* Fiber.join(caller), "eventually")
      }))

    it.scoped("an interrupted caller waiting for a later reply is forgotten", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const caller = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later))
        yield* settle
        yield* Fiber.interrupt(caller)
        yield* settle
        assert.strictEqual(probe.abandoned.length, 1)
        // the waiting list is empty again: the next Later caller gets the next answer
        const next = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later))
        yield* settle
        yield* Process.send(ref, { _tag: "Answer", text: "for next" })
        assert.strictEqual(yield* Fiber.join(next), "for next")
      }))

    it.scoped("a caller fiber's bookkeeping goes with it, answered or interrupted (one runPromise per call)", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const before = callerFiberCount()
        // a fiber per call, as Promise code calling through runPromise makes
        const replies = yield* Effect.promise(() =>
          Promise.all(
            Array.from(
              { length: 200 },
              (_, i) => Effect.runPromise(Process.call(ref, { _tag: "Echo", text: `${i}` } satisfies Echo))
            )
          )
        )
        assert.strictEqual(replies[199], "199")
        const waiting = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later))
        yield* settle
        assert.strictEqual(callerFiberCount(), before + 1)
        yield* Fiber.interrupt(waiting)
        assert.strictEqual(callerFiberCount(), before)
      }))

    it.scoped("a queued call whose caller gave up is skipped", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const gate = yield* Deferred.make<void>()
        const blocker = yield* Effect.fork(Process.call(ref, { _tag: "Block", until: gate } satisfies Block))
        yield* settle
        const queued = yield* Effect.fork(Process.call(ref, { _tag: "Echo", text: "never" } satisfies Echo))
        yield* settle
        yield* Fiber.interrupt(queued)
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual(yield* Fiber.join(blocker), "unblocked")
        assert.deepStrictEqual(yield* Process.call(ref, get), [])
        assert.deepStrictEqual(probe.handled, ["Block", "Get"])
        assert.deepStrictEqual(probe.abandoned, [])
      }))

    it.scoped("a queued call abandoned by Effect.timeout (the caller loses a race) is skipped", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const gate = yield* Deferred.make<void>()
        yield* Effect.addFinalizer(() => Deferred.succeed(gate, undefined))
        const blocker = yield* Effect.fork(Process.call(ref, { _tag: "Block", until: gate } satisfies Block))
        yield* settle
        const raced = yield* Effect.fork(
          Process.call(ref, { _tag: "Echo", text: "never" } satisfies Echo).pipe(Effect.timeout("1 second"))
        )
        yield* settle
        yield* TestClock.adjust("1 second")
        const exit = yield* Fiber.await(raced)
        assert.isTrue(
          Exit.isFailure(exit) &&
            Cause.failureOption(exit.cause).pipe(Option.exists((e) => e._tag === "TimeoutException"))
        )
        // a caller that timed out can go on calling
        const again = yield* Effect.fork(Effect.gen(function*() {
          yield* Effect.exit(
            Process.call(ref, { _tag: "Echo", text: "first" } satisfies Echo).pipe(Effect.timeout("1 second"))
          )
          return yield* Process.call(ref, { _tag: "Echo", text: "second" } satisfies Echo)
        }))
        yield* settle
        yield* TestClock.adjust("1 second")
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual(yield* Fiber.join(blocker), "unblocked")
        assert.strictEqual(yield* Fiber.join(again), "second")
        assert.deepStrictEqual(probe.handled, ["Block", "Echo"])
      }))

    it.scoped("a caller that gives up while its handler runs is reported if the handler keeps it", () =>
      Effect.gen(function*() {
        const abandoned: Array<number> = []
        const gate = yield* Deferred.make<void>()
        const ref = yield* Process.start(
          {
            init: () => Process.ok(0),
            handleCall: (_: "slow", _from: Process.From<string>, n: number) =>
              Deferred.await(gate).pipe(Effect.as(Process.noreply(n))),
            handleAbandoned: (from: Process.From<string>, n: number) => {
              abandoned.push(from.id)
              return Process.noreply(n)
            }
          },
          undefined
        )
        const caller = yield* Effect.fork(Process.call(ref, "slow", { timeout: "1 second" }))
        yield* settle
        yield* TestClock.adjust("1 second")
        assert.isTrue(Exit.isFailure(yield* Fiber.await(caller)))
        assert.deepStrictEqual(abandoned, [])
        yield* Deferred.succeed(gate, undefined)
        yield* settle
        assert.strictEqual(abandoned.length, 1)
      }))
  })

  describe("stopping", () => {
    it.scoped("a stop result from a cast runs terminate once with Stopped(reason)", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        yield* Process.cast(ref, { _tag: "Stop", reason: "done" })
        const reason = yield* Process.await(ref)
        assert.deepStrictEqual(reason, Process.stopped("done"))
        assert.deepStrictEqual(probe.terminated, [Process.stopped("done")])
        assert.isFalse(Process.isAlive(ref))
        assert.deepStrictEqual(Process.exitReason(ref), Option.some(Process.stopped("done")))
      }))

    it.scoped("stopReply answers the caller, then stops", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        assert.strictEqual(yield* Process.call(ref, { _tag: "CallStop", reply: true } satisfies CallStop), "bye")
        assert.deepStrictEqual(yield* Process.await(ref), Process.stopped("by call"))
        assert.strictEqual(probe.terminated.length, 1)
      }))

    it.scoped("stop without reply fails the caller with the exit reason", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const exit = yield* Effect.exit(Process.call(ref, { _tag: "CallStop", reply: false } satisfies CallStop))
        assert.deepStrictEqual(exitedReason(exit), Process.stopped("by call"))
        assert.strictEqual(probe.terminated.length, 1)
      }))

    it.scoped("exit(ref) is ordered after queued messages and gives Normal", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        yield* Process.cast(ref, { _tag: "Log", entry: "before" })
        const reason = yield* Process.exit(ref)
        assert.deepStrictEqual(reason, Process.normal)
        assert.deepStrictEqual(probe.terminated, [Process.normal])
        // exiting again returns the same reason and does not run terminate again
        assert.deepStrictEqual(yield* Process.exit(ref, "again"), Process.normal)
        assert.strictEqual(probe.terminated.length, 1)
      }))

    it.scoped("exit(ref, reason) gives Stopped(reason); callers queued behind the stop fail with it", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const gate = yield* Deferred.make<void>()
        const blocker = yield* Effect.fork(Process.call(ref, { _tag: "Block", until: gate } satisfies Block))
        yield* settle
        const stopper = yield* Effect.fork(Process.exit(ref, "asked"))
        yield* settle
        const late = yield* Effect.fork(Process.call(ref, get))
        yield* settle
        yield* Deferred.succeed(gate, undefined)
        assert.strictEqual(yield* Fiber.join(blocker), "unblocked")
        assert.deepStrictEqual(yield* Fiber.join(stopper), Process.stopped("asked"))
        assert.deepStrictEqual(exitedReason(yield* Fiber.await(late)), Process.stopped("asked"))
        assert.deepStrictEqual(probe.terminated, [Process.stopped("asked")])
      }))

    it.scoped("callers waiting for a later reply fail with the exit reason", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const caller = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later))
        yield* settle
        yield* Process.cast(ref, { _tag: "Stop", reason: "gone" })
        assert.deepStrictEqual(exitedReason(yield* Fiber.await(caller)), Process.stopped("gone"))
      }))

    it.scoped("terminate may still answer waiting callers", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe(), { replyInTerminate: true }), [])
        const caller = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later))
        yield* settle
        yield* Process.cast(ref, { _tag: "Stop", reason: "gone" })
        assert.strictEqual(yield* Fiber.join(caller), "from terminate")
      }))

    it.scoped("a defect in terminate makes the exit reason Crashed", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe, { terminateDies: true }), [])
        const reason = yield* Process.exit(ref, "x")
        assert.strictEqual(reason._tag, "Crashed")
        assert.deepStrictEqual(probe.terminated, [Process.stopped("x")])
      }))

    it.effect("closing the Scope stops with Shutdown after the message in hand and drops the queue", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const scope = yield* Scope.make()
        const ref = yield* Process.start(recorder(probe), []).pipe(Scope.extend(scope))
        const gate = yield* Deferred.make<void>()
        const blocker = yield* Effect.fork(Process.call(ref, { _tag: "Block", until: gate } satisfies Block))
        yield* settle
        const queued = yield* Effect.fork(Process.call(ref, { _tag: "Echo", text: "dropped" } satisfies Echo))
        yield* settle
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* settle
        // the Scope waits for the process
        assert.isTrue(Option.isNone(yield* Fiber.poll(closing)))
        assert.deepStrictEqual(probe.terminated, [])
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(closing)
        assert.strictEqual(yield* Fiber.join(blocker), "unblocked")
        assert.deepStrictEqual(exitedReason(yield* Fiber.await(queued)), Process.shutdown)
        assert.deepStrictEqual(probe.terminated, [Process.shutdown])
        assert.deepStrictEqual(probe.handled, ["Block"])
      }))

    it.scoped("calling an exited process fails at once with ProcessExited, cast and send are dropped", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        yield* Process.exit(ref, "over")
        const exit = yield* Effect.exit(Process.call(ref, get))
        assert.deepStrictEqual(exitedReason(exit), Process.stopped("over"))
        assert.isFalse(Process.unsafeSend(ref, { _tag: "Log", entry: "x" }))
        assert.isFalse(Process.unsafeCast(ref, { _tag: "Log", entry: "x" }))
        yield* Process.cast(ref, { _tag: "Log", entry: "x" })
      }))
  })

  describe("ownership", () => {
    it.effect("a process that exits by itself leaves nothing in its owner's Scope", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const finalizers = () =>
          (scope as unknown as { state: { finalizers: Map<unknown, unknown> } }).state.finalizers.size
        const before = finalizers()
        for (let i = 0; i < 10; i++) {
          const ref = yield* Process.start(recorder(makeProbe()), []).pipe(Scope.extend(scope))
          yield* Process.exit(ref, "done")
        }
        const alive = yield* Process.start(recorder(makeProbe()), []).pipe(Scope.extend(scope))
        assert.strictEqual(finalizers(), before + 1)
        yield* Scope.close(scope, Exit.void)
        assert.deepStrictEqual(yield* Process.await(alive), Process.shutdown)
      }))

    it.effect("a process started in a closed Scope is stopped at once (terminate runs)", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const scope = yield* Scope.make()
        yield* Scope.close(scope, Exit.void)
        const ref = yield* Process.start(recorder(probe), []).pipe(Scope.extend(scope))
        assert.deepStrictEqual(yield* Process.await(ref), Process.shutdown)
        assert.deepStrictEqual(probe.terminated, [Process.shutdown])
      }))

    it.scoped("a process waiting for its own exit crashes instead of hanging", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(
          {
            init: () => Process.ok(0),
            handleCast: (
              _: "exit self",
              n: number,
              self: Process.ProcessRef<never, never, "exit self", never, string>
            ) => Effect.as(Process.exit(self, "self"), Process.noreply(n))
          },
          undefined
        )
        yield* Process.cast(ref, "exit self")
        const reason = yield* Process.await(ref)
        assert.strictEqual(reason._tag, "Crashed")
      }))

    it.scoped("many distinct call timeouts each fire on time", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const callers = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i + 1), (seconds) =>
          Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later, { timeout: Duration.seconds(seconds) })))
        yield* settle
        for (let i = 0; i < 20; i++) {
          yield* TestClock.adjust("1 second")
          assert.isTrue(Exit.isFailure(yield* Fiber.await(callers[i]!)))
          if (i + 1 < 20) {
            assert.isTrue(Option.isNone(yield* Fiber.poll(callers[i + 1]!)))
          }
        }
        // timers still work afterwards
        const again = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later, { timeout: "3 seconds" }))
        yield* settle
        yield* TestClock.adjust("3 seconds")
        assert.isTrue(Exit.isFailure(yield* Fiber.await(again)))
      }))
    it.live("a process leaves no live timer behind when it exits (Node can exit)", () =>
      Effect.gen(function*() {
        const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length
        const before = timers()
        yield* Effect.scoped(Effect.gen(function*() {
          const ref = yield* Process.start(recorder(makeProbe()), [])
          // The call is answered long before its timeout: the timer fiber sleeps towards a deadline nobody needs.
          yield* Process.call(ref, get, { timeout: "30 seconds" })
          const pending = yield* Effect.fork(
            Process.call(ref, { _tag: "Later" } satisfies Later, { timeout: "45 seconds" })
          )
          yield* settle
          yield* Fiber.interrupt(pending)
        }))
        yield* settle
        assert.strictEqual(timers(), before)
      }))

    it.live("callbacks run interruptibly: a timeout inside a handler fires", () =>
      Effect.gen(function*() {
        const behaviour = {
          init: () => Process.ok(0),
          handleCall: (_: "slow", _from: Process.From<string>, n: number) =>
            Effect.never.pipe(
              Effect.timeoutTo({ duration: "20 millis", onSuccess: () => "done", onTimeout: () => "timed out" }),
              Effect.map((text) => Process.reply(text, n))
            )
        }
        const ref = yield* Process.start(behaviour, undefined)
        assert.strictEqual(yield* Process.call(ref, "slow", { timeout: "5 seconds" }), "timed out")
      }).pipe(Effect.scoped))
  })

  describe("defects", () => {
    for (const how of ["throw", "die", "fail"] as const) {
      it.scoped(`a handler that ${how}s crashes the process; terminate runs once; the caller fails`, () =>
        Effect.gen(function*() {
          const probe = makeProbe()
          const ref = yield* Process.start(recorder(probe), [])
          const queued = yield* Effect.fork(
            Effect.zipRight(Effect.yieldNow(), Process.call(ref, { _tag: "Echo", text: "queued" } satisfies Echo))
          )
          const exit = yield* Effect.exit(Process.call(ref, { _tag: "Crash", how } satisfies Crash))
          const reason = exitedReason(exit)
          assert.strictEqual(reason?._tag, "Crashed")
          assert.strictEqual(probe.terminated.length, 1)
          assert.strictEqual(probe.terminated[0]!._tag, "Crashed")
          assert.deepStrictEqual(yield* Process.await(ref), reason)
          assert.strictEqual(exitedReason(yield* Fiber.await(queued))?._tag, "Crashed")
        }))
    }

    it.scoped("a defect in handleInfo fails callers waiting for a later reply", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const caller = yield* Effect.fork(Process.call(ref, { _tag: "Later" } satisfies Later))
        yield* settle
        yield* Process.send(ref, { _tag: "Crash" })
        const reason = exitedReason(yield* Fiber.await(caller))
        assert.strictEqual(reason?._tag, "Crashed")
        if (reason?._tag === "Crashed") assert.deepStrictEqual(Cause.squash(reason.cause), "info crash")
        assert.strictEqual(probe.terminated.length, 1)
      }))

    it.scoped("a cast to a behaviour without handleCast crashes it", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start({ init: () => Process.ok(0) }, undefined)
        yield* Process.cast(ref as unknown as Process.ProcessRef<never, unknown, string, never, unknown>, "x")
        const reason = yield* Process.await(ref)
        assert.strictEqual(reason._tag, "Crashed")
      }))

    it.scoped("info messages without handleInfo are dropped", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(
          {
            init: () => Process.ok(1),
            handleCall: (_: "get", _from: Process.From<number>, n: number) => Process.reply(n, n)
          },
          undefined
        )
        yield* Process.send(ref as unknown as Process.ProcessRef<never, unknown, never, string, unknown>, "stray")
        assert.strictEqual(yield* Process.call(ref, "get"), 1)
      }))
  })

  describe("init", () => {
    it.scoped("ignore fails start with InitIgnored and runs no terminate", () =>
      Effect.gen(function*() {
        let terminated = 0
        const error = yield* Effect.flip(
          Process.start({
            init: () => Process.ignore,
            terminate: () => {
              terminated++
            }
          }, undefined)
        )
        assert.strictEqual(error._tag, "InitIgnored")
        assert.strictEqual(terminated, 0)
      }))

    it.scoped("stop(reason) fails start with InitStopped and runs no terminate", () =>
      Effect.gen(function*() {
        let terminated = 0
        const error = yield* Effect.flip(
          Process.start({
            init: (_: undefined) => Effect.succeed(Process.stop("no config")),
            terminate: () => {
              terminated++
            }
          }, undefined)
        )
        assert.strictEqual(error._tag, "InitStopped")
        if (error._tag === "InitStopped") assert.deepStrictEqual(error.reason, Process.stopped("no config"))
        assert.strictEqual(terminated, 0)
      }))

    it.scoped("a defect in init fails start with InitStopped(Crashed)", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Process.start({
            init: (): Process.InitResult<number, never> => {
              throw new Error("init blew up")
            }
          }, undefined)
        )
        assert.strictEqual(error._tag, "InitStopped")
        if (error._tag === "InitStopped") assert.strictEqual(error.reason._tag, "Crashed")
      }))

    it.scoped("init gets self and can send itself messages before the first call", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(
          {
            init: (_: undefined, self: Process.ProcessRef<"get", ReadonlyArray<string>, never, string, never>) => {
              Process.unsafeSend(self, "hello from init")
              return Process.ok<ReadonlyArray<string>>([])
            },
            handleCall: (_: "get", _from: Process.From<ReadonlyArray<string>>, log: ReadonlyArray<string>) =>
              Process.reply(log, log),
            handleInfo: (message: string, log: ReadonlyArray<string>) => Process.noreply([...log, message])
          },
          undefined
        )
        assert.deepStrictEqual(yield* Process.call(ref, "get"), ["hello from init"])
      }))

    it.scoped("callbacks can use services; their requirements show up on start", () =>
      Effect.gen(function*() {
        class Greeting extends Effect.Tag("test/Greeting")<Greeting, { readonly text: string }>() {}
        const behaviour = {
          init: () => Effect.map(Greeting, (g) => Process.ok(g.text)),
          handleCall: (_: "get", _from: Process.From<string>, text: string) =>
            Effect.map(Greeting, (g) => Process.reply(`${g.text} ${text}`, text))
        }
        const ref = yield* Process.start(behaviour, undefined).pipe(Effect.provideService(Greeting, { text: "hi" }))
        assert.strictEqual(yield* Process.call(ref, "get"), "hi hi")
      }))
  })

  describe("sys (introspection)", () => {
    it.scoped("getState and replaceState run between messages, in mailbox order", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), ["start"])
        yield* Process.cast(ref, { _tag: "Log", entry: "a" })
        const before = yield* Effect.fork(Process.getState(ref))
        yield* settle
        const replaced = yield* Effect.fork(
          Process.replaceState(ref, (s) => ({ ...(s as State), log: [...(s as State).log, "replaced"] }))
        )
        yield* settle
        yield* Process.cast(ref, { _tag: "Log", entry: "b" })
        assert.deepStrictEqual(((yield* Fiber.join(before)) as State).log, ["start", "a"])
        assert.deepStrictEqual(((yield* Fiber.join(replaced)) as State).log, ["start", "a", "replaced"])
        assert.deepStrictEqual(yield* Process.call(ref, get), ["start", "a", "replaced", "b"])
        assert.deepStrictEqual(((yield* Process.getState(ref)) as State).log, ["start", "a", "replaced", "b"])
      }))

    it.scoped("a replaceState function that throws leaves the state alone and fails with ReplaceStateFailed", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), ["kept"])
        const error = yield* Effect.flip(Process.replaceState(ref, () => {
          throw new Error("nope")
        }))
        assert.strictEqual(error._tag, "ReplaceStateFailed")
        assert.deepStrictEqual(yield* Process.call(ref, get), ["kept"])
        assert.isTrue(Process.isAlive(ref))
      }))

    it.scoped("a suspended process queues messages and handles them in order on resume", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        yield* Process.cast(ref, { _tag: "Log", entry: "before" })
        yield* Process.suspend(ref)
        assert.strictEqual((yield* Process.info(ref)).status, "suspended")
        yield* Process.cast(ref, { _tag: "Log", entry: "1" })
        yield* Process.send(ref, { _tag: "Log", entry: "2" })
        const caller = yield* Effect.fork(Process.call(ref, get))
        yield* settle
        yield* Process.cast(ref, { _tag: "Log", entry: "3" })
        yield* settle
        // system messages are still handled: the state has only the message sent before suspending
        assert.deepStrictEqual(((yield* Process.getState(ref)) as State).log, ["before"])
        const info = yield* Process.info(ref)
        assert.strictEqual(info.mailbox, 4)
        assert.strictEqual(info.handled, 1)
        assert.isTrue(Option.isNone(yield* Fiber.poll(caller)))
        yield* Process.resume(ref)
        assert.deepStrictEqual(yield* Fiber.join(caller), ["before", "1", "2"])
        assert.deepStrictEqual(yield* Process.call(ref, get), ["before", "1", "2", "3"])
        const after = yield* Process.info(ref)
        assert.strictEqual(after.mailbox, 0)
        assert.strictEqual(after.handled, 6)
        assert.strictEqual(after.status, "waiting")
      }))

    it.scoped("a call to a suspended process still times out, and is skipped after resume", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        yield* Process.suspend(ref)
        const caller = yield* Effect.fork(
          Process.call(ref, { _tag: "Echo", text: "late" } satisfies Echo, { timeout: "1 second" })
        )
        yield* settle
        yield* TestClock.adjust("1 second")
        const exit = yield* Fiber.await(caller)
        assert.isTrue(
          Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe(Option.exists((e) => e._tag === "CallTimeout"))
        )
        yield* Process.resume(ref)
        assert.deepStrictEqual(yield* Process.call(ref, get), [])
        assert.deepStrictEqual(probe.handled, ["Get"])
      }))

    it.scoped("stopping a suspended process fails the callers that queued up", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        yield* Process.suspend(ref)
        const caller = yield* Effect.fork(Process.call(ref, get))
        yield* settle
        assert.deepStrictEqual(yield* Process.exit(ref, "bye"), Process.stopped("bye"))
        assert.deepStrictEqual(exitedReason(yield* Fiber.await(caller)), Process.stopped("bye"))
      }))

    it.scoped("info counts handled messages and reports waiting, running and exited", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        yield* settle
        const idle = yield* Process.info(ref)
        assert.deepStrictEqual(idle, { id: ref.id, name: ref.name, status: "waiting", mailbox: 0, handled: 0 })
        const gate = yield* Deferred.make<void>()
        // a failed assertion must not leave the process blocked (its Scope waits for the message in hand)
        yield* Effect.addFinalizer(() => Deferred.succeed(gate, undefined))
        const blocked = yield* Effect.fork(Process.call(ref, { _tag: "Block", until: gate } satisfies Block))
        yield* settle
        yield* Process.cast(ref, { _tag: "Log", entry: "x" })
        yield* Process.send(ref, { _tag: "Log", entry: "y" })
        yield* settle
        const busy = yield* Process.info(ref)
        assert.strictEqual(busy.status, "running")
        assert.strictEqual(busy.mailbox, 2)
        assert.strictEqual(busy.handled, 1)
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(blocked)
        assert.deepStrictEqual(yield* Process.call(ref, get), ["x", "y"])
        assert.strictEqual((yield* Process.info(ref)).handled, 4)
        yield* Process.exit(ref)
        assert.strictEqual((yield* Process.info(ref)).status, "exited")
        const exited = yield* Effect.flip(Process.getState(ref))
        assert.strictEqual(exited._tag, "ProcessExited")
      }))

    it.scoped("sys calls on itself are a defect, not a hang", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(
          {
            init: () => Process.ok(0),
            handleCall: (_: "peek", _from: Process.From<unknown>, n: number, self) =>
              Effect.map(Process.getState(self), (s) => Process.reply(s, n))
          },
          undefined
        )
        const exit = yield* Effect.exit(Process.call(ref, "peek"))
        assert.isTrue(Exit.isFailure(exit))
        assert.strictEqual(Option.getOrThrow(Process.exitReason(ref))._tag, "Crashed")
      }))
  })

  describe("unsafeCallPromise: a call whose caller is a Promise", () => {
    /** The Promise's outcome as a value: the reply, or the rejection's error. */
    const outcome = <A>(promise: Promise<A>) =>
      Effect.promise(() =>
        promise.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))
      )

    it.scoped("resolves with the reply, also one given later with replyTo", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        assert.strictEqual(
          yield* Effect.promise(() => Process.unsafeCallPromise(ref, { _tag: "Echo", text: "hi" } satisfies Echo)),
          "hi"
        )
        const later = Process.unsafeCallPromise(ref, { _tag: "Later" } satisfies Later)
        yield* settle
        yield* Process.send(ref, { _tag: "Answer", text: "now" })
        assert.deepStrictEqual(yield* outcome(later), { ok: true, value: "now" })
      }))

    it.scoped("rejects with CallTimeout at its timeout, and the process is told it was abandoned", () =>
      Effect.gen(function*() {
        const probe = makeProbe()
        const ref = yield* Process.start(recorder(probe), [])
        const later = outcome(
          Process.unsafeCallPromise(ref, { _tag: "Later" } satisfies Later, { timeout: "2 seconds" })
        )
        const waiting = yield* Effect.fork(later)
        yield* settle
        yield* TestClock.adjust("1999 millis")
        yield* settle
        assert.isTrue(Option.isNone(yield* Fiber.poll(waiting)))
        yield* TestClock.adjust("1 millis")
        const result = yield* Fiber.join(waiting)
        assert.isFalse(result.ok)
        if (!result.ok) {
          assert.instanceOf(result.error, Error)
          assert.strictEqual((result.error as unknown as { readonly _tag: string })._tag, "CallTimeout")
        }
        yield* settle
        assert.strictEqual(probe.abandoned.length, 1)
        // a late answer is dropped, and the process keeps working
        yield* Process.send(ref, { _tag: "Answer", text: "too late" })
        assert.strictEqual(
          yield* Effect.promise(() => Process.unsafeCallPromise(ref, { _tag: "Echo", text: "alive" } satisfies Echo)),
          "alive"
        )
      }))

    it.scoped("rejects with ProcessExited when the process exits before replying, or had exited", () =>
      Effect.gen(function*() {
        const ref = yield* Process.start(recorder(makeProbe()), [])
        const later = Process.unsafeCallPromise(ref, { _tag: "Later" } satisfies Later)
        yield* settle
        yield* Process.exit(ref, "done")
        const first = yield* outcome(later)
        assert.isTrue(!first.ok && (first.error as { readonly _tag: string })._tag === "ProcessExited")
        const after = yield* outcome(Process.unsafeCallPromise(ref, { _tag: "Echo", text: "x" } satisfies Echo))
        assert.isTrue(!after.ok && (after.error as { readonly _tag: string })._tag === "ProcessExited")
      }))
  })
})
