import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Metric, Option, Schedule, Scope, TestClock } from "effect"
import { Process, Supervisor } from "@warren/process"

/** Run the forked fibers until they are all suspended. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

type Command = "crash" | "stop normal" | "stop abnormal"

/** A worker that records its lifecycle; `crash` kills it with a defect. */
const worker = (name: string, events: Array<string>): Process.Behaviour<
  void,
  number,
  "ping",
  string,
  Command,
  never,
  string,
  never
> => ({
  init: () => {
    events.push(`${name} init`)
    return Process.ok(0)
  },
  handleCall: (_ping, _from, n) => Process.reply(`${name} pong`, n),
  handleCast: (command, n) => {
    switch (command) {
      case "crash":
        return Effect.die(new Error(`${name} crashed`))
      case "stop normal":
        return Process.stop("normal", n)
      case "stop abnormal":
        return Process.stop("bad", n)
    }
  },
  terminate: (reason) => {
    events.push(`${name} terminate ${reason._tag}`)
  }
})

const currentRef = <A>(sup: Supervisor.Supervisor, child: Supervisor.Child<A, never>) =>
  Effect.flatMap(Supervisor.current(sup, child), (option) =>
    Option.isSome(option) ? Effect.succeed(option.value) : Effect.dieMessage(`${child.name} is not running`))

describe("Supervisor", () => {
  it.scoped("restarts a crashed child after the schedule's delay and counts restarts", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const a = Supervisor.process("a", worker("a", events), undefined, {
        schedule: Schedule.spaced("1 second")
      })
      const sup = yield* Supervisor.start({ children: [a] })
      const first = yield* currentRef(sup, a)
      yield* Process.cast(first, "crash")
      yield* settle
      assert.isTrue(Option.isNone(yield* Supervisor.current(sup, a)))
      yield* TestClock.adjust("999 millis")
      yield* settle
      assert.isTrue(Option.isNone(yield* Supervisor.current(sup, a)))
      assert.strictEqual(yield* Supervisor.restarts(sup, a), 0)
      yield* TestClock.adjust("1 millis")
      yield* settle
      const second = yield* currentRef(sup, a)
      assert.notStrictEqual(second.id, first.id)
      assert.strictEqual(yield* Process.call(second, "ping"), "a pong")
      assert.strictEqual(yield* Supervisor.restarts(sup, "a"), 1)
      assert.deepStrictEqual(events, ["a init", "a terminate Crashed", "a init"])
      assert.deepStrictEqual(yield* Supervisor.which(sup), [{ name: "a", restarts: 1, running: true }])
    }))

  it.scoped("counts restarts in a metric tagged with the child's name", () =>
    Effect.gen(function*() {
      const metered = Supervisor.process("metered-child", worker("m", []), undefined)
      const counter = Metric.tagged(Supervisor.restartsTotal, "child", "metered-child")
      const before = (yield* Metric.value(counter)).count
      const sup = yield* Supervisor.start({ children: [metered] })
      yield* Process.cast(yield* currentRef(sup, metered), "crash")
      yield* settle
      yield* Process.cast(yield* currentRef(sup, metered), "crash")
      yield* settle
      assert.strictEqual((yield* Metric.value(counter)).count - before, 2)
    }))

  it.scoped("one for one: a sibling is not touched by a restart", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const a = Supervisor.process("a", worker("a", events), undefined)
      const b = Supervisor.process("b", worker("b", events), undefined)
      const sup = yield* Supervisor.start({ children: [a, b] })
      const b1 = yield* currentRef(sup, b)
      yield* Process.cast(yield* currentRef(sup, a), "crash")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, a), 1)
      assert.strictEqual(yield* Supervisor.restarts(sup, b), 0)
      assert.strictEqual((yield* currentRef(sup, b)).id, b1.id)
      assert.deepStrictEqual(events, ["a init", "b init", "a terminate Crashed", "a init"])
    }))

  it.scoped("gives up when the schedule ends: stops every child and exposes the final failure", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const a = Supervisor.process("a", worker("a", events), undefined)
      const b = Supervisor.process("b", worker("b", events), undefined, {
        schedule: Schedule.recurs(1)
      })
      const sup = yield* Supervisor.start({ children: [a, b] })
      yield* Process.cast(yield* currentRef(sup, b), "crash")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, b), 1)
      yield* Process.cast(yield* currentRef(sup, b), "crash")
      const error = yield* Effect.flip(Supervisor.await(sup))
      assert.strictEqual(error._tag, "SupervisorGaveUp")
      assert.strictEqual(error.child, "b")
      assert.strictEqual(error.restarts, 1)
      const failure = Supervisor.finalFailure(error)
      assert.instanceOf(failure, Error)
      assert.strictEqual((failure as Error).message, "b crashed")
      // every child is stopped by the time await fails
      assert.deepStrictEqual(events, [
        "a init",
        "b init",
        "b terminate Crashed",
        "b init",
        "b terminate Crashed",
        "a terminate Shutdown"
      ])
      assert.deepStrictEqual(yield* Supervisor.which(sup), [
        { name: "a", restarts: 0, running: false },
        { name: "b", restarts: 1, running: false }
      ])
    }))

  it.scoped("exponential backoff between failed starts", () =>
    Effect.gen(function*() {
      const attempts: Array<number> = []
      const flaky = Supervisor.task(
        "flaky",
        Effect.gen(function*() {
          attempts.push(yield* TestClock.currentTimeMillis)
          return yield* Effect.fail("refused")
        }),
        { schedule: Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(3))) }
      )
      const sup = yield* Supervisor.start({ children: [flaky] })
      const gaveUp = yield* Effect.fork(Supervisor.await(sup))
      yield* TestClock.adjust("100 millis")
      yield* TestClock.adjust("200 millis")
      yield* settle
      assert.deepStrictEqual(attempts, [0, 100, 300])
      yield* TestClock.adjust("400 millis")
      const exit = yield* Fiber.await(gaveUp)
      assert.deepStrictEqual(attempts, [0, 100, 300, 700])
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = Cause.failureOption(exit.cause)
        assert.isTrue(Option.isSome(error) && Supervisor.finalFailure(error.value) === "refused")
      }
    }))

  it.scoped("start fails with SupervisorGaveUp when a child cannot even start once", () =>
    Effect.gen(function*() {
      const never = Supervisor.task("never", Effect.fail("nope"), { schedule: Schedule.stop })
      const error = yield* Effect.flip(Supervisor.start({ children: [never] }))
      assert.strictEqual(error.child, "never")
      assert.strictEqual(Supervisor.finalFailure(error), "nope")
    }))

  it.scoped("transient children restart only after abnormal exits, temporary never", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const t = Supervisor.process("t", worker("t", events), undefined, { restart: "transient" })
      const tmp = Supervisor.process("tmp", worker("tmp", events), undefined, { restart: "temporary" })
      const sup = yield* Supervisor.start({ children: [t, tmp] })
      yield* Process.cast(yield* currentRef(sup, t), "stop abnormal")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, t), 1)
      yield* Process.exit(yield* currentRef(sup, t))
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, t), 1)
      assert.isTrue(Option.isNone(yield* Supervisor.current(sup, t)))
      yield* Process.cast(yield* currentRef(sup, tmp), "crash")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, tmp), 0)
      assert.isTrue(Option.isNone(yield* Supervisor.current(sup, tmp)))
    }))

  it.scoped("a permanent child is restarted even after a normal exit", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const p = Supervisor.process("p", worker("p", events), undefined)
      const sup = yield* Supervisor.start({ children: [p] })
      yield* Process.exit(yield* currentRef(sup, p))
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, p), 1)
      assert.isTrue(Option.isSome(yield* Supervisor.current(sup, p)))
    }))

  it.effect("closing the Scope stops children in reverse start order and await succeeds", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const scope = yield* Scope.make()
      const sup = yield* Supervisor.start({
        children: [
          Supervisor.process("a", worker("a", events), undefined),
          Supervisor.process("b", worker("b", events), undefined),
          Supervisor.process("c", worker("c", events), undefined)
        ]
      }).pipe(Scope.extend(scope))
      yield* Scope.close(scope, Exit.void)
      yield* Supervisor.await(sup)
      assert.deepStrictEqual(events, [
        "a init",
        "b init",
        "c init",
        "c terminate Shutdown",
        "b terminate Shutdown",
        "a terminate Shutdown"
      ])
    }))

  it.scoped("intensity allows N restarts per sliding period", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const a = Supervisor.process("a", worker("a", events), undefined)
      const sup = yield* Supervisor.start({ children: [a], schedule: Supervisor.intensity(2, "10 seconds") })
      const crash = Effect.flatMap(currentRef(sup, a), (ref) => Process.cast(ref, "crash")).pipe(Effect.zipLeft(settle))
      yield* crash
      yield* TestClock.adjust("6 seconds")
      yield* crash
      assert.strictEqual(yield* Supervisor.restarts(sup, a), 2)
      // the first restart leaves the window: one more is allowed
      yield* TestClock.adjust("5 seconds")
      yield* crash
      assert.strictEqual(yield* Supervisor.restarts(sup, a), 3)
      // two restarts within the last 10 seconds already: give up
      yield* crash
      const error = yield* Effect.flip(Supervisor.await(sup))
      assert.strictEqual(error.restarts, 3)
    }))

  it.scoped("a child whose init ignores stays down and is not restarted", () =>
    Effect.gen(function*() {
      const ignoring = Supervisor.process("ignoring", { init: () => Process.ignore }, undefined)
      const sup = yield* Supervisor.start({ children: [ignoring] })
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(yield* Supervisor.which(sup), [{ name: "ignoring", restarts: 0, running: false }])
    }))

  it.scoped("supervisors nest: an inner supervisor that gives up is restarted by the outer one", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const w = Supervisor.process("w", worker("w", events), undefined, { schedule: Schedule.stop })
      const inner = Supervisor.supervisor("inner", { children: [w] })
      const outer = yield* Supervisor.start({ children: [inner] })
      const innerSup = yield* currentRef(outer, inner)
      yield* Process.cast(yield* currentRef(innerSup, w), "crash")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(outer, inner), 1)
      const innerSup2 = yield* currentRef(outer, inner)
      assert.notStrictEqual(innerSup2, innerSup)
      assert.deepStrictEqual(events, ["w init", "w terminate Crashed", "w init"])
    }))

  it.scoped("duplicate child names are a defect", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Supervisor.start({ children: [Supervisor.task("x", Effect.never), Supervisor.task("x", Effect.never)] })
      )
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
    }))
})
